/**
 * Hashing fairness under a login flood (issue 33, item 3): 8 attacking client addresses, each
 * with 16 logins of random unknown emails always in flight, while one legitimate caller from its
 * own address logs in to its own account with one attempt in flight at a time. The goal: every
 * legitimate login succeeds, p95 within 1 s on the 2-core machine.
 *
 * Several checkouts are measured side by side in one run, alternating, each as a real server
 * process (`node <checkout>/src/server.ts`, production mode, TRUST_PROXY=true so X-Forwarded-For
 * names the simulated addresses) on a database of its own in one embedded PostgreSQL:
 *
 * ```sh
 * git archive 8a1ed23 | (mkdir -p /tmp/pgfb-main && tar -x -C /tmp/pgfb-main) && ln -s "$PWD/node_modules" /tmp/pgfb-main/
 * node bench/login-fairness.ts main=/tmp/pgfb-main this=.
 * ```
 *
 * Three settings: no flood (what one login costs on the machine as loaded then), the default flood
 * cap (RATE_LIMIT_LOGIN=300 per address per minute), and the cap lifted (RATE_LIMIT_LOGIN=1000000),
 * which leaves the hashing queue alone to share the capacity.
 * Results: bench/results/login-fairness.md (BENCH_FAIRNESS_SECONDS per run, default 20;
 * BENCH_ROUNDS rounds, default 2; medians over rounds are not taken: every run is listed).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { ensureDatabaseExists, withDatabaseName } from '../src/platform/db/database-admin.ts';
import { startEmbeddedPostgres } from '../src/platform/db/embedded.ts';
import { migrateToLatest } from '../src/platform/db/migrator.ts';
import { log, ROOT_DIR } from './lib/environment.ts';
import { spawnServer, stopAllServers, type ServerProcess } from './lib/processes.ts';
import { quantile, round as roundTo, sleep } from './lib/stats.ts';

const ATTACKERS = 8;
const PER_ATTACKER = 16;
const SECONDS = Number(process.env.BENCH_FAIRNESS_SECONDS ?? 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const PORT = Number(process.env.BENCH_PORT_BASE ?? 3281);
const OWNER_ADDRESS = '10.1.1.1';
const PASSWORD = 'the owner knows this one';

const SETTINGS = [
  // What one login costs on the machine as loaded during the run: the floor of the others.
  { name: 'no flood (baseline)', env: {}, attackers: 0 },
  { name: 'default flood cap', env: {}, attackers: ATTACKERS },
  { name: 'flood cap lifted', env: { RATE_LIMIT_LOGIN: '1000000' }, attackers: ATTACKERS },
] as const;

interface Checkout {
  readonly name: string;
  readonly dir: string;
}

interface RunResult {
  readonly checkout: string;
  readonly setting: string;
  readonly round: number;
  readonly ownerAttempts: number;
  readonly ownerOk: number;
  readonly ownerStatuses: Record<string, number>;
  readonly ownerP50Ms: number;
  readonly ownerP95Ms: number;
  readonly ownerMaxMs: number;
  readonly attackerStatuses: Record<string, number>;
  readonly attackerPerSecond: number;
  /** p95 of GET /health/live during the run: the wait every request has, hashing aside. */
  readonly probeP95Ms: number;
}

function checkoutsFromArgs(): Checkout[] {
  const args = process.argv.slice(2);
  if (args.length === 0) return [{ name: 'this', dir: ROOT_DIR }];
  return args.map((arg) => {
    const [name = '', dir = ''] = arg.split('=');
    if (name === '' || dir === '') throw new Error(`expected name=directory, got "${arg}"`);
    return { name, dir: path.resolve(dir) };
  });
}

