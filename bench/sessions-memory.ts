/**
 * `npm run bench:sessions-memory`: the server's resident memory with 100,000 live sessions touched
 * (issue 19's memory guard). Every in-process cache (principals, live sessions) is bounded in
 * entries, so RSS must level off however many sessions authenticate, not grow with them.
 *
 * Seeds the bench database (embedded PostgreSQL under DATA_DIR, default .data/bench, on
 * EMBEDDED_PG_PORT, or BENCH_DATABASE_URL's server) with N users, each with one live session and
 * its refresh token (generate_series, one statement each), signs N access tokens itself with the
 * server's JWT secret (`sid` = the session, `kid` = the key's id, as src/keys/jwt.ts expects),
 * then for each cache configuration starts the real server (src/server.ts, production mode, the
 * bench's app environment), makes one GET /auth/me per session with bounded concurrency (every
 * request must answer 200: a miss of both caches reads the user and the session) and samples the
 * server's VmRSS from /proc every 250 ms: idle, after a warm-up, at every tenth of the sessions,
 * and a few seconds after the last request. Writes bench/results/sessions-memory.md (and .json).
 *
 * BENCH_SESSIONS (100000), BENCH_SESSIONS_CONNECTIONS (16), BENCH_PORT_BASE (3201; uses +0).
 */
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { keyRing } from '../src/keys/tokens.ts';
import { openBenchDatabase, seed } from './lib/database.ts';
import { log, machineInfo, readSettings, RESULTS_DIR, ROOT_DIR } from './lib/environment.ts';
import { spawnServer, stopAllServers, type ServerProcess } from './lib/processes.ts';
import { appEnv, JWT_SECRET } from './lib/servers.ts';

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 100_000);
const CONNECTIONS = Number(process.env.BENCH_SESSIONS_CONNECTIONS ?? 16);
const CHECKPOINTS = 10;
const SAMPLE_MS = 250;
const ISSUER = 'pg-fastify-backend';
const AUDIENCE = 'pg-fastify-backend-api';

/** The cache configurations compared, on the same sessions, one server process each. */
const CONFIGS: readonly { readonly label: string; readonly env: Readonly<Record<string, string>> }[] = [
  { label: 'defaults (SESSION_CACHE_MAX_ENTRIES=100000, PRINCIPAL_CACHE_MAX_ENTRIES=10000)', env: {} },
  { label: 'SESSION_CACHE_MAX_ENTRIES=1000', env: { SESSION_CACHE_MAX_ENTRIES: '1000' } },
  {
    label: 'SESSION_CACHE_MAX_ENTRIES=1000, PRINCIPAL_CACHE_MAX_ENTRIES=1000',
    env: { SESSION_CACHE_MAX_ENTRIES: '1000', PRINCIPAL_CACHE_MAX_ENTRIES: '1000' },
  },
];

interface Live {
  readonly sid: string;
  readonly userId: string;
}

interface Sample {
  readonly ms: number;
  readonly touched: number;
  readonly rssKiB: number;
}

interface ConfigResult {
  readonly label: string;
  readonly env: Readonly<Record<string, string>>;
  readonly idleKiB: number;
  readonly warmKiB: number;
  /** RSS when each tenth of the sessions had been touched. */
  readonly checkpoints: readonly { readonly touched: number; readonly rssKiB: number }[];
  readonly afterKiB: number;
  /** VmHWM: the process's peak RSS. */
  readonly peakKiB: number;
  readonly seconds: number;
  readonly requestsPerSecond: number;
  readonly samples: readonly Sample[];
}

/** VmRSS and VmHWM of a process, in KiB, from /proc/<pid>/status. */
function memoryOf(pid: number): { rssKiB: number; hwmKiB: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') };
}

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** An HS256 access token the way the server signs one (header `kid`, claims of AccessTokenClaims). */
function signer(secret: string): (live: Live) => string {
  const { kid } = keyRing(secret).signing;
  const header = b64({ alg: 'HS256', typ: 'JWT', kid });
  const iat = Math.floor(Date.now() / 1000);
  return (live) => {
    const body = b64({
      sub: live.userId,
      role: 'user',
      sid: live.sid,
      typ: 'access',
      iat,
      exp: iat + 7200,
      iss: ISSUER,
      aud: AUDIENCE,
    });
    const signature = createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url');
    return `${header}.${body}.${signature}`;
  };
}

