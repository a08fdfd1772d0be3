/**
 * `npm run bench:tokens [-- --base <commit>] [-- --rounds N]`: what verifying an asymmetric access
 * token costs a request. GET /auth/me (the cheapest authenticated route: token verification, the
 * principal and session caches, the user as JSON) is loaded in turn, round after round, on four
 * servers on the same embedded PostgreSQL: the base commit (HS256, before asymmetric keys
 * existed), this tree with JWT_ALGORITHM=HS256, this tree with the default EdDSA, and the same
 * without the verified-token cache (every request checks the signature). Ratios are
 * taken per round (the machine is shared and noisy) and their median reported, in
 * bench/results/tokens.md.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/platform/db/embedded.ts';
import { withDatabaseName } from '../src/platform/db/database-admin.ts';
import { log, machineInfo, readSettings, RESULTS_DIR, ROOT_DIR } from './lib/environment.ts';
import { runLoad, type LoadResult } from './lib/load.ts';
import { startServerProcess, type ServerProcess } from '../test/helpers/server-process.ts';

const { values } = parseArgs({
  options: {
    base: { type: 'string', default: '8a1ed23' },
    rounds: { type: 'string', default: '6' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '16' },
  },
});
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONNECTIONS = Number(values.connections);

interface Target {
  readonly name: string;
  readonly dir: string;
  readonly env: Record<string, string>;
  server?: ServerProcess;
  token?: string;
}

/** The base commit's server code, beside this tree's node_modules. */
function checkout(commit: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfb-bench-tokens-'));
  const archive = execFileSync('git', ['archive', commit, 'src', 'db-types', 'migrations', 'package.json'], {
    cwd: ROOT_DIR,
    maxBuffer: 256 * 1024 * 1024,
  });
  execFileSync('tar', ['-x', '-C', dir], { input: archive });
  fs.symlinkSync(path.join(ROOT_DIR, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

async function signIn(target: Target, email: string): Promise<string> {
  const base = target.server?.baseUrl ?? '';
  const body = JSON.stringify({ email, password: 'bench password 123', name: 'Bench' });
  const headers = { 'content-type': 'application/json' };
  await fetch(`${base}/auth/register`, { method: 'POST', headers, body });
  const response = await fetch(`${base}/auth/login`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ email, password: 'bench password 123' }),
  });
  if (!response.ok) throw new Error(`${target.name}: login answered ${response.status} ${await response.text()}`);
  return ((await response.json()) as { accessToken: string }).accessToken;
}

async function recreateDatabase(serverUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: withDatabaseName(serverUrl, 'postgres') });
  await client.connect();
  try {
    await client.query(`drop database if exists ${name} with (force)`);
    await client.query(`create database ${name}`);
  } finally {
    await client.end();
  }
}

const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
};

