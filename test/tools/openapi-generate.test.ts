import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, onTestFinished, test } from 'vitest';
import { baselineDocument } from '../../tools/openapi/baseline.ts';
import {
  CLIENT_TYPES_PATH,
  DOCUMENT_PATH,
  renderClientTypes,
  renderDocument,
  serverDocument,
} from '../../tools/openapi/generate.ts';

// The library under `npm run api:client` and `npm run api:check` (the CLIs run as child processes,
// where coverage cannot follow): the document built from the routes, its committed rendering, the
// client types, and which committed document a change is measured against.

const ROOT = path.resolve(import.meta.dirname, '../..');

describe('the generated document and client', () => {
  test('the routes produce exactly the committed docs/openapi.json and client/schema.ts', async () => {
    const document = await serverDocument();
    expect(document.info.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(Object.keys(document.paths)).toContain('/auth/login');
    // What `npm run api:client` writes; a route changed without regenerating fails here (run it).
    expect(renderDocument(document)).toBe(await readFile(path.join(ROOT, DOCUMENT_PATH), 'utf8'));
    expect(await renderClientTypes(document)).toBe(await readFile(path.join(ROOT, CLIENT_TYPES_PATH), 'utf8'));
  }, 60_000);

  test('paths and schemas are written in alphabetical order whatever order routes register in', () => {
    const rendered = renderDocument({
      info: { version: '1.0.0' },
      paths: { '/b': {}, '/a': {}, '/c': {} },
      components: { schemas: { Zed: { type: 'string' }, Alpha: { type: 'string' } } },
    });
    const parsed = JSON.parse(rendered) as { paths: object; components: { schemas: object } };
    expect(Object.keys(parsed.paths)).toEqual(['/a', '/b', '/c']);
    expect(Object.keys(parsed.components.schemas)).toEqual(['Alpha', 'Zed']);
    expect(rendered.endsWith('}\n')).toBe(true);
    // Without components (or without schemas) nothing is invented.
    expect(JSON.parse(renderDocument({ info: { version: '1' }, paths: {} }))).toEqual({
      info: { version: '1' },
      paths: {},
    });
    expect(JSON.parse(renderDocument({ info: { version: '1' }, paths: {}, components: {} }))).toEqual({
      info: { version: '1' },
      paths: {},
      components: {},
    });
  });
});

describe('baselineDocument', () => {
  async function repository(): Promise<{
    dir: string;
    commit: (version: string) => Promise<void>;
    git: (...args: string[]) => string;
  }> {
    const dir = await mkdtemp(path.join(tmpdir(), 'api-baseline-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const git = (...args: string[]) =>
      execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.test', ...args], {
        cwd: dir,
        encoding: 'utf8',
      });
    git('init', '-q');
    await mkdir(path.join(dir, 'docs'));
    const commit = async (version: string) => {
      await writeFile(path.join(dir, DOCUMENT_PATH), JSON.stringify({ info: { version }, paths: {} }));
      git('add', '-A');
      git('commit', '-qm', version);
    };
    return { dir, commit, git };
  }

  test('a working copy that changed the document is measured against HEAD’s', async () => {
    const { dir, commit } = await repository();
    await commit('1.0.0');
    await commit('1.1.0');
    await writeFile(path.join(dir, DOCUMENT_PATH), JSON.stringify({ info: { version: '2.0.0' }, paths: {} }));
    const baseline = await baselineDocument(dir, undefined);
    expect(baseline?.ref).toBe('HEAD');
    expect(baseline?.document.info.version).toBe('1.1.0');
  });

  test('a clean working copy (a commit being checked) against HEAD’s first parent', async () => {
    const { dir, commit } = await repository();
    await commit('1.0.0');
    await commit('1.1.0');
    const baseline = await baselineDocument(dir, undefined);
    expect(baseline).toEqual({ ref: 'HEAD^1', document: { info: { version: '1.0.0' }, paths: {} } });
  });

  test('--base names the commit (a pull request’s target branch)', async () => {
    const { dir, commit, git } = await repository();
    await commit('1.0.0');
    git('tag', 'released');
    await commit('1.1.0');
    await commit('1.2.0');
    expect((await baselineDocument(dir, 'released'))?.document.info.version).toBe('1.0.0');
    expect(await baselineDocument(dir, 'no-such-ref')).toBeUndefined();
  });

  test('nothing to compare with: the first commit, a working copy without a document, or no git', async () => {
    const { dir, commit } = await repository();
    await commit('1.0.0');
    // The first commit has no parent: nothing before it.
    expect(await baselineDocument(dir, undefined)).toBeUndefined();
    await rm(path.join(dir, DOCUMENT_PATH));
    // A deleted document is a change of the working copy: HEAD's is the baseline.
    expect((await baselineDocument(dir, undefined))?.ref).toBe('HEAD');
    const notRepository = await mkdtemp(path.join(tmpdir(), 'api-baseline-none-'));
    onTestFinished(() => rm(notRepository, { recursive: true, force: true }));
    expect(await baselineDocument(notRepository, undefined)).toBeUndefined();
  });
});
