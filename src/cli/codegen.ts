import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadConfig } from '../config.ts';
import { withDatabaseName } from '../db/embedded.ts';
import { withScratchDatabase } from '../db/scratch.ts';
import { openDatabaseTarget } from '../db/target.ts';

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The one set of kysely-codegen options, shared by `db:types` and `db:check`. */
const CODEGEN_ARGS = [
  '--dialect',
  'postgres',
  '--out-file',
  'db-types/index.ts',
  '--exclude-pattern',
  'kysely_migration*',
  '--overrides',
  JSON.stringify({ columns: { 'users.role': 'Generated<"user" | "admin">' } }),
  '--log-level',
  'error',
];

/**
 * Runs kysely-codegen against a scratch database migrated from `migrations/` (never against the
 * live database, whose drift would leak into the types), writing or verifying `db-types/`.
 */
export async function runCodegen(mode: 'write' | 'verify'): Promise<void> {
  const config = loadConfig();
  const target = await openDatabaseTarget(config, (message) => process.stderr.write(`${message}\n`));
  try {
    const adminUrl = target.embedded?.url ?? withDatabaseName(target.url, 'postgres');
    await withScratchDatabase(adminUrl, async (url) => {
      await execFileAsync(
        'kysely-codegen',
        [...CODEGEN_ARGS, '--url', url, ...(mode === 'verify' ? ['--verify'] : [])],
        { cwd: ROOT },
      );
    });
  } finally {
    await target.close();
  }
}