async function post(
  baseUrl: string,
  body: unknown,
  address: string,
): Promise<{ status: number; ms: number; json: unknown }> {
  const started = performance.now();
  try {
    const response = await fetch(`${baseUrl}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
      body: JSON.stringify(body),
    });
    const json: unknown = await response.json().catch(() => undefined);
    return { status: response.status, ms: performance.now() - started, json };
  } catch {
    return { status: 0, ms: performance.now() - started, json: undefined };
  }
}

function count(statuses: Record<string, number>, status: number): void {
  statuses[String(status)] = (statuses[String(status)] ?? 0) + 1;
}

async function runOnce(
  server: ServerProcess,
  checkout: string,
  setting: { readonly name: string; readonly attackers: number },
  round: number,
  ownerEmail: string,
): Promise<RunResult> {
  // The owner's device signed in before the flood (the contract's case): it holds a device token
  // where the server hands them out.
  const before = await post(server.baseUrl, { email: ownerEmail, password: PASSWORD }, OWNER_ADDRESS);
  if (before.status !== 200) throw new Error(`the owner's first login answered ${before.status}`);
  const first = (before.json as { deviceToken?: unknown } | undefined)?.deviceToken;
  let deviceToken = typeof first === 'string' ? first : undefined;
  const deadline = performance.now() + SECONDS * 1000;
  const attackerStatuses: Record<string, number> = {};
  let attackerRequests = 0;
  const attackers = Array.from({ length: setting.attackers * PER_ATTACKER }, async (_, i) => {
    const address = `10.99.${Math.floor(i / PER_ATTACKER)}.1`;
    while (performance.now() < deadline) {
      const email = `x-${randomBytes(6).toString('hex')}@example.com`;
      const { status } = await post(server.baseUrl, { email, password: 'a wrong guess' }, address);
      attackerRequests++;
      count(attackerStatuses, status);
      // A refused attempt costs the attacker nothing: it tries again at once (a 429 slows it a little).
      if (status === 429) await sleep(50);
    }
  });
  // /health/live 4 times a second: how long any request waits for the server (and this client)
  // during the flood, apart from hashing.
  const probeTimes: number[] = [];
  const probe = (async () => {
    await sleep(2000);
    while (performance.now() < deadline - 1000) {
      const started = performance.now();
      await fetch(`${server.baseUrl}/health/live`)
        .then((response) => response.arrayBuffer())
        .catch(() => undefined);
      probeTimes.push(performance.now() - started);
      await sleep(250);
    }
  })();
  // The owner starts once the flood is on, and stops a second before it ends.
  await sleep(2000);
  const ownerStatuses: Record<string, number> = {};
  const ownerTimes: number[] = [];
  while (performance.now() < deadline - 1000) {
    const body =
      deviceToken === undefined
        ? { email: ownerEmail, password: PASSWORD }
        : { email: ownerEmail, password: PASSWORD, deviceToken };
    const { status, ms, json } = await post(server.baseUrl, body, OWNER_ADDRESS);
    count(ownerStatuses, status);
    ownerTimes.push(ms);
    const token = (json as { deviceToken?: unknown } | undefined)?.deviceToken;
    if (typeof token === 'string') deviceToken = token;
    await sleep(250);
  }
  await Promise.all([...attackers, probe]);
  return {
    checkout,
    setting: setting.name,
    round,
    ownerAttempts: ownerTimes.length,
    ownerOk: ownerStatuses['200'] ?? 0,
    ownerStatuses,
    ownerP50Ms: roundTo(quantile(ownerTimes, 0.5), 0),
    ownerP95Ms: roundTo(quantile(ownerTimes, 0.95), 0),
    ownerMaxMs: roundTo(Math.max(...ownerTimes), 0),
    attackerStatuses,
    attackerPerSecond: roundTo(attackerRequests / SECONDS, 0),
    probeP95Ms: roundTo(quantile(probeTimes, 0.95), 0),
  };
}

async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`drop database if exists ${client.escapeIdentifier(name)} with (force)`);
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const checkouts = checkoutsFromArgs();
  const loadBefore = os.loadavg().map((value) => roundTo(value, 2));
  const embedded = await startEmbeddedPostgres({
    dataDir: path.resolve(ROOT_DIR, process.env.DATA_DIR ?? '.data/bench-fairness'),
    port: Number(process.env.EMBEDDED_PG_PORT ?? 54379),
    log,
  });
  const results: RunResult[] = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const setting of SETTINGS) {
        // Alternate which checkout goes first, so neither always runs on a warmer machine.
        const order = round % 2 === 1 ? checkouts : [...checkouts].reverse();
        for (const checkout of order) {
          const name = `fair_${checkout.name.replace(/\W/g, '_')}`;
          // A fresh database each run: counters, users and signing keys of an earlier run stay out.
          await dropDatabase(embedded.url, name);
          await ensureDatabaseExists(embedded.url, name);
          const url = withDatabaseName(embedded.url, name);
          await migrateToLatest(url);
          const server = await spawnServer({
            name: `fairness-${checkout.name}`,
            script: path.join(checkout.dir, 'src/server.ts'),
            port: PORT,
            env: {
              NODE_ENV: 'production',
              EMAIL_TRANSPORT: 'log',
              METRICS_PUBLIC: 'true',
              APP_URL: 'https://app.example.test',
              LOG_LEVEL: 'warn',
              DATABASE_URL: url,
              MIGRATE_ON_START: 'false',
              DATA_DIR: path.resolve(ROOT_DIR, '.data/bench-fairness'),
              JWT_SECRET: randomBytes(48).toString('base64url'),
              // Production needs one since the signing keys (v3); earlier checkouts ignore it.
              ENCRYPTION_KEY: randomBytes(32).toString('base64'),
              // Production needs a relying party since passkeys (v3); earlier checkouts ignore them.
              WEBAUTHN_RP_ID: 'app.example.test',
              WEBAUTHN_ORIGINS: 'https://app.example.test',
              TRUST_PROXY: 'true',
              ...setting.env,
            },
          });
          try {
            const ownerEmail = `owner-${randomBytes(6).toString('hex')}@example.com`;
            const registered = await fetch(`${server.baseUrl}/auth/register`, {
              method: 'POST',
              headers: { 'content-type': 'application/json', 'x-forwarded-for': OWNER_ADDRESS },
              body: JSON.stringify({ email: ownerEmail, password: PASSWORD, name: 'Owner' }),
            });
            if (registered.status !== 201) throw new Error(`register answered ${registered.status}`);
            const result = await runOnce(server, checkout.name, setting, round, ownerEmail);
            log(
              `${checkout.name}, ${setting.name}, round ${round}: owner ${result.ownerOk}/${result.ownerAttempts} ok, ` +
                `p95 ${result.ownerP95Ms} ms, max ${result.ownerMaxMs} ms, ${JSON.stringify(result.ownerStatuses)}; ` +
                `/health/live p95 ${result.probeP95Ms} ms; ` +
                `attackers ${result.attackerPerSecond}/s ${JSON.stringify(result.attackerStatuses)}`,
            );
            results.push(result);
          } finally {
            await server.stop();
          }
        }
      }
    }
  } finally {
    await stopAllServers();
    await embedded.stop();
  }
  const loadAfter = os.loadavg().map((value) => roundTo(value, 2));
  writeReport(checkouts, results, loadBefore, loadAfter);
}

