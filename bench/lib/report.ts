import fs from 'node:fs';
import path from 'node:path';
import type { HttpPoint } from '../http.ts';
import { lineChart, type Series } from './chart.ts';
import { profileMarkdown } from './cpu-profile.ts';
import { RESULTS_DIR } from './environment.ts';
import type { PartMeta, Results } from './results.ts';
import { MIX } from './scenarios.ts';
import { TARGET_DESCRIPTIONS, TARGET_LABELS, TARGETS, type Target } from './servers.ts';

/** JSON turns NaN into null: read numbers back defensively. */
function num(value: number | null | undefined): number {
  return typeof value === 'number' ? value : Number.NaN;
}

function fmt(value: number | null | undefined, digits = 0): string {
  const n = num(value);
  if (!Number.isFinite(n)) return '–';
  return digits === 0 ? Math.round(n).toLocaleString('en-US') : n.toFixed(digits);
}

function pct(value: number | null | undefined): string {
  const n = num(value);
  return Number.isFinite(n) ? `${Math.round(n * 100)}%` : '–';
}

function x(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : '–';
}

export interface TargetCheck {
  readonly target: string;
  readonly goal: string;
  readonly measured: string;
  readonly met: boolean | undefined;
}

function point(points: readonly HttpPoint[], target: string, connections: number): HttpPoint | undefined {
  return points.find((p) => p.target === target && p.connections === connections && p.scenario === 'GET /users/:id');
}

/** The targets, judged on the latest results. */
export function checkTargets(results: Results): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const http = results.http;
  if (http !== undefined && http.knee !== undefined) {
    const knee = http.knee;
    const app = point(http.findById, 'app', knee);
    const raw = point(http.findById, 'raw', knee);
    const drizzle = point(http.findById, 'drizzle', knee);
    const appRps = num(app?.summary.okPerSecond);
    const vsRaw = appRps / num(raw?.summary.okPerSecond);
    const vsDrizzle = appRps / num(drizzle?.summary.okPerSecond);
    checks.push({
      target: `GET /users/:id, full app vs raw-pg route, at the knee (c=${knee})`,
      goal: '≥ 1.00×',
      measured: `${x(vsRaw)} (${fmt(appRps)} vs ${fmt(raw?.summary.okPerSecond)} req/s)`,
      met: Number.isFinite(vsRaw) ? vsRaw >= 1.0 : undefined,
    });
    checks.push({
      target: `GET /users/:id, full app vs Drizzle route, at the knee (c=${knee})`,
      goal: '≥ 1.20×',
      measured: `${x(vsDrizzle)} (${fmt(appRps)} vs ${fmt(drizzle?.summary.okPerSecond)} req/s)`,
      met: Number.isFinite(vsDrizzle) ? vsDrizzle >= 1.2 : undefined,
    });
    const queryP95 = num(app?.summary.queryP95Ms);
    checks.push({
      target: `DB query p95 at the knee (our histogram)`,
      goal: '< 100 ms',
      measured: `${fmt(queryP95, 2)} ms`,
      met: Number.isFinite(queryP95) ? queryP95 < 100 : undefined,
    });
    const utilisation = num(app?.summary.poolUtilisationMean);
    checks.push({
      target: `Pool utilisation at the knee (mean of scrapes)`,
      goal: '< 80% (or name the setting)',
      measured: `${pct(utilisation)} busy (max ${pct(app?.summary.poolUtilisationMax)}), ${fmt(app?.summary.poolWaitingMean, 1)} waiting on average`,
      met: Number.isFinite(utilisation) ? utilisation < 0.8 : undefined,
    });
    const half = http.halfKnee?.summary;
    if (half !== undefined) {
      const halfUtilisation = num(half.poolUtilisationMean);
      checks.push({
        target: `Pool utilisation at half the knee's throughput (fixed rate, c=${knee})`,
        goal: '< 80%',
        measured: `${pct(halfUtilisation)} busy (max ${pct(half.poolUtilisationMax)}) at ${fmt(half.okPerSecond)} req/s, ${fmt(half.poolWaitingMean, 1)} waiting on average, p95 ${fmt(half.p95, 1)} ms`,
        met: Number.isFinite(halfUtilisation) ? halfUtilisation < 0.8 : undefined,
      });
    }
  }
  const login = results.login?.login;
  if (login !== undefined) {
    checks.push({
      target: 'Login throughput vs the argon2 ceiling',
      goal: '≥ 90%',
      measured:
        `${pct(login.best.ofCeiling)} (${fmt(login.best.okPerSecond, 1)}/s at c=${login.best.connections} vs ${fmt(login.ceiling.ceilingPerSecond, 1)}/s); ` +
        `${pct(login.best.ofMeasuredNow)} of the argon2 throughput measured just before that run`,
      met: login.best.ofCeiling >= 0.9,
    });
    checks.push({
      target: '/health/live p99 during login saturation (worst level)',
      goal: '< 20 ms',
      measured: `${fmt(login.worstProbeP99Ms, 1)} ms (app's own event-loop delay p99: worst ${fmt(login.worstEventLoopLagP99Ms, 1)} ms)`,
      met: num(login.worstProbeP99Ms) < 20,
    });
  }
  return checks;
}

