import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// Run with this process's Node 24, not whatever `node` the bin's shebang finds on PATH.
const KYSELY_CODEGEN = path.join(ROOT, 'node_modules', '.bin', 'kysely-codegen');

/** The one set of kysely-codegen options, shared by `db:types` and `db:check`. */
const CODEGEN_ARGS = [
  '--dialect',
  'postgres',
  '--out-file',
  'db-types/index.ts',
  '--exclude-pattern',
  'kysely_migration*',
  '--overrides',
  JSON.stringify({
    columns: {
      'users.role': 'Generated<"user" | "admin">',
      'users.status': 'Generated<"active" | "disabled">',
      'sessions.end_reason':
        '"logout" | "revoked" | "revoked_others" | "password_changed" | "password_reset" | "refresh_reused" | "user_disabled" | "user_deleted" | "email_changed" | null',
      // Check constraints, which kysely-codegen cannot read, hold these columns to their values.
      'account_tokens.purpose': '"email_verification" | "password_reset" | "email_change_new" | "email_change_current"',
      'email_outbox.state': 'Generated<"pending" | "sending" | "sent" | "skipped" | "failed">',
    },
  }),
  '--log-level',
  'error',
];

/**
 * Runs kysely-codegen against `url` — always a scratch database migrated from `migrations/`,
 * never the live one, whose drift would leak into the types — writing `db-types/index.ts`, or
 * verifying it. Resolves to undefined when done or up to date, to kysely-codegen's explanation
 * when `verify` finds the file stale.
 *
 * @example
 * ```ts
 * await withScratchDatabase(adminUrl, (url) => runCodegen(url, 'write'));
 * ```
 */
export async function runCodegen(url: string, mode: 'write' | 'verify'): Promise<string | undefined> {
  try {
    await execFileAsync(
      process.execPath,
      [KYSELY_CODEGEN, ...CODEGEN_ARGS, '--url', url, ...(mode === 'verify' ? ['--verify'] : [])],
      { cwd: ROOT },
    );
    return undefined;
  } catch (error) {
    const { stderr = '' } = error as { stderr?: string };
    if (mode === 'verify' && stderr.includes('not up-to-date')) return diffOf(stderr);
    const reason = /^\w*Error: (.*)$/m.exec(stderr)?.[1] ?? (error instanceof Error ? error.message : String(error));
    throw new Error(`kysely-codegen failed: ${reason}`, { cause: error });
  }
}

/**
 * kysely-codegen prints its diff and then the stack of the error it throws; keep the diff
 * (`-` what migrations/ generates, `+` what db-types/index.ts says) and drop the stack.
 */
function diffOf(stderr: string): string {
  const lines = stderr.split('\n');
  const stackStart = lines.findIndex((line) => /^\/.*:\d+$/.test(line) || /^\w*Error: /.test(line));
  const diff = lines
    .slice(0, stackStart === -1 ? undefined : stackStart)
    .join('\n')
    .trim();
  return diff === '' ? '' : `(- generated from migrations/, + db-types/index.ts)\n${diff.replace(/^✗ /, '')}`;
}
