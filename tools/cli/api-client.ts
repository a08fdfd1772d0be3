import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { acknowledges, breakingChanges, type ApiDocument } from '../openapi/breaking.ts';
import {
  CLIENT_TYPES_PATH,
  DOCUMENT_PATH,
  renderClientTypes,
  renderDocument,
  serverDocument,
} from '../openapi/generate.ts';
import { errorMessage } from '../../src/platform/cli/target.ts';

// npm run api:client — builds the app (no database), writes its OpenAPI document to
// docs/openapi.json and the client's types to client/schema.ts. Breaking changes against the
// document it replaces are printed; `npm run api:check` is the gate that refuses them.

const root = process.cwd();

try {
  const document = await serverDocument();
  const previous = await readFile(`${root}/${DOCUMENT_PATH}`, 'utf8').catch(() => undefined);
  await write(DOCUMENT_PATH, renderDocument(document));
  await write(CLIENT_TYPES_PATH, await renderClientTypes(document));
  if (previous !== undefined) warnAboutBreakingChanges(JSON.parse(previous) as ApiDocument, document);
  process.stdout.write(`wrote ${DOCUMENT_PATH} and ${CLIENT_TYPES_PATH} (API version ${document.info.version})\n`);
} catch (error) {
  process.stderr.write(`api:client failed: ${errorMessage(error)}\n`);
  process.exitCode = 1;
}

async function write(path: string, contents: string): Promise<void> {
  await mkdir(dirname(`${root}/${path}`), { recursive: true });
  await writeFile(`${root}/${path}`, contents);
}

function warnAboutBreakingChanges(previous: ApiDocument, next: ApiDocument): void {
  const problems = breakingChanges(previous, next);
  if (problems.length === 0) return;
  const verdict = acknowledges(previous, next)
    ? `acknowledged by the major version ${next.info.version}`
    : `NOT acknowledged: npm run api:check will fail until API_VERSION in src/platform/http/docs.ts gets a new major version`;
  process.stdout.write(`breaking changes against the previous ${DOCUMENT_PATH}, ${verdict}:\n`);
  for (const problem of problems) process.stdout.write(`  - ${problem}\n`);
}
