/**
 * HTTP benchmark: autocannon against real ports on 127.0.0.1.
 *
 * GET /users/:id on five contenders (the full app with prepared statements on and off, our data
 * layer behind a bare route, raw pg, Drizzle), interleaved per round and concurrency level; then
 * the app's other scenarios (list page, register, refresh, mixed) swept over the same levels.
 */
import { CpuMeter, postgresProcesses } from './lib/cpu.ts';
import { log, type BenchSettings } from './lib/environment.ts';
import type { Seed } from './lib/database.ts';
import { MetricsSampler, runLoad, type LoadResult, type RequestSpec, type ServerSideStats } from './lib/load.ts';
import type { ServerProcess } from './lib/processes.ts';
import {
  getUserById,
  getUsersPage,
  issueRefreshTokens,
  mixedRequests,
  RefreshTokenQueue,
  refreshRequests,
  registerRequests,
} from './lib/scenarios.ts';
import { TARGETS, type ServerSet } from './lib/servers.ts';
import { median, sleep } from './lib/stats.ts';

/** CPU time per completed request, in microseconds, by process (from /proc and process.cpuUsage). */
export interface CpuPerRequest {
  readonly serverUs: number;
  readonly postgresUs: number;
  /** The harness: autocannon generating the load, plus the /metrics scrapes. */
  readonly harnessUs: number;
}

export interface RunSample {
  readonly load: LoadResult;
  readonly server?: ServerSideStats;
  readonly cpu?: CpuPerRequest;
}

/** Median over rounds of each figure (each figure's own median, so one noisy round cannot pick them all). */
export interface PointSummary {
  readonly okPerSecond: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly non2xxPerRun: number;
  readonly errorsPerRun: number;
  readonly queryP95Ms?: number;
  readonly queryP50Ms?: number;
  readonly queriesPerRequest?: number;
  readonly poolUtilisationMean?: number;
  readonly poolUtilisationMax?: number;
  readonly poolWaitingMean?: number;
  readonly poolWaitingMax?: number;
  readonly eventLoopLagP99Ms?: number;
  readonly serverCpuUsPerRequest?: number;
  readonly postgresCpuUsPerRequest?: number;
  readonly harnessCpuUsPerRequest?: number;
}

export interface HttpPoint {
  readonly scenario: string;
  readonly target: string;
  readonly connections: number;
  readonly samples: readonly RunSample[];
  readonly summary: PointSummary;
}

export function summarise(samples: readonly RunSample[]): PointSummary {
  const of = (pick: (sample: RunSample) => number | undefined) => {
    const values = samples.map(pick).filter((value): value is number => value !== undefined && Number.isFinite(value));
    return values.length === 0 ? undefined : median(values);
  };
  const optional = (key: string, value: number | undefined) => (value === undefined ? {} : { [key]: value });
  return {
    okPerSecond: of((s) => s.load.okPerSecond) ?? 0,
    p50: of((s) => s.load.p50) ?? Number.NaN,
    p95: of((s) => s.load.p95) ?? Number.NaN,
    p99: of((s) => s.load.p99) ?? Number.NaN,
    non2xxPerRun: of((s) => s.load.non2xx) ?? 0,
    errorsPerRun: of((s) => s.load.errors) ?? 0,
    ...optional(
      'queryP95Ms',
      of((s) => s.server?.queryP95Ms),
    ),
    ...optional(
      'queryP50Ms',
      of((s) => s.server?.queryP50Ms),
    ),
    ...optional(
      'queriesPerRequest',
      of((s) => (s.server === undefined || s.load.total === 0 ? undefined : s.server.queries / s.load.total)),
    ),
    ...optional(
      'poolUtilisationMean',
      of((s) => s.server?.poolUtilisationMean),
    ),
    ...optional(
      'poolUtilisationMax',
      of((s) => s.server?.poolUtilisationMax),
    ),
    ...optional(
      'poolWaitingMean',
      of((s) => s.server?.poolWaitingMean),
    ),
    ...optional(
      'poolWaitingMax',
      of((s) => s.server?.poolWaitingMax),
    ),
    ...optional(
      'eventLoopLagP99Ms',
      of((s) => s.server?.eventLoopLagP99Ms),
    ),
    ...optional(
      'serverCpuUsPerRequest',
      of((s) => s.cpu?.serverUs),
    ),
    ...optional(
      'postgresCpuUsPerRequest',
      of((s) => s.cpu?.postgresUs),
    ),
    ...optional(
      'harnessCpuUsPerRequest',
      of((s) => s.cpu?.harnessUs),
    ),
  };
}

