/**
 * Login against the argon2 ceiling: a login costs one argon2id verification, and the machine can
 * do at most (cores ÷ single-verification time) of those per second. /health/live is probed at a
 * steady 50 req/s on its own connection during every login run: its p99 shows whether the event
 * loop stays responsive while the hash threads are saturated.
 */
import os from 'node:os';
import argon2 from 'argon2';
import { SEED_PASSWORD, type Seed } from './lib/database.ts';
import { log, type BenchSettings } from './lib/environment.ts';
import { runLoad, type LoadResult } from './lib/load.ts';
import { loginRequests } from './lib/scenarios.ts';
import { median, quantile, round, sleep } from './lib/stats.ts';
import { measureOn, summarise, type HttpPoint } from './http.ts';
import type { ServerSet } from './lib/servers.ts';

export interface Argon2Ceiling {
  readonly cores: number;
  /** Median wall time of one argon2id verification (OWASP parameters), nothing else running. */
  readonly singleVerifyMs: number;
  readonly singleVerifyP90Ms: number;
  /** cores ÷ single verification time. */
  readonly ceilingPerSecond: number;
  readonly samples: number;
}

export async function measureArgon2Ceiling(passwordHash: string, count = 30): Promise<Argon2Ceiling> {
  for (let i = 0; i < 3; i++) await argon2.verify(passwordHash, SEED_PASSWORD);
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const ok = await argon2.verify(passwordHash, SEED_PASSWORD);
    times.push(performance.now() - started);
    if (!ok) throw new Error('the seeded hash does not verify');
  }
  const cores = os.availableParallelism();
  const singleVerifyMs = median(times);
  return {
    cores,
    singleVerifyMs: round(singleVerifyMs, 2),
    singleVerifyP90Ms: round(quantile(times, 0.9), 2),
    ceilingPerSecond: round((cores * 1000) / singleVerifyMs, 1),
    samples: count,
  };
}

/**
 * argon2id verifications per second with `parallel` of them in flight (the app's HASH_CONCURRENCY),
 * in the harness process, right before a login run: the ceiling the machine actually offers at that
 * moment, with the other developers' load it has then.
 */
export async function measureArgon2Parallel(passwordHash: string, parallel: number, seconds: number): Promise<number> {
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  let done = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (performance.now() < deadline) {
        await argon2.verify(passwordHash, SEED_PASSWORD);
        done++;
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}

const APP = 'app';
/**
 * The ablation of HASH_THREAD_NICE: the app with its hashing threads below the event loop (nice
 * 10; the default is 0), measured right after the app at each level when the run started it.
 */
export const NICE_10 = 'app-nice10';

export interface LoginPoint extends HttpPoint {
  readonly probe: LoadResult;
  /** {@link measureArgon2Parallel} just before this run, HASH_CONCURRENCY (2) in flight. */
  readonly argon2PerSecondNow: number;
}

export interface LoginBenchResult {
  readonly ceiling: Argon2Ceiling;
  readonly points: readonly LoginPoint[];
  /** Best 2xx logins/s over the sweep, and its share of the ceiling. */
  readonly best: {
    readonly connections: number;
    readonly okPerSecond: number;
    readonly ofCeiling: number;
    /** Of the argon2 throughput measured in the harness just before that run (same machine load). */
    readonly ofMeasuredNow: number;
  };
  /** Worst /health/live p99 over the levels that did not shed load with 503s beyond the queue. */
  readonly worstProbeP99Ms: number;
  /** Worst interval p99 of the app's own event-loop delay histogram over the sweep. */
  readonly worstEventLoopLagP99Ms: number;
}

export async function runLoginBench(options: {
  settings: BenchSettings;
  servers: ServerSet;
  seed: Seed;
  clusterDir: string | undefined;
}): Promise<LoginBenchResult> {
  const { settings, servers, seed } = options;
  const ceiling = await measureArgon2Ceiling(seed.passwordHash, settings.quick ? 5 : 30);
  log(
    `login: argon2id verify ${ceiling.singleVerifyMs} ms on its own, ceiling ${ceiling.ceilingPerSecond}/s on ${ceiling.cores} cores`,
  );
  const seconds = Math.max(settings.httpSeconds, settings.quick ? 1 : 6);
  const points: LoginPoint[] = [];
  for (const connections of settings.connections) {
    for (const target of [APP, ...(servers.has(NICE_10) ? [NICE_10] : [])]) {
      const argon2PerSecondNow = await measureArgon2Parallel(seed.passwordHash, 2, settings.quick ? 0.5 : 2);
      const app = await servers.get(target);
      if (app === undefined) throw new Error(`the ${target} server is not running`);
      const probePromise = (async () => {
        // Starts after the warm-up second, so both measure the same saturated interval.
        await sleep(1000);
        return runLoad({
          url: app.baseUrl,
          connections: 1,
          seconds,
          overallRate: 50,
          requests: [{ method: 'GET', path: '/health/live' }],
        });
      })();
      const sample = await measureOn(servers, target, {
        connections,
        seconds,
        requests: loginRequests(seed),
        scrape: true,
        warmupSeconds: 1,
        clusterDir: options.clusterDir,
      });
      const probe = await probePromise;
      if (sample === undefined) throw new Error(`the ${target} server is not running`);
      log(
        `login ${target} c=${connections}: ${Math.round(sample.load.okPerSecond)} ok/s (${((sample.load.okPerSecond / ceiling.ceilingPerSecond) * 100).toFixed(0)}% of ceiling, ` +
          `${((sample.load.okPerSecond / argon2PerSecondNow) * 100).toFixed(0)}% of ${argon2PerSecondNow.toFixed(1)}/s measured just before), ` +
          `p95 ${sample.load.p95.toFixed(0)} ms, non2xx ${sample.load.non2xx}; /health/live p99 ${probe.p99.toFixed(1)} ms`,
      );
      points.push({
        scenario: 'POST /auth/login',
        target,
        connections,
        samples: [sample],
        summary: summarise([sample]),
        probe,
        argon2PerSecondNow,
      });
    }
  }
  const appPoints = points.filter((point) => point.target === APP);
  const bestPoint = appPoints.reduce<LoginPoint | undefined>(
    (best, point) => (best === undefined || point.summary.okPerSecond > best.summary.okPerSecond ? point : best),
    undefined,
  );
  return {
    ceiling,
    points,
    best: {
      connections: bestPoint?.connections ?? 0,
      okPerSecond: round(bestPoint?.summary.okPerSecond ?? 0, 1),
      ofCeiling: round((bestPoint?.summary.okPerSecond ?? 0) / ceiling.ceilingPerSecond, 3),
      ofMeasuredNow: round((bestPoint?.summary.okPerSecond ?? 0) / (bestPoint?.argon2PerSecondNow ?? Number.NaN), 3),
    },
    worstProbeP99Ms: round(Math.max(...appPoints.map((point) => point.probe.p99)), 2),
    worstEventLoopLagP99Ms: round(Math.max(...appPoints.map((point) => point.summary.eventLoopLagP99Ms ?? 0)), 2),
  };
}
