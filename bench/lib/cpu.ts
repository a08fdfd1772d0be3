import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';

/**
 * CPU time from /proc: on a machine shared with other developers' test suites, CPU time spent
 * per request is steadier than requests per second, and it says which process spends it.
 */

const TICKS_PER_SECOND = 100;

/** User + system CPU milliseconds of one process, or undefined when it is gone. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name, which may itself contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** The postmaster of the cluster in `clusterDir` and all its children (backends, walwriter, …). */
export function postgresPids(clusterDir: string | undefined): number[] {
  if (clusterDir === undefined) return [];
  let postmaster: number;
  try {
    postmaster = Number(fs.readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return [];
  }
  const pids = [postmaster];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (parentOf(pid) === postmaster) pids.push(pid);
  }
  return pids;
}

/** The bench database on an external server on this machine, whose backends are metered instead. */
let externalDatabaseUrl: string | undefined;

/**
 * Meter an external server's backends serving `url`'s database (BENCH_DATABASE_URL, e.g. the
 * PostgreSQL 15 on 127.0.0.1:5432). Only on loopback: a remote server's pids are not ours to read.
 * Not its whole process tree, which other users' databases share.
 */
export function meterExternalBackends(url: string): void {
  const host = new URL(url).hostname;
  externalDatabaseUrl = ['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host) ? url : undefined;
}

/**
 * The PostgreSQL processes a run is metered on: the embedded cluster's whole tree, or the
 * backends connected to the bench database on an external server on this machine (read when the
 * run starts: the servers' pools hold their connections for the run), or none.
 */
export async function postgresProcesses(clusterDir: string | undefined): Promise<number[]> {
  if (clusterDir !== undefined) return postgresPids(clusterDir);
  if (externalDatabaseUrl === undefined) return [];
  const client = new pg.Client({ connectionString: externalDatabaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      'select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()',
    );
    return rows.map((row) => row.pid);
  } finally {
    await client.end();
  }
}

/** CPU spent by a set of processes between `start()` and `stop()`, in milliseconds. */
export class CpuMeter {
  readonly #pids: () => readonly number[];
  #before = new Map<number, number>();

  constructor(pids: () => readonly number[]) {
    this.#pids = pids;
  }

  start(): void {
    this.#before = new Map();
    for (const pid of this.#pids()) {
      const ms = processCpuMs(pid);
      if (ms !== undefined) this.#before.set(pid, ms);
    }
  }

  /**
   * Only processes alive at both ends count: a backend that came and went in between is missed.
   * NaN when no process was found at the start: a meter that found nothing must not read 0.
   */
  stop(): number {
    if (this.#before.size === 0) return Number.NaN;
    let total = 0;
    for (const [pid, before] of this.#before) {
      const after = processCpuMs(pid);
      if (after !== undefined) total += after - before;
    }
    return total;
  }
}
