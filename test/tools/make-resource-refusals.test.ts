import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeResource, ResourceNameError } from '../../tools/make-resource/generate.ts';

// The generator's refusals and its all-or-nothing writing, on a minimal project of its own (the
// whole chain on a copy of this one is test/tools/make-resource.test.ts).

const APP = `export async function buildApp(deps: { db: unknown }) {
  const app = { register: async (_plugin: unknown, _options: unknown) => {} };
  return app;
}
`;

let root: string;

beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'make-resource-'));
  await fs.mkdir(path.join(root, 'migrations'));
  await fs.mkdir(path.join(root, 'src'));
  await fs.mkdir(path.join(root, 'test'));
  await fs.mkdir(path.join(root, 'db-types'));
  await fs.writeFile(
    path.join(root, 'migrations/20261126224500_create_users.ts'),
    "export async function up(db) { await db.schema.createTable('users').execute(); }\n",
  );
  await fs.writeFile(
    path.join(root, 'db-types/index.ts'),
    'export interface DB {\n  users: Users;\n  legacy_things: LegacyThings;\n}\n',
  );
  await fs.writeFile(path.join(root, 'src/app.ts'), APP);
});

afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

async function tree(): Promise<string[]> {
  const entries = await fs.readdir(root, { recursive: true });
  return entries.map(String).sort();
}

describe('make:resource refuses, writing nothing', () => {
  it.each([
    [
      'a table a migration creates',
      'users',
      /the table users already exists: migrations\/20261126224500_create_users\.ts/,
    ],
    ['a table only the generated types know', 'legacy-things', /the table legacy_things already exists \(db-types/],
    ['a name the platform answers', 'metrics', /reserved/],
    ['a singular name', 'widget', /should be plural/],
  ])('%s (%s)', async (_what, name, message) => {
    const before = await tree();
    const refused = await makeResource(root, name, new Date()).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ResourceNameError);
    expect(String(refused)).toMatch(message);
    expect(await tree()).toEqual(before);
  });

  it('refuses a feature folder or a test folder that exists', async () => {
    await fs.mkdir(path.join(root, 'src/widgets'));
    await expect(makeResource(root, 'widgets', new Date())).rejects.toThrow('src/widgets/ already exists');
    await fs.rm(path.join(root, 'src/widgets'), { recursive: true });
    await fs.mkdir(path.join(root, 'test/widgets'));
    await expect(makeResource(root, 'widgets', new Date())).rejects.toThrow('test/widgets/ already exists');
  });

  it('refuses an app.ts it cannot register in, naming the line to add by hand', async () => {
    await fs.writeFile(path.join(root, 'src/app.ts'), 'export const app = 1;\n');
    const before = await tree();
    await expect(makeResource(root, 'widgets', new Date())).rejects.toThrow(/add this line by hand/);
    expect(await tree()).toEqual(before);
  });
});

describe('make:resource writes all or nothing', () => {
  it('takes back what it wrote when a later file cannot be written', async () => {
    // `test` is a file here, so the test folder cannot be made after the migration and src/widgets/ were written.
    await fs.rm(path.join(root, 'test'), { recursive: true });
    await fs.writeFile(path.join(root, 'test'), 'not a folder\n');
    const before = await tree();
    await expect(makeResource(root, 'widgets', new Date())).rejects.toMatchObject({ code: 'ENOTDIR' });
    expect(await tree()).toEqual(before);
    expect(await fs.readFile(path.join(root, 'src/app.ts'), 'utf8')).toBe(APP);
  });

  it('writes after the latest migration, and registers the feature in app.ts', async () => {
    const written = await makeResource(root, 'widgets', new Date('2026-01-01T00:00:00Z'));
    // The clock is behind the latest migration: the new one still sorts after it.
    expect(written[0]).toBe('migrations/20261126224501_create_widgets.ts');
    expect(await fs.readFile(path.join(root, 'src/app.ts'), 'utf8')).toContain(
      "await app.register(import('./widgets/routes.ts'), { db: deps.db });",
    );
  });
});
