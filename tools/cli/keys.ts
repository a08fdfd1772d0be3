import { parseArgs } from 'node:util';
import { loadConfig, loadEnvFile, type Config } from '../../src/platform/config.ts';
import { createDatabase } from '../../src/platform/db/database.ts';
import { resolveEncryptionKey } from '../../src/platform/secrets.ts';
import { SecretBox } from '../../src/platform/secret-box.ts';
import { SigningKeyStore } from '../../src/keys/signing-keys.ts';
import { type SigningKeyInfo } from '../../src/keys/key-states.ts';
import { commandContext, reportFailure } from '../../src/platform/cli/report.ts';
import { displayUrl, errorMessage, withTarget } from '../../src/platform/cli/target.ts';

const USAGE = `Usage: npm run keys:list [-- --json]
       npm run keys:rotate [-- --now]
keys:list   every access-token signing key with its state: next (published, not signing yet),
            active (signs), retiring (published until the tokens it signed expire), retired.
keys:rotate publishes a new key now; it starts signing after JWKS_MAX_AGE_SECONDS (plus 30 s),
            once every verifier has fetched it. Safe with several instances running.
  --now     the new key signs at once: only when the active key cannot be used (ENCRYPTION_KEY
            lost); verifiers that cached the JWKS fetch it again on the new kid.`;

/**
 * npm run keys:list / keys:rotate — the signing keys of the database the server uses.
 *
 * @example
 * ```sh
 * npm run keys:rotate   # then, later: npm run keys:list
 * ```
 */
async function main(): Promise<number> {
  const [command, ...rest] = process.argv.slice(2);
  let values: { json?: boolean; now?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { json: { type: 'boolean' }, now: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (error) {
    process.stderr.write(`keys:${command ?? ''}: ${errorMessage(error)}\n${USAGE}\n`);
    return 2;
  }
  if (values.help === true || (command !== 'list' && command !== 'rotate')) {
    process.stdout.write(`${USAGE}\n`);
    return values.help === true ? 0 : 2;
  }
  loadEnvFile();
  const config = loadConfig();
  if (command === 'rotate' && config.auth.jwtAlgorithm === 'HS256') {
    process.stderr.write(
      'keys:rotate: JWT_ALGORITHM=HS256 signs with JWT_SECRET, not database keys: rotate it with ' +
        'JWT_PREVIOUS_SECRETS (docs/operations.md), or set JWT_ALGORITHM=EdDSA to switch to published keys.\n',
    );
    return 2;
  }
  try {
    return await withTarget(async (target) => {
      const db = createDatabase({
        ...config.database,
        url: target.url,
        poolMax: 1,
        applicationName: `${config.database.applicationName} keys:${command}`,
      });
      try {
        const store = await storeFor(config, db);
        if (command === 'rotate') {
          const key = await store.rotate({ signNow: values.now === true });
          process.stdout.write(
            `Published key ${key.kid} (${key.algorithm}) on ${displayUrl(target.url)}; it signs from ` +
              `${key.signsFrom.toISOString()}. The current key stays published until its tokens expire.\n`,
          );
          return 0;
        }
        const keys = await store.list();
        if (values.json === true) process.stdout.write(`${JSON.stringify({ keys })}\n`);
        else process.stdout.write(`${table(keys)}\n`);
        return 0;
      } finally {
        await db.destroy();
      }
    });
  } catch (error) {
    if (isUndefinedTable(error)) {
      process.stderr.write(`keys:${command} failed: the database is not migrated yet: run npm run migrate first.\n`);
      return 1;
    }
    reportFailure(`keys:${command}`, error, commandContext());
    return 1;
  }
}

/** PostgreSQL's undefined_table (42P01), wherever in the cause chain the data layer kept it. */
function isUndefinedTable(error: unknown): boolean {
  for (let current: unknown = error; current instanceof Error; current = current.cause) {
    if ((current as { code?: unknown }).code === '42P01') return true;
  }
  return false;
}

async function storeFor(config: Config, db: ReturnType<typeof createDatabase>): Promise<SigningKeyStore> {
  const { auth } = config;
  return new SigningKeyStore({
    db,
    box: new SecretBox(await resolveEncryptionKey(config)),
    policy: {
      algorithm: auth.jwtAlgorithm === 'HS256' ? 'EdDSA' : auth.jwtAlgorithm,
      accessTokenTtlSeconds: auth.accessTokenTtlSeconds,
      jwksMaxAgeSeconds: auth.jwksMaxAgeSeconds,
    },
    clock: () => new Date(),
  });
}

function table(keys: readonly SigningKeyInfo[]): string {
  if (keys.length === 0) return 'No signing keys yet: the server creates the first one when it starts.';
  const rows = keys.map((key) => [
    key.kid,
    key.algorithm,
    key.state,
    key.createdAt.toISOString(),
    key.signsFrom.toISOString(),
    key.publishedUntil?.toISOString() ?? '',
  ]);
  const header = ['kid', 'alg', 'state', 'published', 'signs from', 'published until'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

process.exitCode = await main();