function writeReport(checkouts: Checkout[], results: RunResult[], loadBefore: number[], loadAfter: number[]): void {
  const statuses = (record: Record<string, number>) =>
    Object.entries(record)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([status, n]) => `${n} × ${status}`)
      .join(', ');
  const lines = [
    '# Login fairness under a flood (issue 33, item 3)',
    '',
    `${ATTACKERS} attacking addresses × ${PER_ATTACKER} concurrent logins of random unknown emails, for ${SECONDS} s; ` +
      'one owner from its own address logging in to its own account with one attempt in flight (250 ms between attempts) ' +
      'from a device that signed in before the flood (it sends back its device token where the server gives one). ' +
      'Goal: every owner login succeeds, p95 ≤ 1 s. /health/live p95 is what any request waited during the run, hashing aside.',
    '',
    '```sh',
    `node bench/login-fairness.ts ${checkouts.map((c) => `${c.name}=${displayPath(c.dir)}`).join(' ')}`,
    '```',
    '',
    `Measured ${new Date().toISOString().slice(0, 16)} UTC on ${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), ` +
      `Node ${process.version}, load average ${loadBefore.join(' ')} before and ${loadAfter.join(' ')} after ` +
      '(the machine is shared with other developers). Servers: production mode, argon2id at OWASP parameters, ' +
      'HASH_CONCURRENCY 2, HASH_QUEUE_LIMIT 64, TRUST_PROXY=true.',
    '',
    '| setting | checkout | round | owner ok | owner p50 | owner p95 | owner max | owner statuses | /health/live p95 | attackers req/s | attacker statuses |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...[...results]
      .sort((a, b) => a.setting.localeCompare(b.setting) || a.checkout.localeCompare(b.checkout) || a.round - b.round)
      .map(
        (r) =>
          `| ${r.setting} | ${r.checkout} | ${r.round} | ${r.ownerOk}/${r.ownerAttempts} | ${r.ownerP50Ms} ms | ${r.ownerP95Ms} ms | ` +
          `${r.ownerMaxMs} ms | ${statuses(r.ownerStatuses)} | ${r.probeP95Ms} ms | ${r.attackerPerSecond} | ${statuses(r.attackerStatuses)} |`,
      ),
    '',
  ];
  const file = path.join(ROOT_DIR, 'bench/results/login-fairness.md');
  fs.writeFileSync(file, lines.join('\n'));
  log(`wrote ${path.relative(ROOT_DIR, file)}`);
}

await main();

/** A checkout's directory as the command line names it: relative inside this one, absolute outside. */
function displayPath(dir: string): string {
  const relative = path.relative(ROOT_DIR, dir);
  return relative === '' ? '.' : relative.startsWith('..') ? dir : relative;
}
