/**
 * The benchmark entry: `node bench/run.ts <all|http|login|report>` (npm run bench, bench:http,
 * bench:http, bench:login). Starts the embedded PostgreSQL under DATA_DIR (default .data/bench,
 * port EMBEDDED_PG_PORT 54360) or uses BENCH_DATABASE_URL's server, seeds a database of its own,
 * runs the parts, writes bench/results/, and stops every process it started.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  kneeOf,
  measure,
  runAblation,
  runAppScenarios,
  runFindByIdSweep,
  runHalfKneeRate,
  type HttpBenchOptions,
} from './http.ts';
import { NICE_10, runLoginBench } from './login.ts';
import {
  monotonicUs,
  newestProfile,
  summariseProfile,
  type ProfileSummary,
  type ProfileWindow,
} from './lib/cpu-profile.ts';
import {
  ADMIN_EMAIL,
  openBenchDatabase,
  SEED_PASSWORD,
  seed as seedDatabase,
  vacuum,
  type BenchDatabase,
  type Seed,
} from './lib/database.ts';
import {
  log,
  machineInfo,
  PROJECT_DIR,
  readSettings,
  ROOT_DIR,
  TMP_DIR,
  type BenchSettings,
  type MachineInfo,
} from './lib/environment.ts';
import { createSnapshot } from './lib/snapshot.ts';
import type { RequestSpec } from './lib/load.ts';
import { stopAllServers } from './lib/processes.ts';
import { checkTargets, writeReport } from './lib/report.ts';
import { readResults, writeResults, type PartMeta } from './lib/results.ts';
import { getUserById, loginRequests } from './lib/scenarios.ts';
import { login, ServerSet, startApp, startTargetSet } from './lib/servers.ts';
import { parseCheckouts, runCheckoutComparison, type Checkout } from './checkouts.ts';

const SEEDED_USERS = 10_000;
const PARTS = ['all', 'http', 'login', 'report'] as const;
type Part = (typeof PARTS)[number];

function meta(machine: MachineInfo, database: BenchDatabase, settings: BenchSettings): PartMeta {
  return {
    machine,
    database: { kind: database.kind, serverVersion: database.serverVersion },
    settings,
    finishedAt: new Date().toISOString(),
    loadAverageAtEnd: os.loadavg().map((value) => Math.round(value * 100) / 100),
  };
}

function profileDir(name: string): string {
  const dir = path.join(TMP_DIR, 'profiles', `${name}-${Date.now()}`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

interface ProfileLoad {
  readonly requests: readonly RequestSpec[];
  readonly connections: number;
  readonly seconds: number;
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * Runs a fresh app process with --cpu-prof under `load` (after a warm-up), stops it (the profile is
 * written on exit) and summarises the samples of the measured window only.
 */
async function profileApp(
  name: string,
  settings: BenchSettings,
  databaseUrl: string,
  load: ProfileLoad,
): Promise<ProfileSummary | undefined> {
  const dir = profileDir(name);
  const app = await startApp(`${name}-profiled`, {
    port: settings.portBase + 5,
    databaseUrl,
    settings,
    cpuProfileDir: dir,
  });
  let window: ProfileWindow;
  try {
    const base = {
      server: app,
      connections: load.connections,
      requests: load.requests,
      scrape: false,
      ...(load.headers === undefined ? {} : { headers: load.headers }),
    };
    await measure({ ...base, seconds: 2, warmupSeconds: 0 });
    const fromUs = monotonicUs();
    await measure({ ...base, seconds: load.seconds, warmupSeconds: 0 });
    window = { fromUs, toUs: monotonicUs() };
  } finally {
    await app.stop();
  }
  const file = newestProfile(dir);
  if (file === undefined) {
    log(`profile ${name}: no .cpuprofile written in ${dir}`);
    return undefined;
  }
  const summary = summariseProfile(file, window);
  log(
    `profile ${name}: ${path.relative(PROJECT_DIR, file)} (${summary.windowed ? 'measured window' : 'WHOLE PROCESS: clocks disagree'})`,
  );
  return summary;
}

