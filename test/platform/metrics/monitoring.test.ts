import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { createDatabase, createPool } from '../../../src/platform/db/database.ts';
import { AppMetrics } from '../../../src/platform/metrics/metrics.ts';
import { testApp } from '../../helpers/app.ts';
import { describe, expect, isolatedDatabase, TEST_POOL, test } from '../../helpers/database.ts';
import { bearer, login, PASSWORD, postJson } from '../../helpers/http.ts';
import { parseExposition } from './prometheus-text.ts';
import { MaintenanceMetrics } from '../../../src/platform/jobs/maintenance-metrics.ts';

const MONITORING = path.resolve(import.meta.dirname, '../../../monitoring');
const ALERTS_FILE = path.join(MONITORING, 'alerts.yml');
const ALERT_TESTS_FILE = path.join(MONITORING, 'alerts.test.yml');
/** The maintenance alerts' tests, which span more than a day (a coarser evaluation interval). */
const MAINTENANCE_ALERT_TESTS_FILE = path.join(MONITORING, 'alerts.maintenance.test.yml');
const DASHBOARD_FILE = path.join(MONITORING, 'grafana-dashboard.json');

const PROMQL_KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'bool',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression selects: every identifier that is not a function call, a
 * keyword, a label (inside `{…}` or a grouping clause), a duration or a string. Grafana variables
 * (`$__rate_interval`, `$job`) only appear where those are removed anyway.
 *
 * @example
 * ```ts
 * metricNamesIn('sum by (le) (rate(a_bucket{job="x"}[5m])) / b'); // ['a_bucket', 'b']
 * ```
 */
function metricNamesIn(expression: string): string[] {
  const stripped = expression
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^{}]*\}/g, ' ')
    .replace(/\[[^[\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/\d+(?:\.\d+)?(?:e[+-]?\d+)?[a-z]*|[a-zA-Z_:][a-zA-Z0-9_:]*/gi)) {
    const token = match[0];
    if (/^\d/.test(token) || PROMQL_KEYWORDS.has(token.toLowerCase())) continue;
    const after = stripped.slice(match.index + token.length);
    if (/^\s*\(/.test(after)) continue; // a function
    names.add(token);
  }
  return [...names];
}

/** Grafana's `label_values(metric{…}, label)`: the metric; `label_values(label)` names none. */
function metricNamesInVariable(query: string): string[] {
  const match = /label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{[^}]*\})?\s*,/.exec(query);
  return match?.[1] === undefined ? [] : [match[1]];
}

/**
 * Every sample name a real scrape of the application declares, after a short scripted run: each
 * family's own name and, for histograms and summaries, their `_bucket`, `_sum` and `_count`.
 */
async function exportedMetricNames(onTestFinished: (fn: () => Promise<void>) => void): Promise<Set<string>> {
  const { url } = await isolatedDatabase(onTestFinished);
  const metrics = new AppMetrics();
  const pool = createPool({ ...TEST_POOL, url });
  const db = createDatabase(
    { ...TEST_POOL, url },
    {
      pool,
      onQuery: (event) => {
        metrics.observeQuery(event);
      },
    },
  );
  onTestFinished(async () => {
    await db.destroy();
  });
  // As src/server.ts registers them when the maintenance job runs in the process.
  new MaintenanceMetrics(metrics.registry);
  const app = await testApp(db, onTestFinished, {
    metrics,
    poolStats: () => ({
      total: pool.totalCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
      max: TEST_POOL.poolMax,
    }),
  });
  await postJson(app, '/auth/register', { email: 'ops@example.com', password: PASSWORD, name: 'Ops' });
  const session = await login(app, 'ops@example.com');
  await app.inject({ url: '/auth/me', headers: bearer(session.accessToken) });

  const response = await app.inject({ url: '/metrics' });
  expect(response.statusCode).toBe(200);
  const names = new Set<string>();
  for (const family of parseExposition(response.body).values()) {
    names.add(family.name);
    if (family.type === 'histogram')
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(family.name + suffix);
    if (family.type === 'summary') for (const suffix of ['_sum', '_count']) names.add(family.name + suffix);
  }
  return names;
}

interface AlertRule {
  readonly alert?: unknown;
  readonly record?: unknown;
  readonly expr?: unknown;
  readonly for?: unknown;
  readonly labels?: Record<string, unknown>;
  readonly annotations?: Record<string, unknown>;
}

async function alertRules(): Promise<AlertRule[]> {
  const document = parseYaml(await fs.readFile(ALERTS_FILE, 'utf8')) as {
    groups?: Array<{ name?: unknown; rules?: AlertRule[] }>;
  };
  expect(Array.isArray(document.groups)).toBe(true);
  const groups = document.groups ?? [];
  for (const group of groups) {
    expect(group.name).toEqual(expect.any(String));
    expect(group.rules?.length).toBeGreaterThan(0);
  }
  return groups.flatMap((group) => group.rules ?? []);
}