export interface MeasureOptions {
  readonly server: ServerProcess;
  readonly connections: number;
  readonly seconds: number;
  readonly requests: readonly RequestSpec[];
  readonly headers?: Readonly<Record<string, string>>;
  /** Scrape the app's /metrics during the run (only our app has one). */
  readonly scrape: boolean;
  readonly warmupSeconds?: number;
  /** The embedded cluster's directory: its processes' CPU is metered (undefined: an external server's backends, see cpu.ts). */
  readonly clusterDir?: string | undefined;
  /** A fixed total request rate (req/s) instead of as fast as the connections go. */
  readonly overallRate?: number;
}

/** A short unmeasured warm-up at the same concurrency, then one measured run. */
export async function measure(options: MeasureOptions): Promise<RunSample> {
  const base = {
    url: options.server.baseUrl,
    connections: options.connections,
    requests: options.requests,
    ...(options.headers === undefined ? {} : { headers: options.headers }),
    ...(options.overallRate === undefined ? {} : { overallRate: options.overallRate }),
  };
  if ((options.warmupSeconds ?? 1) > 0) await runLoad({ ...base, seconds: options.warmupSeconds ?? 1 });
  const sampler = options.scrape ? new MetricsSampler(options.server.baseUrl) : undefined;
  await sampler?.start();
  const serverCpu = new CpuMeter(() => [options.server.pid]);
  const postgresPids = await postgresProcesses(options.clusterDir);
  const postgresCpu = new CpuMeter(() => postgresPids);
  serverCpu.start();
  postgresCpu.start();
  const harnessBefore = process.cpuUsage();
  const load = await runLoad({ ...base, seconds: options.seconds });
  const harness = process.cpuUsage(harnessBefore);
  const serverMs = serverCpu.stop();
  const postgresMs = postgresCpu.stop();
  const server = await sampler?.stop();
  await sleep(300);
  const perRequest = (ms: number) => (load.total === 0 ? Number.NaN : (ms * 1000) / load.total);
  const cpu: CpuPerRequest = {
    serverUs: perRequest(serverMs),
    postgresUs: perRequest(postgresMs),
    harnessUs: perRequest((harness.user + harness.system) / 1000),
  };
  return server === undefined ? { load, cpu } : { load, server, cpu };
}

/**
 * {@link measure} on a named server of the set; when the server died (before or during the run),
 * it is restarted and the measurement repeated once.
 */
export async function measureOn(
  servers: ServerSet,
  name: string,
  options: Omit<MeasureOptions, 'server'>,
): Promise<RunSample | undefined> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const server = await servers.get(name);
    if (server === undefined) return undefined;
    try {
      const sample = await measure({ ...options, server });
      if (server.alive) return sample;
    } catch (error) {
      if (server.alive) throw error;
    }
    log(`${name} died during a run; restarting it and repeating the run`);
  }
  throw new Error(`${name} died twice in a row`);
}

function describe(target: string, sample: RunSample): string {
  const { load, server } = sample;
  const db =
    server === undefined
      ? ''
      : ` db p95 ${server.queryP95Ms.toFixed(1)}ms pool ${(server.poolUtilisationMean * 100).toFixed(0)}% wait ${server.poolWaitingMean.toFixed(1)}`;
  const cpu =
    sample.cpu === undefined
      ? ''
      : ` cpu/req server ${Math.round(sample.cpu.serverUs)}µs pg ${Math.round(sample.cpu.postgresUs)}µs`;
  return `${target.padEnd(15)} c=${String(load.connections).padEnd(3)} ${Math.round(load.okPerSecond)} ok/s p50 ${load.p50.toFixed(1)} p95 ${load.p95.toFixed(1)} p99 ${load.p99.toFixed(1)} ms non2xx ${load.non2xx}${db}${cpu}`;
}

export interface HttpBenchOptions {
  readonly settings: BenchSettings;
  readonly servers: ServerSet;
  readonly seed: Seed;
  readonly databaseUrl: string;
  readonly accessToken: string;
  readonly clusterDir: string | undefined;
}