export function targetsTable(checks: readonly TargetCheck[]): string {
  return [
    '| target | goal | measured | met |',
    '|---|---|---|---|',
    ...checks.map(
      (c) => `| ${c.target} | ${c.goal} | ${c.measured} | ${c.met === undefined ? '–' : c.met ? 'yes' : '**no**'} |`,
    ),
  ].join('\n');
}

function metaLine(label: string, meta: PartMeta): string {
  const m = meta.machine;
  return (
    `- **${label}**: ${meta.finishedAt.slice(0, 16).replace('T', ' ')} UTC, commit \`${m.commit}\` (measured: ${m.source}${m.srcDirty && m.source !== 'HEAD' ? ', with uncommitted changes under src/' : ''}), ` +
    `${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB, Node ${m.node}, ${meta.database.serverVersion} (${meta.database.kind}), ` +
    `load average ${m.loadAverageAtStart.join(' / ')} at start, ${meta.loadAverageAtEnd.join(' / ')} at end`
  );
}

const COLOURS: Readonly<Record<Target, string>> = {
  app: '#d62728',
  'app-unprepared': '#ff9896',
  'ours-route': '#9467bd',
  raw: '#1f77b4',
  drizzle: '#2ca02c',
};

function findByIdTable(points: readonly HttpPoint[], connections: readonly number[], knee: number | undefined): string {
  const targets = TARGETS.filter((t) => points.some((p) => p.target === t && p.scenario === 'GET /users/:id'));
  const header = [
    '| c | ' +
      targets.map((t) => `${TARGET_LABELS[t]} req/s (p50 / p95 / p99 ms)`).join(' | ') +
      ' | app ÷ raw | app ÷ drizzle | app: DB query p95 | app: pool busy (max) | app: waiting (max) | no-DB route req/s |',
    '|---:|' + targets.map(() => '---|').join('') + '---:|---:|---:|---:|---:|---:|',
  ];
  const rows = connections.map((c) => {
    const cells = targets.map((t) => {
      const s = point(points, t, c)?.summary;
      return s === undefined
        ? '–'
        : `**${fmt(s.okPerSecond)}** (${fmt(s.p50, 1)} / ${fmt(s.p95, 1)} / ${fmt(s.p99, 1)})`;
    });
    const app = point(points, 'app', c)?.summary;
    const raw = point(points, 'raw', c)?.summary;
    const drizzle = point(points, 'drizzle', c)?.summary;
    const constant = points.find((p) => p.scenario !== 'GET /users/:id' && p.connections === c)?.summary;
    return (
      `| ${c}${c === knee ? ' (knee)' : ''} | ${cells.join(' | ')} | ${x(num(app?.okPerSecond) / num(raw?.okPerSecond))} | ${x(num(app?.okPerSecond) / num(drizzle?.okPerSecond))} | ` +
      `${fmt(app?.queryP95Ms, 2)} ms | ${pct(app?.poolUtilisationMean)} (${pct(app?.poolUtilisationMax)}) | ${fmt(app?.poolWaitingMean, 1)} (${fmt(app?.poolWaitingMax, 0)}) | ${fmt(constant?.okPerSecond)} |`
    );
  });
  return [...header, ...rows].join('\n');
}