interface Panel {
  readonly id?: unknown;
  readonly type?: unknown;
  readonly title?: unknown;
  readonly datasource?: { readonly uid?: unknown };
  readonly gridPos?: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  readonly targets?: ReadonlyArray<{ readonly expr?: unknown; readonly refId?: unknown }>;
  readonly panels?: readonly Panel[];
}

interface Dashboard {
  readonly title?: unknown;
  readonly uid?: unknown;
  readonly schemaVersion?: unknown;
  readonly panels?: readonly Panel[];
  readonly templating?: {
    readonly list?: ReadonlyArray<{ readonly name?: unknown; readonly type?: unknown; readonly query?: unknown }>;
  };
}

async function dashboard(): Promise<Dashboard> {
  return JSON.parse(await fs.readFile(DASHBOARD_FILE, 'utf8')) as Dashboard;
}

function dashboardExpressions(board: Dashboard): Array<{ panel: string; expr: string }> {
  const panels = (board.panels ?? []).flatMap((panel) => [panel, ...(panel.panels ?? [])]);
  return panels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({ panel: String(panel.title), expr: String(target.expr) })),
  );
}

describe('reading metric names out of PromQL (the check below is only as good as this)', () => {
  test('finds selected metrics and skips functions, labels, groupings, durations, strings, keywords and Grafana variables', () => {
    expect(
      metricNamesIn(
        'histogram_quantile(0.95, sum by (le, operation) (rate(db_query_duration_seconds_bucket{job=~"$job", le!="x"}[$__rate_interval])))',
      ),
    ).toEqual(['db_query_duration_seconds_bucket']);
    expect(
      metricNamesIn(
        'sum(rate(a_total{s="5xx"}[5m] offset 1h)) / on (job) group_left (instance) sum(b) > bool 0.01 and c unless d',
      ),
    ).toEqual(['a_total', 'b', 'c', 'd']);
    expect(metricNamesIn('max by (instance) (avg_over_time(x[5m:1m])) > 1e3')).toEqual(['x']);
    expect(metricNamesInVariable('label_values(db_pool_connections_max{job=~"$job"}, instance)')).toEqual([
      'db_pool_connections_max',
    ]);
    expect(metricNamesInVariable('label_values(job)')).toEqual([]);
  });
});

describe('monitoring/alerts.yml', () => {
  test('has the success criteria as alerts: p95 query time > 100 ms, pool > 80% busy, clients waiting for 1 min, 5xx rate, an email waiting 15 min', async () => {
    const rules = await alertRules();
    const byName = new Map(rules.map((rule) => [String(rule.alert), rule]));
    for (const rule of rules) {
      expect(rule.alert, 'every rule is an alert').toEqual(expect.any(String));
      expect(rule.expr).toEqual(expect.any(String));
      expect(['warning', 'critical']).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary).toEqual(expect.any(String));
      expect(rule.annotations?.description).toEqual(expect.any(String));
    }
    expect(byName.size).toBe(rules.length);

    const squash = (expr: unknown) => String(expr).replace(/\s+/g, ' ').trim();
    expect(squash(byName.get('DatabaseQueryP95Slow')?.expr)).toMatch(
      /^histogram_quantile\(0\.95, sum by \([^)]*\ble\b[^)]*\) \(rate\(db_query_duration_seconds_bucket\[\w+\]\)\)\) > 0\.1$/,
    );
    expect(squash(byName.get('DatabasePoolUtilisationHigh')?.expr)).toMatch(/db_pool_utilisation_ratio.* > 0\.8$/);
    expect(squash(byName.get('DatabasePoolClientsWaiting')?.expr)).toMatch(/db_pool_clients_waiting\) > 0$/);
    expect(byName.get('DatabasePoolClientsWaiting')?.for).toBe('1m');
    expect(squash(byName.get('HttpServerErrorRateHigh')?.expr)).toContain(
      'http_request_duration_seconds_count{status_code="5xx"}',
    );
    // Issue 17: the oldest pending email older than 15 minutes, and emails given up.
    expect(squash(byName.get('EmailOutboxStalled')?.expr)).toBe(
      'max by (job) (email_outbox_oldest_pending_age_seconds) > 900',
    );
    expect(squash(byName.get('EmailDeliveryFailed')?.expr)).toMatch(/increase\(email_failed_total\[\w+\]\)\) > 0$/);
  });

  test('names only metrics a real scrape of the application exports', async ({ onTestFinished }) => {
    const exported = await exportedMetricNames(onTestFinished);
    const rules = await alertRules();
    const unknown = rules.flatMap((rule) =>
      metricNamesIn(String(rule.expr))
        .filter((name) => !exported.has(name))
        .map((name) => `${String(rule.alert)}: ${name}`),
    );
    expect(unknown).toEqual([]);
    expect(rules.flatMap((rule) => metricNamesIn(String(rule.expr))).length).toBeGreaterThanOrEqual(rules.length);
  });

  test.runIf(promtoolAvailable())('passes `promtool check rules` and its unit tests in alerts.test.yml', () => {
    const check = spawnSync('promtool', ['check', 'rules', ALERTS_FILE], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const unit = spawnSync('promtool', ['test', 'rules', ALERT_TESTS_FILE, MAINTENANCE_ALERT_TESTS_FILE], {
      encoding: 'utf8',
    });
    expect(unit.status, unit.stdout + unit.stderr).toBe(0);
  });
});

