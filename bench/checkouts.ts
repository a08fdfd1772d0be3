/**
 * Checkouts side by side (`npm run bench:http -- before=/tmp/bench-before this=.`): the full app of
 * each checkout (`node <dir>/src/server.ts`, the same production environment, its own port) on the
 * one seeded database, under GET /users/:id (with the raw-pg and Drizzle routes of this tree beside
 * them) and GET /auth/me, rounds interleaved with the order rotated. Ratios to the first checkout
 * are taken per round, so background load on the shared cores mostly cancels out; the spread of the
 * per-round ratios is the noise. Writes bench/results/http-checkouts.md.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { measureOn, summarise, type HttpBenchOptions, type RunSample } from './http.ts';
import { ADMIN_EMAIL, SEED_PASSWORD } from './lib/database.ts';
import { log, machineInfo, RESULTS_DIR, ROOT_DIR } from './lib/environment.ts';
import type { RequestSpec } from './lib/load.ts';
import { getUserById } from './lib/scenarios.ts';
import { login, startApp, startBaseline } from './lib/servers.ts';
import { median } from './lib/stats.ts';

export interface Checkout {
  readonly name: string;
  /** The directory holding src/server.ts (node_modules linked or copied beside it). */
  readonly dir: string;
  /** What the user typed, for the report. */
  readonly given: string;
}

/** `name=dir` arguments; `dir` resolved against the current directory. */
export function parseCheckouts(args: readonly string[]): Checkout[] {
  return args.map((arg) => {
    const [name = '', given = ''] = arg.split('=');
    if (name === '' || given === '') throw new Error(`expected name=directory, got "${arg}"`);
    return { name, given, dir: path.resolve(given) };
  });
}

const SCENARIOS = ['GET /users/:id', 'GET /auth/me'] as const;
type Scenario = (typeof SCENARIOS)[number];
const BASELINES = ['raw', 'drizzle'] as const;

interface Cell {
  readonly scenario: Scenario;
  readonly target: string;
  readonly connections: number;
  readonly samples: RunSample[];
}

function describeCommit(dir: string): string {
  if (dir === ROOT_DIR && process.env.BENCH_COMMIT !== undefined) {
    const dirty = process.env.BENCH_SOURCE_DIRTY === '1' ? ', with uncommitted changes under src/' : '';
    return `this tree at ${process.env.BENCH_COMMIT}${dirty}, copied when the run started`;
  }
  try {
    return execFileSync('git', ['-C', dir, 'log', '-1', '--format=commit %h %s'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .trim()
      .slice(0, 90);
  } catch {
    return 'no git metadata: name its commit when you export it';
  }
}

export async function runCheckoutComparison(
  options: Omit<HttpBenchOptions, 'accessToken'> & {
    readonly checkouts: readonly Checkout[];
    readonly command: string;
  },
): Promise<void> {
  const { settings, servers, seed, checkouts } = options;
  const loadAtStart = os.loadavg();
  const apps = checkouts.map((c) => `app@${c.name}`);
  const tokens = new Map<string, string>();
  for (const [i, checkout] of checkouts.entries()) {
    const name = `app@${checkout.name}`;
    const server = await servers.add(name, () =>
      startApp(name, { port: settings.portBase + i, databaseUrl: options.databaseUrl, settings, root: checkout.dir }),
    );
    tokens.set(name, (await login(server.baseUrl, ADMIN_EMAIL, SEED_PASSWORD)).accessToken);
  }
  await servers.add('raw', () => startBaseline('raw', 'raw', settings.portBase + 8, options.databaseUrl));
  await servers.add('drizzle', () => startBaseline('drizzle', 'drizzle', settings.portBase + 9, options.databaseUrl));

  const cells = new Map<string, Cell>();
  const requests: Record<Scenario, readonly RequestSpec[]> = {
    'GET /users/:id': getUserById(seed),
    'GET /auth/me': [{ method: 'GET', path: '/auth/me' }],
  };
  for (let round = 0; round < settings.rounds; round++) {
    for (const connections of settings.connections) {
      for (const scenario of SCENARIOS) {
        const targets = scenario === 'GET /users/:id' ? [...apps, ...BASELINES] : apps;
        const order = targets.map((_, i) => targets[(i + round) % targets.length]).filter((t) => t !== undefined);
        for (const target of order) {
          const token = tokens.get(target);
          const sample = await measureOn(servers, target, {
            connections,
            seconds: settings.httpSeconds,
            requests: requests[scenario],
            ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }),
            scrape: token !== undefined,
            warmupSeconds: round === 0 ? 1 : 0.5,
            clusterDir: options.clusterDir,
          });
          if (sample === undefined) continue;
          const key = `${scenario}|${target}|${connections}`;
          const cell = cells.get(key) ?? { scenario, target, connections, samples: [] };
          cell.samples.push(sample);
          cells.set(key, cell);
          log(
            `checkouts round ${round + 1} ${scenario} ${target} c=${connections}: ${Math.round(sample.load.okPerSecond)} ok/s ` +
              `p95 ${sample.load.p95.toFixed(1)} ms non2xx ${sample.load.non2xx} cpu/req server ${Math.round(sample.cpu?.serverUs ?? Number.NaN)}µs pg ${Math.round(sample.cpu?.postgresUs ?? Number.NaN)}µs`,
          );
        }
      }
    }
  }
  const markdown = renderMarkdown(options, apps, cells, loadAtStart);
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  fs.writeFileSync(path.join(RESULTS_DIR, 'http-checkouts.md'), markdown);
  // Raw samples of the latest run only, git-ignored.
  fs.writeFileSync(
    path.join(RESULTS_DIR, 'http-checkouts.json'),
    `${JSON.stringify([...cells.values()], (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 2)}\n`,
  );
  log('checkouts: bench/results/http-checkouts.md');
}