/** N users, each with one live session and that session's refresh token (family = session), in bulk. */
async function seedSessions(url: string, count: number): Promise<Live[]> {
  const { passwordHash } = await seed(url, 0);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(
      `insert into users (email, password_hash, name)
       select 'bench-mem-' || n || '@example.com', $1, 'Bench Memory ' || n from generate_series(1, $2::int) as n`,
      [passwordHash, count],
    );
    const { rows } = await client.query<{ id: string; user_id: string }>(
      `insert into sessions (user_id, expires_at, user_agent, ip_address)
       select id, now() + interval '30 days', 'bench sessions-memory', '127.0.0.1'
       from users where email like 'bench-mem-%'
       returning id, user_id`,
    );
    // What a login leaves besides the session: the family's first refresh token (only its hash is stored).
    await client.query(
      `insert into refresh_tokens (user_id, family_id, token_hash, expires_at)
       select user_id, id, encode(sha256(convert_to(gen_random_uuid()::text, 'UTF8')), 'base64'), expires_at
       from sessions`,
    );
    await client.query('vacuum analyze users');
    await client.query('vacuum analyze sessions');
    await client.query('vacuum analyze refresh_tokens');
    return rows.map((row) => ({ sid: row.id, userId: row.user_id }));
  } finally {
    await client.end();
  }
}

function get(agent: http.Agent, port: number, urlPath: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: '127.0.0.1', port, path: urlPath, agent, headers: { authorization: `Bearer ${token}` } },
      (response) => {
        response.resume();
        response.once('end', () => {
          resolve(response.statusCode ?? 0);
        });
        response.once('error', reject);
      },
    );
    request.once('error', reject);
    request.end();
  });
}

async function measureConfig(
  config: (typeof CONFIGS)[number],
  port: number,
  databaseUrl: string,
  settings: ReturnType<typeof readSettings>,
  tokens: readonly string[],
): Promise<ConfigResult> {
  const server: ServerProcess = await spawnServer({
    name: 'sessions-memory',
    script: path.join(ROOT_DIR, 'src/server.ts'),
    port,
    env: { ...appEnv({ port, databaseUrl, settings }), ...config.env },
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  let touched = 0;
  const samples: Sample[] = [];
  const started = Date.now();
  const sampler = setInterval(() => {
    if (server.alive) samples.push({ ms: Date.now() - started, touched, rssKiB: memoryOf(server.pid).rssKiB });
  }, SAMPLE_MS);
  try {
    await sleep(2000);
    const idleKiB = memoryOf(server.pid).rssKiB;
    // JIT and pool warm-up on one session only: the caches gain one entry each.
    const first = tokens[0] ?? '';
    for (let i = 0; i < 2000; i += CONNECTIONS) {
      const statuses = await Promise.all(
        Array.from({ length: CONNECTIONS }, () => get(agent, port, '/auth/me', first)),
      );
      if (statuses.some((status) => status !== 200)) throw new Error(`warm-up answered ${statuses.join(',')}`);
    }
    await sleep(1000);
    const warmKiB = memoryOf(server.pid).rssKiB;

    const checkpoints: { touched: number; rssKiB: number }[] = [];
    const step = Math.ceil(tokens.length / CHECKPOINTS);
    let next = 0;
    let failed: string | undefined;
    const loadStarted = Date.now();
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (failed === undefined && next < tokens.length) {
          const token = tokens[next++] ?? '';
          const status = await get(agent, port, '/auth/me', token);
          if (status !== 200) failed = `GET /auth/me answered ${status} for session #${next - 1}`;
          touched++;
          if (touched % step === 0 || touched === tokens.length)
            checkpoints.push({ touched, rssKiB: memoryOf(server.pid).rssKiB });
        }
      }),
    );
    if (failed !== undefined) throw new Error(failed);
    const seconds = (Date.now() - loadStarted) / 1000;
    await sleep(3000);
    const { rssKiB: afterKiB, hwmKiB: peakKiB } = memoryOf(server.pid);
    const result: ConfigResult = {
      label: config.label,
      env: config.env,
      idleKiB,
      warmKiB,
      checkpoints,
      afterKiB,
      peakKiB,
      seconds,
      requestsPerSecond: tokens.length / seconds,
      samples,
    };
    log(
      `${config.label}: idle ${mib(idleKiB)}, warm ${mib(warmKiB)}, ` +
        `${checkpoints.map((c) => `${c.touched / 1000}k ${mib(c.rssKiB)}`).join(', ')}, after ${mib(afterKiB)}, peak ${mib(peakKiB)} MiB ` +
        `(${Math.round(result.requestsPerSecond)} req/s)`,
    );
    return result;
  } finally {
    clearInterval(sampler);
    agent.destroy();
    await server.stop();
  }
}