async function runHttpPart(options: HttpBenchOptions, database: BenchDatabase): Promise<void> {
  const { settings, servers } = options;
  const machine = machineInfo();
  log(
    `http: GET /users/:id on ${servers.size} targets × c=${settings.connections.join(',')} × ${settings.rounds} rounds`,
  );
  const findById = await runFindByIdSweep(options);
  const knee = kneeOf(findById.filter((p) => p.target === 'app' && p.scenario === 'GET /users/:id'));
  log(`http: knee of the full app at c=${knee ?? '?'}`);
  const kneePoint = findById.find(
    (p) => p.target === 'app' && p.scenario === 'GET /users/:id' && p.connections === knee,
  );
  const halfKnee =
    knee === undefined || kneePoint === undefined
      ? undefined
      : await runHalfKneeRate(options, knee, kneePoint.summary.okPerSecond);
  const scenarios = await runAppScenarios(options);
  await vacuum(database.url);
  const all = readResults();
  all.http = {
    ...meta(machine, database, settings),
    findById,
    scenarios,
    knee,
    ...(halfKnee === undefined ? {} : { halfKnee }),
    incidents: servers.incidents,
  };
  writeResults(all);
  writeReport(all);
  if (knee === undefined) return;

  log(`http: ablation at c=${knee}`);
  const quiet = await servers.add('app-quiet', () =>
    startApp('app-quiet', { port: settings.portBase + 6, databaseUrl: database.url, settings, logLevel: 'warn' }),
  );
  const uncached = await servers.add('app-nocache', () =>
    startApp('app-nocache', {
      port: settings.portBase + 7,
      databaseUrl: database.url,
      settings,
      principalCacheSeconds: 0,
    }),
  );
  // Fresh processes: bring their JIT and pool to the state the long-running app is in.
  for (const server of [quiet, uncached]) {
    await measure({
      server,
      connections: knee,
      seconds: 3,
      requests: getUserById(options.seed),
      headers: { authorization: `Bearer ${options.accessToken}` },
      scrape: false,
      warmupSeconds: 0,
    });
  }
  all.http = { ...all.http, ablation: await runAblation(options, knee), incidents: servers.incidents };
  await (await servers.get('app-quiet'))?.stop();
  await (await servers.get('app-nocache'))?.stop();
  writeResults(all);
  writeReport(all);

  log(`http: profiling the app under GET /users/:id at c=${knee}`);
  const profile = await profileApp('http', settings, database.url, {
    requests: getUserById(options.seed),
    connections: knee,
    seconds: settings.quick ? 2 : 8,
    headers: { authorization: `Bearer ${options.accessToken}` },
  });
  if (profile !== undefined) {
    all.http = { ...all.http, profile };
    writeResults(all);
    writeReport(all);
  }
}

async function runLoginPart(
  settings: BenchSettings,
  database: BenchDatabase,
  seed: Seed,
  servers: ServerSet,
): Promise<void> {
  const machine = machineInfo();
  log('login: sweep with /health/live probe (and the app with HASH_THREAD_NICE=10 beside it)');
  await servers.add(NICE_10, () =>
    startApp(NICE_10, { port: settings.portBase + 8, databaseUrl: database.url, settings, hashThreadNice: 10 }),
  );
  const result = await runLoginBench({ settings, servers, seed, clusterDir: database.clusterDir });
  const all = readResults();
  all.login = { ...meta(machine, database, settings), login: result };
  if (checkTargets({ login: all.login }).some((check) => check.met === false)) {
    log('login: a target is missed; profiling the app during login saturation');
    const profile = await profileApp('login', settings, database.url, {
      requests: loginRequests(seed),
      connections: 32,
      seconds: settings.quick ? 2 : 6,
    });
    if (profile !== undefined) all.login = { ...all.login, profile };
  }
  writeResults(all);
  writeReport(all);
}

/**
 * Runs this same command again from a snapshot of the code (see snapshot.ts), forwarding Ctrl-C,
 * and removes the snapshot afterwards.
 */
