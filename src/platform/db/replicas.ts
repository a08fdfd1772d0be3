import { sql, type Kysely } from 'kysely';
import { SerializationError, ServiceUnavailableError } from '../errors/index.ts';
import { createDatabase, type CreateDatabaseOptions, type DB, type PoolConfig } from './database.ts';

/** Where a read ran. */
export type ReadTarget = 'replica' | 'primary';

/**
 * Why a read that could have gone to a replica went to the primary: no replica was reachable,
 * every reachable one was too far behind, or the replica failed the query itself (connection lost,
 * a recovery conflict cancelled it).
 */
export type FallbackReason = 'unavailable' | 'lagging' | 'error';

export interface ReplicaStatus {
  /** `host:port/database`: never the credentials. */
  readonly name: string;
  /** `unknown` until the first check. */
  readonly state: 'unknown' | 'ok' | 'lagging' | 'unavailable';
  /** How far behind the primary it was at the last check; undefined when it could not be measured. */
  readonly lagMs: number | undefined;
}

export interface ReplicaEvents {
  onRead?(target: ReadTarget): void;
  onFallback?(reason: FallbackReason): void;
}

export interface ReadDatabaseOptions {
  readonly replicaUrls: readonly string[];
  /** A replica further behind than this is skipped. */
  readonly maxLagMs: number;
  /** How long a check's result is trusted before the next read measures again. */
  readonly checkIntervalMs: number;
  /** Pool settings of each replica's own pool (its URL aside). */
  readonly pool: Omit<PoolConfig, 'url'>;
  /** Query hooks for the replicas' databases (metrics, slow-query log). */
  readonly databaseOptions?: Omit<CreateDatabaseOptions, 'pool'>;
  readonly events?: ReplicaEvents;
  /** Milliseconds since the epoch; tests may move time. */
  readonly now?: () => number;
}

/**
 * The database for reads that may be slightly stale: a read replica when one is up and within
 * the lag bound, the primary otherwise. Everything that must read its own writes uses the primary
 * directly and never comes here.
 */
export interface ReadDatabase {
  /**
   * Runs `work` on a usable replica, or on the primary. When the replica fails the query with a
   * connection or recovery-conflict error, `work` runs again on the primary: it must only read.
   */
  read<T>(work: (db: Kysely<DB>) => Promise<T>): Promise<T>;
  /** Each replica as last measured (for the metrics). */
  replicas(): readonly ReplicaStatus[];
  /** Ends the replicas' pools; the primary belongs to the caller. */
  destroy(): Promise<void>;
}

/** A check that takes longer than this finds the replica unavailable. */
const CHECK_TIMEOUT_MS = 1000;

/**
 * A replica-aware database over `primary`.
 *
 * Lag is measured against the primary's WAL position, not the replica's last replayed commit
 * time (which on an idle primary grows without the replica being behind at all): each check
 * samples `pg_current_wal_lsn()` on the primary, and a replica whose replay position has reached
 * the sample taken at time T holds everything committed before T. It is skipped when it holds
 * nothing newer than `maxLagMs` ago, when it is not a standby, or when it does not answer. A
 * check runs at most once per `checkIntervalMs`, on the read that finds the last one stale; a
 * read that finds it very stale (two intervals) waits for it.
 *
 * @example
 * ```ts
 * const reads = createReadDatabase(db, {
 *   replicaUrls: ['postgres://app@replica-1/app'], maxLagMs: 5000, checkIntervalMs: 1000, pool: config.database,
 * });
 * const page = await reads.read((db) => new UserRepository(db).list(21));
 * await reads.destroy();
 * ```
 */
export function createReadDatabase(primary: Kysely<DB>, options: ReadDatabaseOptions): ReadDatabase {
  if (options.replicaUrls.length === 0) {
    return { read: (work) => work(primary), replicas: () => [], destroy: async () => {} };
  }
  return new ReplicaRouter(primary, options);
}

interface Replica {
  readonly name: string;
  readonly db: Kysely<DB>;
  state: ReplicaStatus['state'];
  lagMs: number | undefined;
}

/** The primary's WAL position at a moment. */
interface WalSample {
  readonly lsn: bigint;
  readonly at: number;
}

class ReplicaRouter implements ReadDatabase {
  readonly #primary: Kysely<DB>;
  readonly #options: ReadDatabaseOptions;
  readonly #now: () => number;
  readonly #replicas: Replica[];
  #samples: WalSample[] = [];
  #checkedAt: number | undefined;
  #checking: Promise<void> | undefined;
  #next = 0;