const mib = (kib: number) => (kib / 1024).toFixed(1);

function report(results: readonly ConfigResult[], machine: ReturnType<typeof machineInfo>, load: number[]): string {
  const fmt = (n: number) => n.toLocaleString('en-US');
  const header = `| configuration | idle | warm | ${results[0]?.checkpoints.map((c) => fmt(c.touched)).join(' | ') ?? ''} | 3 s after | peak (VmHWM) | req/s |`;
  const rule = `|---|${'---:|'.repeat((results[0]?.checkpoints.length ?? 0) + 5)}`;
  const rows = results.map(
    (r) =>
      `| ${r.label} | ${mib(r.idleKiB)} | ${mib(r.warmKiB)} | ${r.checkpoints.map((c) => mib(c.rssKiB)).join(' | ')} | ${mib(r.afterKiB)} | ${mib(r.peakKiB)} | ${fmt(Math.round(r.requestsPerSecond))} |`,
  );
  const growth = results.map((r) => {
    const half = r.checkpoints[Math.floor(r.checkpoints.length / 2) - 1];
    const last = r.checkpoints.at(-1);
    return (
      `- ${r.label}: ${mib(r.warmKiB)} → ${mib(last?.rssKiB ?? Number.NaN)} MiB over ${fmt(SESSIONS)} sessions; ` +
      `second half of the sessions (${fmt(half?.touched ?? 0)} → ${fmt(last?.touched ?? 0)}): ${(((last?.rssKiB ?? 0) - (half?.rssKiB ?? 0)) / 1024).toFixed(1)} MiB`
    );
  });
  return [
    `# Server RSS with ${fmt(SESSIONS)} live sessions touched`,
    '',
    `\`npm run bench:sessions-memory\` (bench/sessions-memory.ts), commit ${machine.commit}, ${machine.startedAt}.`,
    `${machine.cpus} cores (${machine.cpuModel}), shared; Node ${machine.node}; load average ${machine.loadAverageAtStart.join(' / ')} at start, ${load.join(' / ')} at end.`,
    '',
    `${fmt(SESSIONS)} users with one live session each (and its refresh token), bulk-inserted; one access token per session signed by the bench with the server's`,
    `JWT secret; one \`GET /auth/me\` per session, ${CONNECTIONS} concurrent, every answer 200 (each is a miss of both caches: the user and the session are read).`,
    'One fresh server process (src/server.ts, NODE_ENV=production, request log at info to /dev/null, DB_POOL_MAX=10) per configuration;',
    'VmRSS from /proc/<pid>/status in MiB: idle 2 s after start, after a 2,000-request warm-up on one session, when each tenth of the sessions had been touched, and 3 s after the last request.',
    '',
    header,
    rule,
    ...rows,
    '',
    ...growth,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const settings = readSettings();
  const machine = machineInfo();
  const database = await openBenchDatabase(settings);
  try {
    log(`seeding ${SESSIONS} users with one session each`);
    const seeded = Date.now();
    const live = await seedSessions(database.url, SESSIONS);
    const sign = signer(JWT_SECRET);
    const tokens = live.map(sign);
    log(`seeded and signed in ${((Date.now() - seeded) / 1000).toFixed(1)} s`);
    const results: ConfigResult[] = [];
    for (const config of CONFIGS)
      results.push(await measureConfig(config, settings.portBase, database.url, settings, tokens));
    const load = os.loadavg().map((value) => Math.round(value * 100) / 100);
    fs.mkdirSync(RESULTS_DIR, { recursive: true });
    fs.writeFileSync(
      path.join(RESULTS_DIR, 'sessions-memory.json'),
      `${JSON.stringify({ machine, sessions: SESSIONS, connections: CONNECTIONS, results }, null, 2)}\n`,
    );
    fs.writeFileSync(path.join(RESULTS_DIR, 'sessions-memory.md'), report(results, machine, load));
    log('wrote bench/results/sessions-memory.md');
  } finally {
    await stopAllServers();
    await database.close();
  }
}

await main();