async function main(): Promise<void> {
  const settings = readSettings();
  const embedded = await startEmbeddedPostgres({ dataDir: settings.dataDir, port: settings.embeddedPort, log });
  const baseDir = checkout(values.base);
  const common = {
    NODE_ENV: 'production',
    EMAIL_TRANSPORT: 'log',
    METRICS_PUBLIC: 'true',
    APP_URL: 'http://localhost:3000',
    LOG_LEVEL: 'info',
    MIGRATE_ON_START: 'true',
    DATA_DIR: settings.dataDir,
    JWT_SECRET: randomBytes(48).toString('base64url'),
    ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    ACCESS_TOKEN_TTL_SECONDS: '7200',
    RATE_LIMIT_LOGIN: '1000000',
    RATE_LIMIT_REGISTER: '1000000',
  };
  const targets: Target[] = [
    { name: `base ${values.base} (HS256)`, dir: baseDir, env: { JWT_ALGORITHM: 'HS256' } },
    { name: 'this tree, JWT_ALGORITHM=HS256', dir: ROOT_DIR, env: { JWT_ALGORITHM: 'HS256' } },
    { name: 'this tree, EdDSA (default)', dir: ROOT_DIR, env: {} },
    { name: 'this tree, EdDSA, no verified-token cache', dir: ROOT_DIR, env: { VERIFIED_TOKEN_CACHE_ENTRIES: '0' } },
  ];
  const results = new Map<string, LoadResult[]>(targets.map((target) => [target.name, []]));
  try {
    for (const [index, target] of targets.entries()) {
      // A database of its own, new each run: its signing keys were sealed under last run's key.
      const database = `pgfb_tokens_${index}`;
      await recreateDatabase(embedded.url, database);
      target.server = await startServerProcess({
        script: path.join(target.dir, 'src/server.ts'),
        env: { ...common, ...target.env, DATABASE_URL: withDatabaseName(embedded.url, database) },
        port: [3211, 3240],
      });
      target.token = await signIn(target, `bench-${randomBytes(4).toString('hex')}@example.com`);
      log(`${target.name} on ${target.server.baseUrl}: ${target.token.split('.')[0] ?? ''}`);
    }
    for (let round = 0; round <= ROUNDS; round++) {
      for (const target of targets) {
        const result = await runLoad({
          url: `${target.server?.baseUrl ?? ''}/auth/me`,
          connections: CONNECTIONS,
          seconds: round === 0 ? 2 : SECONDS,
          requests: [{ method: 'GET', headers: { authorization: `Bearer ${target.token ?? ''}` } }],
        });
        if (result.non2xx > 0 || result.errors > 0)
          throw new Error(`${target.name}: ${JSON.stringify(result.statusCounts)}`);
        // Round 0 warms every server up and is not counted.
        if (round > 0) results.get(target.name)?.push(result);
        log(`round ${round} ${target.name}: ${Math.round(result.okPerSecond)} req/s, p50 ${result.p50} ms`);
      }
    }
  } finally {
    for (const target of targets) await target.server?.stop();
    await embedded.stop();
    fs.rmSync(baseDir, { recursive: true, force: true });
  }
  writeReport(targets, results);
}

function writeReport(targets: readonly Target[], results: ReadonlyMap<string, LoadResult[]>): void {
  const [base] = targets;
  const baseRuns = results.get(base?.name ?? '') ?? [];
  const machine = machineInfo();
  const head = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: ROOT_DIR, encoding: 'utf8' }).trim();
  const hs256Runs = results.get(targets[1]?.name ?? '') ?? [];
  const ratio = (runs: readonly LoadResult[], against: readonly LoadResult[]) => {
    const ratios = runs.map((run, round) => run.okPerSecond / (against[round]?.okPerSecond ?? Number.NaN));
    return `${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`;
  };
  const rows = targets.map((target) => {
    const runs = results.get(target.name) ?? [];
    const p50 = median(runs.map((run) => run.p50)).toFixed(2);
    const p99 = median(runs.map((run) => run.p99)).toFixed(2);
    return `| ${target.name} | ${Math.round(median(runs.map((run) => run.okPerSecond)))} | ${p50} | ${p99} | ${ratio(runs, baseRuns)} | ${ratio(runs, hs256Runs)} |`;
  });

  const report = `# Access-token verification: GET /auth/me, HS256 against EdDSA

Command: \`npm run bench:tokens -- --base ${values.base} --rounds ${ROUNDS}\` (${SECONDS} s per server per round,
${CONNECTIONS} connections, the servers loaded in turn, round after round, after a 2 s warm-up round).
Run at ${new Date().toISOString()} on ${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}, tree at ${head}.
Every server: production settings, info-level request log, principal and session caches on, on
the same embedded PostgreSQL (a database each).

| server | req/s (median) | p50 ms | p99 ms | ÷ base, per round: median (min–max) | ÷ this tree HS256, per round |
|---|---|---|---|---|---|
${rows.join('\n')}
`;
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  fs.writeFileSync(path.join(RESULTS_DIR, 'tokens.md'), report);
  process.stdout.write(report);
}

await main();