  constructor(primary: Kysely<DB>, options: ReadDatabaseOptions) {
    this.#primary = primary;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#replicas = options.replicaUrls.map((url) => ({
      name: replicaName(url),
      db: createDatabase({ ...options.pool, url }, options.databaseOptions),
      state: 'unknown',
      lagMs: undefined,
    }));
  }

  async read<T>(work: (db: Kysely<DB>) => Promise<T>): Promise<T> {
    const replica = await this.#choose();
    if (typeof replica === 'string') return this.#onPrimary(work, replica);
    let result: T;
    try {
      result = await work(replica.db);
    } catch (error) {
      if (!(error instanceof ServiceUnavailableError || error instanceof SerializationError)) throw error;
      // Until the next check says otherwise.
      replica.state = 'unavailable';
      return this.#onPrimary(work, 'error');
    }
    this.#options.events?.onRead?.('replica');
    return result;
  }

  replicas(): readonly ReplicaStatus[] {
    return this.#replicas.map(({ name, state, lagMs }) => ({ name, state, lagMs }));
  }

  async destroy(): Promise<void> {
    await this.#checking;
    await Promise.all(this.#replicas.map((replica) => replica.db.destroy()));
  }

  async #onPrimary<T>(work: (db: Kysely<DB>) => Promise<T>, reason: FallbackReason): Promise<T> {
    this.#options.events?.onFallback?.(reason);
    const result = await work(this.#primary);
    this.#options.events?.onRead?.('primary');
    return result;
  }

  async #choose(): Promise<Replica | FallbackReason> {
    const age = this.#checkedAt === undefined ? Infinity : this.#now() - this.#checkedAt;
    if (age >= 2 * this.#options.checkIntervalMs) await this.#refresh();
    else if (age >= this.#options.checkIntervalMs) void this.#refresh();

    const usable = this.#replicas.filter((replica) => replica.state === 'ok');
    const replica = usable[this.#next++ % Math.max(1, usable.length)];
    if (replica !== undefined) return replica;
    return this.#replicas.some((candidate) => candidate.state === 'lagging') ? 'lagging' : 'unavailable';
  }

  /** One check at a time; concurrent reads share it. Never rejects. */
  #refresh(): Promise<void> {
    this.#checking ??= this.#check().finally(() => {
      this.#checking = undefined;
    });
    return this.#checking;
  }

  async #check(): Promise<void> {
    const sampledAt = this.#now();
    const lsn = await withTimeout(primaryWalLsn(this.#primary)).catch(() => undefined);
    if (lsn !== undefined) this.#keepSample({ lsn, at: sampledAt });
    await Promise.all(
      this.#replicas.map(async (replica) => {
        const replay = await withTimeout(replayLsn(replica.db)).catch(() => undefined);
        if (replay === undefined) {
          replica.state = 'unavailable';
          replica.lagMs = undefined;
          return;
        }
        const lag = this.#lagOf(replay, this.#now());
        replica.lagMs = lag.ms;
        replica.state = lag.exact && lag.ms !== undefined && lag.ms <= this.#options.maxLagMs ? 'ok' : 'lagging';
      }),
    );
    this.#checkedAt = this.#now();
  }

  /**
   * How stale a replica at `replay` is: it holds everything the primary had at the newest sample
   * it has reached, so its data is at most `now - sample.at` old (0 when it reached the newest).
   * Behind every sample kept, it is at least as old as the oldest one (reported, not `exact`), or,
   * with a single sample (the first check), of unknown age: skipped either way.
   */
  #lagOf(replay: bigint, now: number): { ms: number | undefined; exact: boolean } {
    const samples = this.#samples;
    for (let i = samples.length - 1; i >= 0; i--) {
      const sample = samples[i];
      if (sample === undefined || replay < sample.lsn) continue;
      return { ms: i === samples.length - 1 ? 0 : Math.max(0, now - sample.at), exact: true };
    }
    const oldest = samples[0];
    return { ms: samples.length > 1 && oldest !== undefined ? Math.max(0, now - oldest.at) : undefined, exact: false };
  }

  /**
   * Keeps the samples of the last `maxLag + 2 × interval`, and the newest one before that, so a
   * replica stuck behind the window still has a reference to measure its lag against.
   */
  #keepSample(sample: WalSample): void {
    const horizon = sample.at - (this.#options.maxLagMs + 2 * this.#options.checkIntervalMs);
    // A lower LSN than before means another primary (a failover): the old samples mean nothing.
    const kept = this.#samples.filter((old) => old.lsn <= sample.lsn);
    const recent = kept.filter((old) => old.at >= horizon);
    const older = kept.filter((old) => old.at < horizon).at(-1);
    this.#samples = [...(older === undefined ? [] : [older]), ...recent, sample];
  }
}

async function primaryWalLsn(db: Kysely<DB>): Promise<bigint> {
  const { rows } = await sql<{ lsn: string }>`select pg_current_wal_lsn()::text as lsn`.execute(db);
  return parseLsn(rows[0]?.lsn);
}

/** The standby's replay position; a server that is not in recovery is not a replica. */
async function replayLsn(db: Kysely<DB>): Promise<bigint> {
  const { rows } = await sql<{ standby: boolean; lsn: string | null }>`
    select pg_is_in_recovery() as standby, pg_last_wal_replay_lsn()::text as lsn
  `.execute(db);
  const row = rows[0];
  if (row?.standby !== true) throw new Error('not a standby');
  return parseLsn(row.lsn);
}

/** `16/B374D848` → a comparable integer. */
function parseLsn(text: string | null | undefined): bigint {
  const match = /^([0-9A-F]+)\/([0-9A-F]+)$/i.exec(text ?? '');
  if (match?.[1] === undefined || match[2] === undefined) throw new Error(`not an LSN: ${String(text)}`);
  return (BigInt(`0x${match[1]}`) << 32n) + BigInt(`0x${match[2]}`);
}

function replicaName(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port === '' ? '5432' : parsed.port}${parsed.pathname}`;
}

async function withTimeout<T>(promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error('replica check timed out'));
    }, CHECK_TIMEOUT_MS);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
