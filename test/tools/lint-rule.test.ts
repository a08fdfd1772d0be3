import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RULE = '@typescript-eslint/no-restricted-imports';

let eslint: ESLint;

/** The errors of the data-layer import rule for `code` linted as if it lived at `filePath`. */
async function restrictedImports(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: path.join(root, filePath) });
  if (result === undefined) throw new Error(`ESLint returned no result for ${filePath}`);
  expect(result.messages.filter((message) => message.fatal === true)).toEqual([]);
  return result.messages
    .filter((message) => message.ruleId === RULE && message.severity === 2)
    .map((message) => message.message);
}

// The project's own eslint.config.ts decides which files the rule covers and what it forbids.
// Only this rule runs, and without type information: the project service cannot type-check a file
// that does not exist on disk, and the rule does not need types.
describe('the data-layer import rule (eslint.config.ts)', () => {
  beforeAll(() => {
    eslint = new ESLint({
      cwd: root,
      ruleFilter: ({ ruleId }) => ruleId === RULE,
      overrideConfig: { languageOptions: { parserOptions: { projectService: false } } },
    });
  });

  it('fails a service that imports the pg driver', async () => {
    const messages = await restrictedImports(
      "import pg from 'pg';\n\nexport const pool = new pg.Pool();\n",
      'src/users/service.ts',
    );
    expect(messages).toEqual([
      expect.stringContaining('Only repositories (*.repository.ts) and src/platform/db/ may use the pg driver'),
    ]);
  });

  it("fails a service that imports Kysely's runtime", async () => {
    const messages = await restrictedImports(
      "import { sql } from 'kysely';\n\nexport const now = sql`now()`;\n",
      'src/users/service.ts',
    );
    expect(messages).toEqual([
      expect.stringContaining("Only repositories (*.repository.ts) and src/platform/db/ may use Kysely's runtime"),
    ]);
  });

  it('fails a route that imports a Kysely helper module or the pool package', async () => {
    const messages = await restrictedImports(
      "import { jsonArrayFrom } from 'kysely/helpers/postgres';\nimport Pool from 'pg-pool';\n\nexport { jsonArrayFrom, Pool };\n",
      'src/users/routes.ts',
    );
    expect(messages).toHaveLength(2);
  });

  it('allows a service to import Kysely types with `import type`', async () => {
    const messages = await restrictedImports(
      "import type { Kysely } from 'kysely';\n\nexport type Db = Kysely<object>;\n",
      'src/users/service.ts',
    );
    expect(messages).toEqual([]);
  });

  it("allows repositories and src/platform/db to import Kysely's runtime and pg", async () => {
    const code = "import { Kysely, sql } from 'kysely';\nimport pg from 'pg';\n\nexport { Kysely, sql, pg };\n";
    expect(await restrictedImports(code, 'src/users/fake.repository.ts')).toEqual([]);
    expect(await restrictedImports(code, 'src/platform/db/fake.ts')).toEqual([]);
  });
});
