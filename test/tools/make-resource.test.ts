import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { makeResource, ResourceNameError } from '../../tools/make-resource/generate.ts';
import { resourceNames } from '../../tools/make-resource/names.ts';
import { removeDataDir } from '../helpers/data-dirs.ts';
import { freePort } from '../helpers/processes.ts';
import { ROOT, stopPostgresOf } from '../reliability/support.ts';

// docs/adding-a-feature.md followed on a scratch copy of the project: `npm run make:resource`,
// then the documented follow-up, then every check CI runs on what it wrote (typecheck, lint,
// db:lint, db:check, api:check) and the generated tests with the query-plan check, none of them
// edited. If the generator and the project drift apart, this fails.

const execFileAsync = promisify(execFile);
const copy = path.join(ROOT, '.data', `make-resource-${randomBytes(4).toString('hex')}`);
const dataDir = path.join(copy, '.data');
const testDataDir = path.join(copy, '.data', 'test');
const COPIED = [
  'package.json',
  'tsconfig.json',
  'kysely.config.ts',
  'vitest.config.ts',
  'eslint.config.ts',
  '.prettierrc.json',
  '.prettierignore',
  'src',
  'tools',
  'migrations',
  'db-types',
  'docs',
  'client',
  'test',
];

function run(command: string, args: readonly string[], env: Record<string, string>) {
  return execFileAsync(command, args, {
    cwd: copy,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    timeout: 300_000,
    maxBuffer: 16 * 1024 * 1024,
  });
}

const npmRun = (script: string, args: readonly string[], env: Record<string, string>) =>
  run('npm', ['run', '--silent', script, ...(args.length > 0 ? ['--', ...args] : [])], env);

describe('npm run make:resource', { timeout: 900_000 }, () => {
  afterAll(async () => {
    await stopPostgresOf(testDataDir);
    await stopPostgresOf(dataDir);
    await removeDataDir(dataDir);
    await fs.rm(copy, { recursive: true, force: true });
  });

  it('names a resource every way its files need, and refuses what cannot be one', () => {
    expect(resourceNames('project_notes')).toEqual({
      kebab: 'project-notes',
      table: 'project_notes',
      Singular: 'ProjectNote',
      Plural: 'ProjectNotes',
      singular: 'projectNote',
      plural: 'projectNotes',
      words: 'project note',
      pluralWords: 'project notes',
    });
    expect(resourceNames('categories')).toMatchObject({ Singular: 'Category', table: 'categories' });
    expect(resourceNames('boxes')).toMatchObject({ Singular: 'Box' });
    for (const name of ['Projects', 'my projects', '9lives', 'projects-', 'a'.repeat(38) + 's']) {
      expect(resourceNames(name), name).toEqual(expect.any(String));
    }
    expect(resourceNames('project')).toMatch(/should be plural/);
  });

  it('writes a feature on which migrate, db:types, api:client and every check pass unedited', async () => {
    await fs.mkdir(copy, { recursive: true });
    for (const entry of COPIED) await fs.cp(path.join(ROOT, entry), path.join(copy, entry), { recursive: true });
    await fs.rm(path.join(copy, 'test', '.data'), { recursive: true, force: true });
    await fs.symlink(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'));
    const env = { DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(await freePort(55900, 55949)) };

    // In this process, so coverage follows the generator; the CLI is run below.
    const written = await makeResource(copy, 'project-notes', new Date());
    expect(written).toEqual([
      expect.stringMatching(/^migrations\/\d{14}_create_project_notes\.ts$/),
      'src/project-notes/project-notes.repository.ts',
      'src/project-notes/project-notes.plans.ts',
      'src/project-notes/service.ts',
      'src/project-notes/routes.ts',
      'test/project-notes/project-notes.test.ts',
      'src/app.ts',
    ]);
    const app = await fs.readFile(path.join(copy, 'src/app.ts'), 'utf8');
    expect(app).toContain(
      "  await app.register(import('./project-notes/routes.ts'), { db: deps.db });\n  return app;\n",
    );
    // A second run, a taken name or a malformed one writes nothing and says why.
    await expect(npmRun('make:resource', ['project-notes'], env)).rejects.toMatchObject({
      stderr: expect.stringContaining('src/project-notes/ already exists'),
    });
    await expect(npmRun('make:resource', ['sessions'], env)).rejects.toMatchObject({
      stderr: expect.stringContaining('already exists'),
    });
    await expect(makeResource(copy, 'Project Notes', new Date())).rejects.toThrow(ResourceNameError);
    await expect(makeResource(copy, 'docs', new Date())).rejects.toThrow('reserved');

    await npmRun('migrate', [], env);
    await npmRun('db:types', [], env);
    expect(await fs.readFile(path.join(copy, 'db-types/index.ts'), 'utf8')).toMatch(/project_notes: ProjectNotes;/);
    await npmRun('api:client', [], env);
    expect(await fs.readFile(path.join(copy, 'docs/openapi.json'), 'utf8')).toContain('"/project-notes/{id}"');

    await npmRun('typecheck', [], env);
    await run('npx', ['eslint', ...written], env);
    await run('npx', ['prettier', '--check', ...written], env);
    expect((await npmRun('db:lint', [], env)).stdout).toContain('no unsafe operation');
    expect((await npmRun('db:check', [], env)).stdout).toContain('db:check passed');
    expect((await npmRun('api:check', [], env)).stdout).toContain('api:check passed');

    const tests = await run(
      'npx',
      ['vitest', 'run', 'test/project-notes/project-notes.test.ts', 'test/platform/db/query-plans.test.ts'],
      { ...env, TEST_DATA_DIR: testDataDir, TEST_EMBEDDED_PG_PORT: String(await freePort(55950, 55999)) },
    );
    expect(tests.stdout).toMatch(/Test Files.*2 passed/);
  });
});