function fmt(value: number | undefined, digits = 0): string {
  if (value === undefined || !Number.isFinite(value)) return '–';
  return digits === 0 ? Math.round(value).toLocaleString('en-US') : value.toFixed(digits);
}

function pct(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? '–' : `${Math.round(value * 100)}%`;
}

/** Median and range of the per-round ratios of `pick` between two cells (rounds are paired). */
function ratios(a: Cell | undefined, b: Cell | undefined, pick: (s: RunSample) => number | undefined): string {
  if (a === undefined || b === undefined) return '–';
  const values: number[] = [];
  for (let i = 0; i < Math.min(a.samples.length, b.samples.length); i++) {
    const x = pick(a.samples[i] as RunSample);
    const y = pick(b.samples[i] as RunSample);
    if (x !== undefined && y !== undefined && Number.isFinite(x) && Number.isFinite(y) && y > 0) values.push(x / y);
  }
  if (values.length === 0) return '–';
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return `**${median(values).toFixed(2)}×** (${lo.toFixed(2)}–${hi.toFixed(2)})`;
}

function renderMarkdown(
  options: Omit<HttpBenchOptions, 'accessToken'> & {
    readonly checkouts: readonly Checkout[];
    readonly command: string;
  },
  apps: readonly string[],
  cells: ReadonlyMap<string, Cell>,
  loadAtStart: readonly number[],
): string {
  const { settings, checkouts } = options;
  const machine = machineInfo();
  const first = apps[0] ?? '';
  const others = apps.slice(1);
  const cell = (scenario: Scenario, target: string, c: number) => cells.get(`${scenario}|${target}|${c}`);
  const lines: string[] = [
    '# The full app of several checkouts, side by side',
    '',
    '```sh',
    options.command,
    '```',
    '',
    `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${machine.cpus} shared CPUs (${machine.cpuModel}), Node ${machine.node}; ` +
      `load average ${loadAtStart.map((v) => v.toFixed(2)).join(' / ')} at start, ${os
        .loadavg()
        .map((v) => v.toFixed(2))
        .join(' / ')} at end. ${settings.rounds} rounds × ${settings.httpSeconds} s per run after a warm-up, ` +
      'the targets interleaved and their order rotated every round; medians over rounds. Ratios are taken per round (same minute, same ' +
      'background load) and shown as median (min–max over rounds): the range is the noise. Every app: production mode, pool 10, ' +
      "request log at info to /dev/null, the same database and seed (10,000 users); the tokens are the seeded admin's.",
    '',
    ...checkouts.map((c) => `- **${c.name}**: \`${c.given}\` (${describeCommit(c.dir)})`),
    '- **raw**, **drizzle**: the bare raw-pg and Drizzle routes of bench/servers/baseline.ts (GET /users/:id only)',
    '',
  ];
  for (const scenario of SCENARIOS) {
    const targets = scenario === 'GET /users/:id' ? [...apps, ...BASELINES] : [...apps];
    lines.push(
      `## ${scenario}`,
      '',
      '| c | ' +
        targets.map((t) => `${t.replace(/^app@/, '')} req/s (p50 / p95 ms)`).join(' | ') +
        ' | ' +
        others
          .map(
            (o) =>
              `${o.replace(/^app@/, '')} ÷ ${first.replace(/^app@/, '')}: req/s | server CPU/req | PostgreSQL CPU/req`,
          )
          .join(' | ') +
        ' | pool busy ' +
        apps.map((a) => a.replace(/^app@/, '')).join(' / ') +
        ' |',
      '|---:|' + targets.map(() => '---:|').join('') + others.map(() => '---:|---:|---:|').join('') + '---:|',
    );
    for (const c of settings.connections) {
      const row = targets.map((t) => {
        const got = cell(scenario, t, c);
        if (got === undefined) return '–';
        const s = summarise(got.samples);
        return `${fmt(s.okPerSecond)} (${fmt(s.p50, 1)} / ${fmt(s.p95, 1)})`;
      });
      const ratioCells = others.flatMap((o) => {
        const a = cell(scenario, o, c);
        const b = cell(scenario, first, c);
        return [
          ratios(a, b, (s) => s.load.okPerSecond),
          ratios(a, b, (s) => s.cpu?.serverUs),
          ratios(a, b, (s) => s.cpu?.postgresUs),
        ];
      });
      const pools = apps.map((a) => {
        const got = cell(scenario, a, c);
        return got === undefined ? '–' : pct(summarise(got.samples).poolUtilisationMean);
      });
      lines.push(`| ${c} | ${row.join(' | ')} | ${ratioCells.join(' | ')} | ${pools.join(' / ')} |`);
    }
    lines.push('');
  }
  lines.push(
    'CPU per request (µs, medians) by process, from /proc: ' +
      SCENARIOS.flatMap((scenario) =>
        settings.connections.map(
          (c) =>
            `${scenario} c=${c}: ` +
            apps
              .map((a) => {
                const got = cell(scenario, a, c);
                const s = got === undefined ? undefined : summarise(got.samples);
                return `${a.replace(/^app@/, '')} ${fmt(s?.serverCpuUsPerRequest)} server + ${fmt(s?.postgresCpuUsPerRequest)} PostgreSQL`;
              })
              .join(', '),
        ),
      ).join('; ') +
      '.',
    '',
  );
  return lines.join('\n');
}
