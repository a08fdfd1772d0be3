import argon2 from 'argon2';
import pg from 'pg';
import { ensureDatabaseExists, withDatabaseName } from '../../src/platform/db/database-admin.ts';
import { startEmbeddedPostgres } from '../../src/platform/db/embedded.ts';
import { migrateToLatest } from '../../src/platform/db/migrator.ts';
import { OWASP_ARGON2ID } from '../../src/auth/passwords.ts';
import { meterExternalBackends } from './cpu.ts';
import { log, type BenchSettings } from './environment.ts';

/** The database every benchmark in one run uses: the same server, the same tables, the same rows. */
export interface BenchDatabase {
  readonly url: string;
  readonly serverVersion: string;
  readonly kind: 'embedded' | 'external';
  /** The embedded cluster's directory (its processes' CPU is metered); undefined for an external server. */
  readonly clusterDir: string | undefined;
  close(): Promise<void>;
}

/** A database of our own on that server, so truncating and seeding never touches anyone's data. */
const DATABASE_NAME = 'pgfb_bench';

export async function openBenchDatabase(settings: BenchSettings): Promise<BenchDatabase> {
  let serverUrl: string;
  let stop: () => Promise<void> = async () => {};
  let kind: BenchDatabase['kind'];
  let clusterDir: string | undefined;
  if (settings.externalUrl !== undefined) {
    serverUrl = settings.externalUrl;
    kind = 'external';
    meterExternalBackends(withDatabaseName(serverUrl, DATABASE_NAME));
  } else {
    const embedded = await startEmbeddedPostgres({ dataDir: settings.dataDir, port: settings.embeddedPort, log });
    serverUrl = embedded.url;
    stop = () => embedded.stop();
    kind = 'embedded';
    // Not always <dataDir>/postgres: as root with a private DATA_DIR the cluster lives outside it, and
    // a guessed path found no postmaster.pid, so PostgreSQL's CPU read 0 in every row.
    clusterDir = embedded.clusterDir;
    if (!embedded.owned)
      log('warning: attached to an embedded PostgreSQL another process started; it will be left running');
  }
  try {
    await ensureDatabaseExists(serverUrl, DATABASE_NAME);
    const url = withDatabaseName(serverUrl, DATABASE_NAME);
    await migrateToLatest(url);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    let serverVersion: string;
    try {
      const { rows } = await client.query<{ version: string }>('select version()');
      serverVersion = rows[0]?.version.replace(/ on .*/, '') ?? 'unknown';
    } finally {
      await client.end();
    }
    return { url, serverVersion, kind, clusterDir, close: stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

export const SEED_PASSWORD = 'bench password 123';
export const ADMIN_EMAIL = 'bench-admin@example.com';

export interface Seed {
  readonly adminId: string;
  /** Ids of the seeded (non-admin) users, for random lookups. */
  readonly userIds: readonly string[];
  /** Emails whose password is {@link SEED_PASSWORD}. */
  readonly emails: readonly string[];
  /** The stored argon2id hash of {@link SEED_PASSWORD}, OWASP parameters (what the app verifies). */
  readonly passwordHash: string;
}

/**
 * Empties the tables and inserts `count` users plus one admin, all with the same argon2id hash
 * (computed once: seeding 10k users through argon2 would take minutes and measure nothing).
 */
export async function seed(url: string, count: number): Promise<Seed> {
  const passwordHash = await argon2.hash(SEED_PASSWORD, { type: argon2.argon2id, ...OWASP_ARGON2ID });
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    // Every table of the schema (read from the catalogue, so a new feature's table needs no edit here).
    const { rows: tables } = await client.query<{ name: string }>(
      `select quote_ident(tablename) as name from pg_tables where schemaname = 'public' and tablename not like 'kysely_%'`,
    );
    await client.query(`truncate ${tables.map((t) => t.name).join(', ')} restart identity cascade`);
    const admin = await client.query<{ id: string }>(
      `insert into users (email, password_hash, name, role) values ($1, $2, 'Bench Admin', 'admin') returning id`,
      [ADMIN_EMAIL, passwordHash],
    );
    // Spread created_at over the past so the keyset index has a realistic order.
    const { rows } = await client.query<{ id: string; email: string }>(
      `insert into users (email, password_hash, name, created_at)
       select 'bench-user-' || n || '@example.com', $1, 'Bench User ' || n, now() - make_interval(secs => n)
       from generate_series(1, $2::int) as n
       returning id, email`,
      [passwordHash, count],
    );
    await client.query('vacuum analyze users');
    const adminId = admin.rows[0]?.id;
    if (adminId === undefined) throw new Error('seeding the admin returned no row');
    return { adminId, userIds: rows.map((row) => row.id), emails: rows.map((row) => row.email), passwordHash };
  } finally {
    await client.end();
  }
}

/** Reclaims what the insert benchmarks left, so later runs see the same table shape. */
export async function vacuum(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`delete from users where email like 'bench-ins-%' or email like 'bench-reg-%'`);
    await client.query('vacuum analyze users');
    await client.query('vacuum analyze refresh_tokens');
  } finally {
    await client.end();
  }
}
