import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { operationsOf, type ApiDocument, type Schema } from '../../tools/openapi/breaking.ts';
import { serverDocument } from '../../tools/openapi/generate.ts';

// docs/api.md is the human contract; the OpenAPI document is what the server actually serves.
// These tests keep the two from disagreeing.

const API_MD = new URL('../../docs/api.md', import.meta.url);

interface EndpointRow {
  /** `METHOD /path` with OpenAPI's `{id}` for `:id`. */
  readonly operations: readonly string[];
  readonly planned: boolean;
  readonly successStatus: string | undefined;
}

/** The rows of the "## Endpoints" table. */
function endpointRows(markdown: string): EndpointRow[] {
  return tableRows(markdown, '## Endpoints').map((cells) => {
    const first = cells[0] ?? '';
    const operations = [...first.matchAll(/\b(GET|POST|PUT|PATCH|DELETE) (\/[^\s?`,]*)/g)].map(
      ([, method, path]) => `${method} ${(path ?? '').replace(/:(\w+)/g, '{$1}')}`,
    );
    return {
      operations,
      planned: first.includes('(planned)'),
      successStatus: /\b([1-5]\d\d)\b/.exec(cells[2] ?? '')?.[1],
    };
  });
}

/** The body rows of the first table after `heading`, as trimmed cells. */
function tableRows(markdown: string, heading: string): string[][] {
  const section = markdown.slice(markdown.indexOf(heading));
  const lines = section.split('\n').slice(1);
  const start = lines.findIndex((line) => line.startsWith('|'));
  const table: string[] = [];
  for (const line of lines.slice(start)) {
    if (!line.startsWith('|')) break;
    table.push(line);
  }
  return table.slice(2).map((line) =>
    line
      .slice(1, -1)
      .split(' | ')
      .map((cell) => cell.trim()),
  );
}

function successStatusOf(document: ApiDocument, key: string): string | undefined {
  const responses = operationsOf(document).get(key)?.responses ?? {};
  return (
    Object.keys(responses)
      // A redirect is the success of a browser leg (the provider sign-in's authorize and callback).
      .filter((status) => status.startsWith('2') || status.startsWith('3'))
      .sort()[0]
  );
}

/**
 * The error codes the server declares in the Error schema's `code` enum. Until the error
 * registry (src/errors/) makes that field an enum, the codes the error classes of
 * src/platform/errors/index.ts use stand in for it.
 */
function registeredCodes(document: ApiDocument): string[] {
  const error = document.components?.schemas?.Error?.properties?.error;
  const code: Schema | undefined = error?.properties?.code;
  const listed = [...(code?.enum ?? []), ...(code?.anyOf ?? []).flatMap((member) => member.enum ?? [member.const])];
  if (listed.length > 0) return listed.map(String);
  return [
    'VALIDATION_FAILED',
    'INVALID_CREDENTIALS',
    'INVALID_TOKEN',
    'TOKEN_EXPIRED',
    'FORBIDDEN',
    'NOT_FOUND',
    'UNIQUE_VIOLATION',
    'FOREIGN_KEY_VIOLATION',
    'SERIALIZATION_FAILURE',
    'CONFLICT',
    'PAYLOAD_TOO_LARGE',
    'UNSUPPORTED_MEDIA_TYPE',
    'RATE_LIMITED',
    'DATABASE_UNAVAILABLE',
    'POOL_EXHAUSTED',
    'QUERY_TIMEOUT',
    'OVERLOADED',
    'RATE_LIMIT_UNAVAILABLE',
    'INTERNAL',
    // Written by the HTTP-level handler (src/platform/http/error-handler.ts) for a request that never arrived.
    'REQUEST_TIMEOUT',
  ];
}

describe('docs/api.md against the OpenAPI document', async () => {
  const markdown = await readFile(API_MD, 'utf8');
  const document = await serverDocument();
  const rows = endpointRows(markdown);
  // The docs pages are the document's own host; the document does not describe itself.
  const described = rows.filter((row) => !row.operations.every((key) => key.startsWith('GET /docs')));

  it('finds the endpoint table', () => {
    expect(described.length).toBeGreaterThan(10);
    for (const row of described) expect(row.operations.length, JSON.stringify(row)).toBeGreaterThan(0);
  });

  it('has every served endpoint row in the document, with the same success status', () => {
    for (const row of described.filter((candidate) => !candidate.planned)) {
      for (const key of row.operations) {
        expect(operationsOf(document).has(key), `${key} is in docs/api.md but the server does not serve it`).toBe(true);
        expect(successStatusOf(document, key), `${key}: success status`).toBe(row.successStatus);
      }
    }
  });

  it('marks no served route as planned', () => {
    for (const row of described.filter((candidate) => candidate.planned))
      for (const key of row.operations)
        expect(operationsOf(document).has(key), `${key} is served now: remove its (planned) mark`).toBe(false);
  });

  it('documents every operation of the document', () => {
    const documented = new Set(described.filter((row) => !row.planned).flatMap((row) => row.operations));
    for (const key of operationsOf(document).keys())
      expect(documented.has(key), `${key} is served but has no row in docs/api.md`).toBe(true);
  });

  it('lists every error code the server can send in the error table', () => {
    const table = tableRows(markdown, '## Conventions').flatMap((cells) =>
      (cells[2] ?? '').split('/').map((code) => code.trim()),
    );
    for (const code of registeredCodes(document))
      expect(table, `error code ${code} is missing from docs/api.md`).toContain(code);
  });
});

describe('the README example', () => {
  it('is examples/calling-the-api.ts verbatim, so the typecheck compiles what readers copy', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const example = await readFile(new URL('../../examples/calling-the-api.ts', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Calling the API from TypeScript'));
    const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    expect(block).toBe(example);
  });
});