async function runFromSnapshot(part: Part, settings: BenchSettings): Promise<number> {
  const source = process.env.BENCH_SOURCE === 'head' ? 'head' : 'worktree';
  const snapshot = createSnapshot(source);
  log(`measuring ${snapshot.label} (commit ${snapshot.commit}) from ${snapshot.dir}`);
  try {
    return await new Promise<number>((resolve, reject) => {
      // Checkouts named on the command line: absolute, and this tree itself measured from the snapshot.
      const checkouts = parseCheckouts(process.argv.slice(3)).map(
        (c) => `${c.name}=${c.dir === ROOT_DIR ? snapshot.dir : c.dir}=${c.given}`,
      );
      const child = spawn(process.execPath, [path.join(snapshot.dir, 'bench/run.ts'), part, ...checkouts], {
        cwd: snapshot.dir,
        env: {
          ...process.env,
          BENCH_SNAPSHOT_OF: ROOT_DIR,
          BENCH_COMMIT: snapshot.commit,
          BENCH_SOURCE_LABEL: snapshot.label,
          BENCH_SOURCE_DIRTY: snapshot.srcDirty ? '1' : '0',
          DATA_DIR: settings.dataDir,
          BENCH_COMMAND: commandLine(part),
        },
        stdio: 'inherit',
      });
      const forward = (signal: NodeJS.Signals) => child.kill(signal);
      process.on('SIGINT', forward);
      process.on('SIGTERM', forward);
      child.once('error', reject);
      child.once('exit', (code, signal) => {
        process.off('SIGINT', forward);
        process.off('SIGTERM', forward);
        resolve(code ?? (signal === null ? 1 : 130));
      });
    });
  } finally {
    fs.rmSync(snapshot.dir, { recursive: true, force: true });
  }
}

/** The command as typed, with the BENCH_* settings it ran with, for the results. */
function commandLine(part: Part): string {
  const env = Object.entries(process.env)
    .filter(([key]) => /^BENCH_(CONNECTIONS|ROUNDS|HTTP_SECONDS|QUICK|DATABASE_URL)$/.test(key))
    .map(([key, value]) => `${key}=${value ?? ''} `)
    .join('');
  const args = process.argv.slice(3);
  return `${env}npm run bench:${part}${args.length === 0 ? '' : ` -- ${args.join(' ')}`}`;
}

/** `name=dir=given` as forwarded by the snapshot's parent. */
function forwardedCheckouts(args: readonly string[]): Checkout[] {
  return args.map((arg) => {
    const [name = '', dir = '', given = dir] = arg.split('=');
    return { name, dir, given };
  });
}

async function main(): Promise<void> {
  const part = (process.argv[2] ?? 'all') as Part;
  if (!PARTS.includes(part)) throw new Error(`usage: node bench/run.ts <${PARTS.join('|')}>`);
  const settings = readSettings();
  if (part !== 'report' && process.env.BENCH_SNAPSHOT_OF === undefined) {
    process.exitCode = await runFromSnapshot(part, settings);
    return;
  }
  if (part === 'report') {
    writeReport(readResults());
    return;
  }

  const started = Date.now();
  const database = await openBenchDatabase(settings);
  const cleanup = async () => {
    await stopAllServers();
    await database.close();
  };
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    // Ctrl-C reaches this process twice (from the terminal and forwarded by the snapshot's parent).
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping every process started here`);
    void cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    log(`database: ${database.serverVersion} (${database.kind}); seeding ${SEEDED_USERS} users`);
    const seed = await seedDatabase(database.url, settings.quick ? 2000 : SEEDED_USERS);
    const checkouts = forwardedCheckouts(process.argv.slice(3));
    if (part === 'http' && checkouts.length > 0) {
      await runCheckoutComparison({
        settings,
        servers: new ServerSet(),
        seed,
        databaseUrl: database.url,
        clusterDir: database.clusterDir,
        checkouts,
        command: process.env.BENCH_COMMAND ?? commandLine(part),
      });
    } else {
      let servers: ServerSet;
      if (part === 'login') {
        servers = new ServerSet();
        await servers.add('app', () =>
          startApp('app', { port: settings.portBase, databaseUrl: database.url, settings }),
        );
      } else {
        servers = await startTargetSet(settings, database.url);
      }
      const app = await servers.get('app');
      if (app === undefined) throw new Error('the app did not start');
      const session = await login(app.baseUrl, ADMIN_EMAIL, SEED_PASSWORD);
      if (part === 'all' || part === 'http') {
        await runHttpPart(
          {
            settings,
            servers,
            seed,
            databaseUrl: database.url,
            accessToken: session.accessToken,
            clusterDir: database.clusterDir,
          },
          database,
        );
      }
      if (part !== 'http') await runLoginPart(settings, database, seed, servers);
    }
  } finally {
    await cleanup();
  }
  log(`done in ${Math.round((Date.now() - started) / 1000)} s; results in bench/results/`);
}

await main();