/** GET /users/:id on every target, rounds interleaved, plus the no-database route of the raw server. */
export async function runFindByIdSweep(options: HttpBenchOptions): Promise<HttpPoint[]> {
  const { settings, servers, seed } = options;
  const headers = { authorization: `Bearer ${options.accessToken}` };
  const samples = new Map<string, RunSample[]>();
  const add = (key: string, sample: RunSample) => samples.set(key, [...(samples.get(key) ?? []), sample]);
  const targets = TARGETS.filter((target) => servers.has(target));
  for (let round = 0; round < settings.rounds; round++) {
    for (const connections of settings.connections) {
      const order = targets
        .map((_, i) => targets[(i + round + connections) % targets.length])
        .filter((t) => t !== undefined);
      for (const target of order) {
        const sample = await measureOn(servers, target, {
          connections,
          seconds: settings.httpSeconds,
          requests: getUserById(seed),
          headers,
          scrape: target === 'app' || target === 'app-unprepared',
          warmupSeconds: round === 0 ? 1 : 0.5,
          clusterDir: options.clusterDir,
        });
        if (sample === undefined) continue;
        add(`${target}|${connections}`, sample);
        log(`http findById round ${round + 1}: ${describe(target, sample)}`);
      }
    }
  }
  // The framework's ceiling on this machine: a constant answer, no database.
  if (servers.has('raw')) {
    for (const connections of settings.connections) {
      const sample = await measureOn(servers, 'raw', {
        connections,
        seconds: settings.httpSeconds,
        requests: [{ method: 'GET', path: '/const' }],
        scrape: false,
        clusterDir: options.clusterDir,
      });
      if (sample === undefined) continue;
      add(`const|${connections}`, sample);
      log(`http const: ${describe('const', sample)}`);
    }
  }
  return [...samples.entries()].map(([key, runs]) => {
    const [target = '', connections = '0'] = key.split('|');
    return {
      scenario: target === 'const' ? 'GET /const (no database)' : 'GET /users/:id',
      target: target === 'const' ? 'raw' : target,
      connections: Number(connections),
      samples: runs,
      summary: summarise(runs),
    };
  });
}

/** The app's other scenarios, one run per concurrency level each. */
export async function runAppScenarios(options: HttpBenchOptions): Promise<HttpPoint[]> {
  const { settings, servers, seed } = options;
  const headers = { authorization: `Bearer ${options.accessToken}` };
  const maxConnections = Math.max(...settings.connections);
  const points: HttpPoint[] = [];
  const scenarios: { name: string; requests: () => Promise<RequestSpec[]>; warmup: number }[] = [
    { name: 'GET /users?limit=20', requests: async () => getUsersPage(), warmup: 1 },
    { name: 'POST /auth/register', requests: async () => registerRequests(), warmup: 1 },
    {
      name: 'POST /auth/refresh',
      requests: async () =>
        refreshRequests(new RefreshTokenQueue(await issueRefreshTokens(options.databaseUrl, seed, maxConnections * 4))),
      warmup: 1,
    },
    {
      name: 'mixed',
      requests: async () =>
        mixedRequests(
          seed,
          new RefreshTokenQueue(await issueRefreshTokens(options.databaseUrl, seed, maxConnections * 4)),
        ),
      warmup: 1,
    },
  ];
  for (const scenario of scenarios) {
    for (const connections of settings.connections) {
      const sample = await measureOn(servers, 'app', {
        connections,
        seconds: settings.httpSeconds,
        requests: await scenario.requests(),
        headers,
        scrape: true,
        warmupSeconds: scenario.warmup,
        clusterDir: options.clusterDir,
      });
      if (sample === undefined) throw new Error('the app server is not running');
      log(`http ${scenario.name}: ${describe('app', sample)}`);
      points.push({
        scenario: scenario.name,
        target: 'app',
        connections,
        samples: [sample],
        summary: summarise([sample]),
      });
    }
  }
  return points;
}

/**
 * The knee: the lowest concurrency whose throughput is within 10% of the best level's. Past it,
 * more connections add latency, not throughput.
 */
export function kneeOf(points: readonly HttpPoint[]): number | undefined {
  if (points.length === 0) return undefined;
  const best = Math.max(...points.map((point) => point.summary.okPerSecond));
  return [...points]
    .sort((a, b) => a.connections - b.connections)
    .find((point) => point.summary.okPerSecond >= 0.9 * best)?.connections;
}

/** What one ablation run sends where. */
interface AblationCase {
  readonly name: string;
  readonly target: string;
  /** The server's name in the set. */
  readonly server: string;
  readonly requests: readonly RequestSpec[];
  readonly scrape: boolean;
}