function cpuTable(points: readonly HttpPoint[], connections: readonly number[]): string {
  const targets = TARGETS.filter((t) => points.some((p) => p.target === t && p.scenario === 'GET /users/:id'));
  return [
    '| c | ' + targets.map((t) => `${TARGET_LABELS[t]}: server / PostgreSQL / load generator µs`).join(' | ') + ' |',
    '|---:|' + targets.map(() => '---:|').join(''),
    ...connections.map((c) => {
      const cells = targets.map((t) => {
        const s = point(points, t, c)?.summary;
        return s === undefined
          ? '–'
          : `${fmt(s.serverCpuUsPerRequest)} / ${fmt(s.postgresCpuUsPerRequest)} / ${fmt(s.harnessCpuUsPerRequest)}`;
      });
      return `| ${c} | ${cells.join(' | ')} |`;
    }),
  ].join('\n');
}

function ablationSection(points: readonly HttpPoint[]): string {
  const by = (name: string) => points.find((p) => p.scenario === name)?.summary;
  const rows = points.map((p) => {
    const s = p.summary;
    return `| ${p.scenario} | ${fmt(s.okPerSecond)} | ${fmt(s.p95, 1)} | ${fmt(s.serverCpuUsPerRequest)} | ${fmt(s.postgresCpuUsPerRequest)} | ${fmt(s.queriesPerRequest, 2)} |`;
  });
  const cpu = (name: string) => num(by(name)?.serverCpuUsPerRequest);
  const app = cpu('app GET /users/:id');
  const quiet = cpu('app, LOG_LEVEL=warn, GET /users/:id');
  const uncached = cpu('app, PRINCIPAL_CACHE_SECONDS=0, GET /users/:id');
  const health = cpu('app GET /health/live (no auth, no DB)');
  const ours = cpu('ours, bare route GET /users/:id');
  const raw = cpu('raw pg route GET /users/:id');
  const constant = cpu('bare Fastify GET /const (no DB)');
  const oneQuery = ours - constant;
  const parts: [string, number][] = [
    ['bare Fastify request/response (GET /const)', constant],
    [
      "the app's plugin stack on top of it (helmet, request id, route metrics, request log, TypeBox schemas): /health/live − /const",
      health - constant,
    ],
    ['of which the info-level request log (app − app with LOG_LEVEL=warn, on GET /users/:id)', app - quiet],
    ['one findById through our data layer + response serialisation (bare route − /const)', oneQuery],
    ['the same through raw pg (raw route − /const)', raw - constant],
    [
      'auth (JWT verify, the principal from the cache) and the handler: app − /health/live − one findById',
      app - health - oneQuery,
    ],
    ["reading the principal's row on every request instead (app with PRINCIPAL_CACHE_SECONDS=0 − app)", uncached - app],
    ['= full app GET /users/:id', app],
  ];
  return [
    '| run | 2xx req/s | p95 ms | server CPU µs/req | PostgreSQL CPU µs/req | queries/req |',
    '|---|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    'Server CPU per request, decomposed (medians of the rounds; differences of medians, so approximate):',
    '',
    '| part | µs per request |',
    '|---|---:|',
    ...parts.map(([label, value]) => `| ${label} | ${fmt(value)} |`),
  ].join('\n');
}

function scenarioTable(points: readonly HttpPoint[]): string {
  return [
    '| scenario | c | 2xx req/s | p50 ms | p95 ms | p99 ms | non-2xx per run | DB query p95 ms | queries / request | pool busy mean (max) | waiting mean (max) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...points.map((p) => {
      const s = p.summary;
      return `| ${p.scenario} | ${p.connections} | ${fmt(s.okPerSecond)} | ${fmt(s.p50, 1)} | ${fmt(s.p95, 1)} | ${fmt(s.p99, 1)} | ${fmt(s.non2xxPerRun)} | ${fmt(s.queryP95Ms, 2)} | ${fmt(s.queriesPerRequest, 2)} | ${pct(s.poolUtilisationMean)} (${pct(s.poolUtilisationMax)}) | ${fmt(s.poolWaitingMean, 1)} (${fmt(s.poolWaitingMax, 0)}) |`;
    }),
  ].join('\n');
}

/** The short table for the project README: the headline figures of the latest run. */
export function readmeTable(results: Results): string {
  const lines: string[] = [];
  const http = results.http;
  if (http !== undefined) {
    const connections = http.settings.connections;
    lines.push(
      '| GET /users/:id, req/s (p95 ms) | ' +
        connections.map((c) => `c=${c}${c === http.knee ? ' (knee)' : ''}`).join(' | ') +
        ' |',
      '|---|' + connections.map(() => '---:|').join(''),
    );
    for (const target of TARGETS) {
      const cells = connections.map((c) => {
        const s = point(http.findById, target, c)?.summary;
        return s === undefined ? '–' : `${fmt(s.okPerSecond)} (${fmt(s.p95, 1)})`;
      });
      if (cells.every((cell) => cell === '–')) continue;
      lines.push(`| ${TARGET_LABELS[target]} | ${cells.join(' | ')} |`);
    }
    lines.push('');
  }
  lines.push(targetsTable(checkTargets(results)));
  return lines.join('\n');
}

