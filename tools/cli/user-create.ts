import { createInterface } from 'node:readline/promises';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { loadConfig, loadEnvFile } from '../../src/platform/config.ts';
import { createDatabase } from '../../src/platform/db/database.ts';
import { migrateToLatest, migrationOptionsOf } from '../../src/platform/db/migrator.ts';
import { openDatabaseTarget } from '../../src/platform/db/target.ts';
import { AppError } from '../../src/platform/errors/index.ts';
import { registerUser } from '../../src/auth/registration.ts';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { databaseOf, reportFailure } from '../../src/platform/cli/report.ts';

const USAGE = `Usage: npm run user:create -- --email EMAIL --name NAME [--role admin|user]
The password is read from standard input (one line), or asked for at a terminal prompt;
it is never taken from the command line, where other users and shell history could see it.`;

/**
 * npm run user:create — creates a user (the first admin) on the database the server uses.
 *
 * @example
 * ```sh
 * printf '%s\n' 'a long passphrase' | npm run user:create -- --email admin@example.com --name Admin --role admin
 * ```
 */
async function main(): Promise<number> {
  let values: { email?: string; name?: string; role?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        email: { type: 'string' },
        name: { type: 'string' },
        role: { type: 'string', default: 'user' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    if (npmTookOptions()) return usageError('npm took the options for itself: put them after `--`');
    return usageError(error instanceof Error ? (error.message.split('. ')[0] ?? error.message) : String(error));
  }
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { email, name, role } = values;
  const missing = [email === undefined ? '--email' : undefined, name === undefined ? '--name' : undefined].filter(
    (option): option is string => option !== undefined,
  );
  if (missing.length > 0 && npmTookOptions()) return usageError('npm took the options for itself: put them after `--`');
  if (missing.length > 0) return usageError(`${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing`);
  if (role !== 'admin' && role !== 'user') return usageError(`--role must be admin or user, not "${role ?? ''}"`);
  if (email === undefined || name === undefined) return 2; // said above

  const password = await readPassword();
  loadEnvFile();
  const config = loadConfig();
  await using stack = new AsyncDisposableStack();
  try {
    const target = await openDatabaseTarget(config, (message) => process.stderr.write(`${message}\n`));
    stack.defer(() => target.close());
    const db = createDatabase({ ...config.database, url: target.url, poolMax: 1 });
    stack.defer(() => db.destroy());
    if (config.migrateOnStart) await migrateToLatest(target.url, migrationOptionsOf(config));
    const hasher = new PasswordHasher({ concurrency: 1, queueLimit: 0 });
    const user = await registerUser({ db, hasher }, { email, name, password, role });
    process.stdout.write(`created ${user.role} ${user.email} (id ${user.id})\n`);
    return 0;
  } catch (error) {
    // A refusal of the input (taken email, weak password) is the user's to fix; HTTP fields are not.
    if (error instanceof AppError && error.statusCode < 500) {
      process.stderr.write(`user:create failed: ${error.message}${error.field ? ` (${error.field})` : ''}\n`);
    } else {
      reportFailure('user:create', error, { logLevel: config.logLevel, database: databaseOf(config.database.url) });
    }
    return 1;
  }
}

/** Without `--`, npm keeps --email, --name and --role for itself (as npm_config_*) and runs the script without them. */
function npmTookOptions(): boolean {
  return ['email', 'name', 'role'].some((option) => process.env[`npm_config_${option}`] !== undefined);
}

/** What was wrong with the command line, and the command that works, in one line; exit code 2. */
function usageError(what: string): number {
  process.stderr.write(
    `user:create: ${what}. Run: npm run user:create -- --email EMAIL --name NAME [--role admin|user] ` +
      '(the password is read from standard input)\n',
  );
  return 2;
}

/** One line from stdin; at a terminal, asked twice without echo. Never trimmed: only the line break goes. */
async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) {
    let input = '';
    for await (const chunk of process.stdin) input += String(chunk);
    return input.replace(/\r?\n$/, '');
  }
  const ask = async (prompt: string) => {
    let muted = false;
    const output = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (!muted) process.stdout.write(chunk);
        callback();
      },
    });
    const rl = createInterface({ input: process.stdin, output, terminal: true });
    const answer = rl.question(prompt);
    muted = true;
    try {
      return await answer;
    } finally {
      rl.close();
      process.stdout.write('\n');
    }
  };
  const first = await ask('Password: ');
  if ((await ask('Repeat password: ')) !== first) throw new Error('The passwords do not match');
  return first;
}

process.exitCode = await main();