describe('monitoring/grafana-dashboard.json', () => {
  test('is a Grafana dashboard with rows for the pool, queries, HTTP and auth, each panel laid out without overlap', async () => {
    const board = await dashboard();
    expect(board).toMatchObject({
      title: expect.any(String),
      uid: expect.any(String),
      schemaVersion: expect.any(Number),
    });
    const panels = board.panels ?? [];
    const rows = panels.filter((panel) => panel.type === 'row').map((panel) => panel.title);
    expect(rows).toEqual(expect.arrayContaining(['Database pool', 'Queries', 'HTTP', 'Auth', 'Email']));

    const ids = panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const panel of panels) {
      const grid = panel.gridPos;
      expect(grid, `gridPos of ${String(panel.title)}`).toBeDefined();
      if (grid === undefined) continue;
      expect(grid.x + grid.w).toBeLessThanOrEqual(24);
      for (let x = grid.x; x < grid.x + grid.w; x++) {
        for (let y = grid.y; y < grid.y + grid.h; y++) {
          expect(cells.has(`${x},${y}`), `${String(panel.title)} overlaps another panel at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
      if (panel.type === 'row') continue;
      expect(panel.targets?.length, `targets of ${String(panel.title)}`).toBeGreaterThan(0);
      expect(panel.datasource?.uid).toBe('${datasource}');
      const refIds = (panel.targets ?? []).map((target) => target.refId);
      expect(new Set(refIds).size).toBe(refIds.length);
    }
    const variables = (board.templating?.list ?? []).map((variable) => variable.name);
    expect(variables).toEqual(expect.arrayContaining(['datasource', 'job', 'instance']));
  });

  test("charts every one of the application's own metrics, and names only metrics a real scrape exports", async ({
    onTestFinished,
  }) => {
    const exported = await exportedMetricNames(onTestFinished);
    const board = await dashboard();
    const expressions = dashboardExpressions(board);
    const variableQueries = (board.templating?.list ?? []).map((variable) =>
      typeof variable.query === 'object' && variable.query !== null
        ? String((variable.query as { query?: unknown }).query)
        : String(variable.query),
    );

    const referenced = [
      ...expressions.flatMap(({ panel, expr }) => metricNamesIn(expr).map((name) => ({ where: panel, name }))),
      ...variableQueries.flatMap((query) =>
        metricNamesInVariable(query).map((name) => ({ where: `variable ${query}`, name })),
      ),
    ];
    expect(referenced.filter(({ name }) => !exported.has(name)).map(({ where, name }) => `${where}: ${name}`)).toEqual(
      [],
    );

    const charted = new Set(referenced.map(({ name }) => name.replace(/_(?:bucket|sum|count)$/, '')));
    for (const name of [
      'db_pool_connections',
      'db_pool_connections_idle',
      'db_pool_clients_waiting',
      'db_pool_connections_max',
      'db_pool_utilisation_ratio',
      'db_query_duration_seconds',
      'db_errors_total',
      'db_transaction_retries_total',
      'http_request_duration_seconds',
      'auth_logins_total',
      'auth_refresh_total',
      'auth_rate_limited_total',
      'auth_password_hash_queue_depth',
      'email_sent_total',
      'email_failed_total',
      'email_send_retries_total',
      'email_skipped_total',
      'email_outbox_depth',
      'email_outbox_oldest_pending_age_seconds',
    ]) {
      expect(charted, `a panel for ${name}`).toContain(name);
    }
  });

  test.runIf(promtoolAvailable())(
    'has panel expressions that PromQL parses (checked by promtool as recording rules)',
    async ({ onTestFinished }) => {
      const expressions = dashboardExpressions(await dashboard());
      const rules = expressions.map(({ expr }, index) => ({
        record: `dashboard:expression_${index}`,
        expr: expr.replaceAll('$__rate_interval', '5m').replace(/\$\{?\w+\}?/g, '.*'),
      }));
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'dashboard-promql-'));
      onTestFinished(async () => {
        await fs.rm(dir, { recursive: true, force: true });
      });
      const file = path.join(dir, 'dashboard-rules.json');
      // JSON is YAML, so promtool reads it as a rule file.
      await fs.writeFile(file, JSON.stringify({ groups: [{ name: 'dashboard', rules }] }));
      const check = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
      expect(check.status, check.stdout + check.stderr).toBe(0);
      expect(check.stdout).toContain(`SUCCESS: ${rules.length} rules found`);
    },
  );
});

function promtoolAvailable(): boolean {
  return spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;
}