/**
 * Where the full app's time goes, at the knee: the same GET /users/:id with the request log
 * off (LOG_LEVEL=warn) and with the principal cache off, the app's plugin stack without the database (/health/live), and the
 * bare routes, rounds interleaved. CPU per request (µs) is what the decomposition reads.
 */
export async function runAblation(options: HttpBenchOptions, connections: number): Promise<HttpPoint[]> {
  const { settings, servers, seed } = options;
  const headers = { authorization: `Bearer ${options.accessToken}` };
  const cases: AblationCase[] = [
    { name: 'app GET /users/:id', target: 'app', server: 'app', requests: getUserById(seed), scrape: true },
    {
      name: 'app, LOG_LEVEL=warn, GET /users/:id',
      target: 'app-quiet',
      server: 'app-quiet',
      requests: getUserById(seed),
      scrape: true,
    },
    {
      name: 'app, PRINCIPAL_CACHE_SECONDS=0, GET /users/:id',
      target: 'app-nocache',
      server: 'app-nocache',
      requests: getUserById(seed),
      scrape: true,
    },
    {
      name: 'app GET /health/live (no auth, no DB)',
      target: 'app',
      server: 'app',
      requests: [{ method: 'GET', path: '/health/live' }],
      scrape: true,
    },
    {
      name: 'ours, bare route GET /users/:id',
      target: 'ours-route',
      server: 'ours-route',
      requests: getUserById(seed),
      scrape: false,
    },
    { name: 'raw pg route GET /users/:id', target: 'raw', server: 'raw', requests: getUserById(seed), scrape: false },
    {
      name: 'bare Fastify GET /const (no DB)',
      target: 'raw',
      server: 'raw',
      requests: [{ method: 'GET', path: '/const' }],
      scrape: false,
    },
  ];
  const samples = new Map<string, RunSample[]>();
  const seconds = Math.max(1, settings.httpSeconds - 1);
  for (let round = 0; round < settings.rounds; round++) {
    const order = cases.map((_, i) => cases[(i + round) % cases.length]).filter((c) => c !== undefined);
    for (const item of order) {
      const sample = await measureOn(servers, item.server, {
        connections,
        seconds,
        requests: item.requests,
        headers,
        scrape: item.scrape,
        warmupSeconds: 0.5,
        clusterDir: options.clusterDir,
      });
      if (sample === undefined) continue;
      samples.set(item.name, [...(samples.get(item.name) ?? []), sample]);
      log(`http ablation round ${round + 1}: ${item.name}: ${describe(item.target, sample)}`);
    }
  }
  return cases.map((item) => {
    const runs = samples.get(item.name) ?? [];
    return { scenario: item.name, target: item.target, connections, samples: runs, summary: summarise(runs) };
  });
}

/** The scenario name of {@link runHalfKneeRate}'s point. */
export const HALF_KNEE_SCENARIO = "GET /users/:id at half the knee's throughput (fixed rate)";

/**
 * Pool utilisation where it says something: at the knee the pool is saturated by definition (97–99%
 * busy), so the app is also run at a fixed rate of half the knee's throughput (autocannon's
 * overallRate over the knee's connections), `rounds` times; the seed's "under 80%" is judged here.
 */
export async function runHalfKneeRate(
  options: HttpBenchOptions,
  knee: number,
  kneeOkPerSecond: number,
): Promise<HttpPoint> {
  const { settings, servers, seed } = options;
  const rate = Math.max(1, Math.round(kneeOkPerSecond / 2));
  const samples: RunSample[] = [];
  for (let round = 0; round < settings.rounds; round++) {
    const sample = await measureOn(servers, 'app', {
      connections: knee,
      seconds: settings.httpSeconds,
      requests: getUserById(seed),
      headers: { authorization: `Bearer ${options.accessToken}` },
      scrape: true,
      warmupSeconds: 0.5,
      clusterDir: options.clusterDir,
      overallRate: rate,
    });
    if (sample === undefined) throw new Error('the app server is not running');
    log(`http at ${rate} req/s (half the knee's ${Math.round(kneeOkPerSecond)}): ${describe('app', sample)}`);
    samples.push(sample);
  }
  return { scenario: HALF_KNEE_SCENARIO, target: 'app', connections: knee, samples, summary: summarise(samples) };
}
