import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
/** Where the code under test lives: the project, or the snapshot of it a run executes from. */
export const ROOT_DIR = path.dirname(BENCH_DIR);
/** The project's work tree (git, results, scratch files), also when running from a snapshot. */
export const PROJECT_DIR = process.env.BENCH_SNAPSHOT_OF ?? ROOT_DIR;
export const RESULTS_DIR = path.join(PROJECT_DIR, 'bench', 'results');
/** Git-ignored scratch space: CPU profiles, server logs. */
export const TMP_DIR = path.join(PROJECT_DIR, 'bench', '.tmp');

/** Everything the benchmark reads from the environment, read once. */
export interface BenchSettings {
  /** DATA_DIR for the embedded PostgreSQL (default `.data/bench`). */
  readonly dataDir: string;
  readonly embeddedPort: number;
  /** An external PostgreSQL server (e.g. the PostgreSQL 15 on 127.0.0.1:5432) instead of the embedded one. */
  readonly externalUrl: string | undefined;
  /** First TCP port for the servers under test; they use the next few. */
  readonly portBase: number;
  /** Seconds per measured HTTP run. */
  readonly httpSeconds: number;
  readonly rounds: number;
  readonly connections: readonly number[];
  /** Shortened everything: a smoke run of the harness, not a measurement. */
  readonly quick: boolean;
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): BenchSettings {
  const quick = env.BENCH_QUICK === '1';
  const number = (name: string, fallback: number) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number (got "${raw}")`);
    return value;
  };
  return {
    dataDir: path.resolve(ROOT_DIR, env.DATA_DIR ?? '.data/bench'),
    embeddedPort: number('EMBEDDED_PG_PORT', 54360),
    externalUrl: env.BENCH_DATABASE_URL === '' ? undefined : env.BENCH_DATABASE_URL,
    portBase: number('BENCH_PORT_BASE', 3201),
    httpSeconds: number('BENCH_HTTP_SECONDS', quick ? 1 : 5),
    rounds: number('BENCH_ROUNDS', quick ? 1 : 3),
    connections: (env.BENCH_CONNECTIONS ?? '1,8,32,128')
      .split(',')
      .map(Number)
      .filter((n) => n > 0),
    quick,
  };
}

export interface MachineInfo {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly node: string;
  readonly platform: string;
  readonly commit: string;
  /**
   * What was measured: `HEAD` (the commit, exported with git archive: other developers' uncommitted
   * edits cannot leak into the run) or `work tree` (a copy of the tree taken when the run started).
   */
  readonly source: string;
  /** Uncommitted changes under src/ when the run started (measured only with source `work tree`). */
  readonly srcDirty: boolean;
  readonly loadAverageAtStart: readonly number[];
  readonly startedAt: string;
}

export function machineInfo(): MachineInfo {
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: PROJECT_DIR, encoding: 'utf8' }).trim();
    } catch {
      return '';
    }
  };
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    commit: process.env.BENCH_COMMIT ?? (git('rev-parse', '--short=12', 'HEAD') || 'unknown'),
    source: process.env.BENCH_SOURCE_LABEL ?? 'work tree (live)',
    srcDirty:
      process.env.BENCH_SOURCE_DIRTY === undefined
        ? git('status', '--porcelain', '--', 'src') !== ''
        : process.env.BENCH_SOURCE_DIRTY === '1',
    loadAverageAtStart: os.loadavg().map((value) => Math.round(value * 100) / 100),
    startedAt: new Date().toISOString(),
  };
}

export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