export function writeReport(results: Results): { markdown: string; chart: string | undefined } {
  const sections: string[] = ['# Benchmark results', ''];
  sections.push(
    'Every comparison below is a **ratio measured side by side in one run** on one machine: 2 cores shared by the load ' +
      "generator (autocannon, in the harness process), the servers under test, PostgreSQL, and other developers' test suites. " +
      'Absolute numbers move with that background load (see the load averages); the ratios are what the targets judge. ' +
      'Reproduce with `npm run bench` (see bench/README.md).',
    '',
  );
  const metas: string[] = [];
  if (results.http !== undefined) metas.push(metaLine('HTTP run', results.http));
  if (results.login !== undefined) metas.push(metaLine('login run', results.login));
  sections.push(...metas, '');

  sections.push('## Targets (issue 8)', '', targetsTable(checkTargets(results)), '');

  let chart: string | undefined;
  const http = results.http;
  if (http !== undefined) {
    const connections = http.settings.connections;
    sections.push(
      '## GET /users/:id over HTTP',
      '',
      `autocannon, ${http.settings.httpSeconds} s per measured run after a 1 s warm-up at the same concurrency, ` +
        `${http.settings.rounds} rounds with the contenders interleaved (order rotated each round); medians of the rounds. ` +
        'Random ids from the seeded users; every contender answers the same JSON through a response schema. ' +
        "DB query p95 (bucket-interpolated), pool busy share and waiting callers come from the app's own /metrics, scraped every 250 ms during the run. " +
        `Knee = the lowest concurrency within 10% of the full app's best throughput.`,
      '',
      ...TARGETS.map((t) => `- **${TARGET_LABELS[t]}**: ${TARGET_DESCRIPTIONS[t]}`),
      '',
      ...(http.incidents !== undefined && http.incidents.length > 0
        ? [
            'Incidents (a server died and was restarted; the affected run was repeated): ' + http.incidents.join('; '),
            '',
          ]
        : []),
      findByIdTable(http.findById, connections, http.knee),
      '',
      '![throughput and p95 vs concurrency](chart.svg)',
      '',
      'CPU time per request (µs) by process, from /proc (servers, PostgreSQL backends) and process.cpuUsage (the harness running autocannon). ' +
        'On a shared machine this is steadier than req/s, and it says who spends the time.',
      '',
      cpuTable(http.findById, connections),
      '',
      ...(http.ablation === undefined
        ? []
        : [
            `### Where the full app's time goes (c=${http.knee ?? '?'}, ${http.settings.rounds} interleaved rounds)`,
            '',
            ablationSection(http.ablation),
            '',
          ]),
      "## The app's other scenarios",
      '',
      `One ${http.settings.httpSeconds} s run per level after a 1 s warm-up. Mixed = ` +
        MIX.map((m) => `${Math.round(m.share * 1000) / 10}% ${m.what}`).join(', ') +
        '. Register and login are bound by argon2 (HASH_CONCURRENCY=2 slots, HASH_QUEUE_LIMIT=64 waiting: beyond that 503 OVERLOADED, by design).',
      '',
      scenarioTable(http.halfKnee === undefined ? http.scenarios : [http.halfKnee, ...http.scenarios]),
      '',
    );
    const series = (pick: (p: HttpPoint) => number): Series[] =>
      TARGETS.filter((t) => http.findById.some((p) => p.target === t && p.scenario === 'GET /users/:id')).map((t) => ({
        label: TARGET_LABELS[t],
        colour: COLOURS[t],
        ...(t === 'app-unprepared' || t === 'ours-route' ? { dashed: true } : {}),
        points: connections.map((c) => {
          const p = point(http.findById, t, c);
          return [c, p === undefined ? Number.NaN : num(pick(p))] as const;
        }),
      }));
    chart = lineChart({
      title: 'GET /users/:id — full app vs raw pg, Drizzle and our bare data layer',
      subtitle: `${http.machine.cpus} shared cores, Node ${http.machine.node}, ${http.database.serverVersion}, commit ${http.machine.commit}, ${http.finishedAt.slice(0, 10)}; pool 10 everywhere`,
      connections,
      throughput: series((p) => p.summary.okPerSecond),
      p95: series((p) => p.summary.p95),
    });
    if (http.profile !== undefined) {
      sections.push(
        '## CPU profile of the app under GET /users/:id at the knee',
        '',
        profileMarkdown('app process, `node --cpu-prof`', http.profile),
      );
    }
  }

  const login = results.login;
  if (login !== undefined) {
    const l = login.login;
    sections.push(
      '## POST /auth/login against the argon2 ceiling',
      '',
      `One argon2id verification (OWASP: m=19 MiB, t=2, p=1) takes **${fmt(l.ceiling.singleVerifyMs, 1)} ms** on its own here ` +
        `(median of ${l.ceiling.samples}, p90 ${fmt(l.ceiling.singleVerifyP90Ms, 1)} ms), so ${l.ceiling.cores} cores can do at most ` +
        `**${fmt(l.ceiling.ceilingPerSecond, 1)} logins/s**. /health/live is probed at 50 req/s on its own connection during each run.`,
      '',
      "Because other developers' suites share the cores, the harness also measures, right before each login run, how many " +
        'verifications per second 2 parallel argon2 calls (HASH_CONCURRENCY) achieve on their own at that moment ("argon2 now").',
      '',
      '| c | 2xx logins/s | % of ceiling | argon2 now /s | % of argon2 now | p50 ms | p95 ms | p99 ms | non-2xx per run | DB query p95 ms | app event-loop delay p99 (worst 250 ms) | /health/live p50 / p99 / max ms |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...l.points
        .filter((p) => p.target === 'app')
        .map((p) => {
          const s = p.summary;
          return `| ${p.connections} | ${fmt(s.okPerSecond, 1)} | ${pct(s.okPerSecond / l.ceiling.ceilingPerSecond)} | ${fmt(p.argon2PerSecondNow, 1)} | ${pct(s.okPerSecond / num(p.argon2PerSecondNow))} | ${fmt(s.p50)} | ${fmt(s.p95)} | ${fmt(s.p99)} | ${fmt(s.non2xxPerRun)} | ${fmt(s.queryP95Ms, 2)} | ${fmt(s.eventLoopLagP99Ms, 1)} ms | ${fmt(p.probe.p50, 1)} / ${fmt(p.probe.p99, 1)} / ${fmt(p.probe.max, 1)} |`;
        }),
      '',
    );
    const nice10 = l.points.filter((p) => p.target === 'app-nice10');
    if (nice10.length > 0) {
      const app = new Map(l.points.filter((p) => p.target === 'app').map((p) => [p.connections, p]));
      sections.push(
        '### Ablation: hashing threads below the event loop',
        '',
        'The same sweep on a second app with `HASH_THREAD_NICE=10` (its argon2 threads at nice 10, below the event loop), ' +
          'measured right after the app (nice 0, the default) at each level.',
        '',
        '| c | 2xx logins/s nice 0 / nice 10 | /health/live p99 ms nice 0 / nice 10 | app event-loop delay p99 ms nice 0 / nice 10 | non-2xx per run nice 0 / nice 10 |',
        '|---:|---:|---:|---:|---:|',
        ...nice10.map((p) => {
          const a = app.get(p.connections);
          return `| ${p.connections} | ${fmt(a?.summary.okPerSecond, 1)} / ${fmt(p.summary.okPerSecond, 1)} | ${fmt(a?.probe.p99, 1)} / ${fmt(p.probe.p99, 1)} | ${fmt(a?.summary.eventLoopLagP99Ms, 1)} / ${fmt(p.summary.eventLoopLagP99Ms, 1)} | ${fmt(a?.summary.non2xxPerRun)} / ${fmt(p.summary.non2xxPerRun)} |`;
        }),
        '',
      );
    }
    if (login.profile !== undefined)
      sections.push(profileMarkdown('app process during login saturation', login.profile));
  }

  const markdown = `${sections.join('\n')}\n`;
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  fs.writeFileSync(path.join(RESULTS_DIR, 'report.md'), markdown);
  if (chart !== undefined) fs.writeFileSync(path.join(RESULTS_DIR, 'chart.svg'), chart);
  fs.writeFileSync(path.join(RESULTS_DIR, 'readme-table.md'), `${readmeTable(results)}\n`);
  return { markdown, chart };
}
