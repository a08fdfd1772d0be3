/**
 * npm run bench:isolation — what test isolation costs: the same database tests run under
 * (a) a transaction rolled back after each test (the harness default), (b) TRUNCATE … RESTART
 * IDENTITY CASCADE after each test, and (c) dropping and re-migrating the schema after each test.
 *
 * Two test sets: the benchmark's own 240 small repository tests (bench/isolation/*.spec.ts), whose
 * run time is mostly isolation, and the project's real database suites (test/integration, test/e2e),
 * whose run time is mostly argon2 and app start-up. Rollback and truncate run twice, interleaved.
 * Writes bench/results/isolation.md.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

type Mode = 'rollback' | 'truncate' | 'recreate';

interface Run {
  readonly set: string;
  readonly mode: Mode;
  readonly wallMs: number;
  readonly overheads: number[];
  readonly passed: boolean;
}

const SETS = {
  'benchmark suite (240 repository tests)': ['--config', 'bench/isolation/vitest.config.ts'],
  'project database suites (test/integration, test/e2e)': ['test/integration', 'test/e2e'],
} as const;

const env = {
  ...process.env,
  TEST_DATA_DIR: path.resolve('.data/bench-isolation'),
  TEST_EMBEDDED_PG_PORT: process.env.TEST_EMBEDDED_PG_PORT ?? '54395',
};

function runOnce(set: keyof typeof SETS, mode: Mode): Run {
  const statsFile = path.join(os.tmpdir(), `isolation-${process.pid}-${mode}-${Date.now()}.txt`);
  fs.writeFileSync(statsFile, '');
  const started = performance.now();
  const result = spawnSync('npx', ['vitest', 'run', ...SETS[set]], {
    env: { ...env, TEST_ISOLATION: mode, TEST_ISOLATION_STATS: statsFile, NO_COLOR: '1', FORCE_COLOR: '0' },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const wallMs = performance.now() - started;
  const overheads = fs
    .readFileSync(statsFile, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map(Number);
  fs.rmSync(statsFile, { force: true });
  const summary = /Tests\s+.*$/m.exec(result.stdout)?.[0] ?? 'no summary';
  process.stderr.write(
    `${set} / ${mode}: ${(wallMs / 1000).toFixed(1)} s, ${overheads.length} tests measured, ${summary}\n`,
  );
  return { set, mode, wallMs, overheads, passed: result.status === 0 };
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

const runs: Run[] = [];
for (const set of Object.keys(SETS) as (keyof typeof SETS)[]) {
  for (const mode of ['rollback', 'truncate', 'rollback', 'truncate', 'recreate'] as const)
    runs.push(runOnce(set, mode));
}

const lines: string[] = [];
const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
lines.push('# Test isolation: rollback vs truncate vs recreate');
lines.push('');
lines.push(
  `Measured ${new Date().toISOString()} on ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), ` +
    `Node ${process.version}, commit ${commit}, embedded PostgreSQL. Command: \`npm run bench:isolation\`.`,
);
lines.push(
  "Per-test overhead is the harness's own work around each test (open + roll back, or TRUNCATE, or drop + migrate), measured inside the fixture.",
);
lines.push('');
for (const set of Object.keys(SETS) as (keyof typeof SETS)[]) {
  lines.push(`## ${set}`);
  lines.push('');
  lines.push('| mode | tests | suite wall time (best of runs) | per-test overhead median | p95 | all passed |');
  lines.push('|---|---|---|---|---|---|');
  const best: Partial<Record<Mode, number>> = {};
  const medians: Partial<Record<Mode, number>> = {};
  for (const mode of ['rollback', 'truncate', 'recreate'] as const) {
    const ofMode = runs.filter((run) => run.set === set && run.mode === mode);
    const overheads = ofMode.flatMap((run) => run.overheads);
    best[mode] = Math.min(...ofMode.map((run) => run.wallMs));
    medians[mode] = quantile(overheads, 0.5);
    lines.push(
      `| ${mode} | ${String(ofMode[0]?.overheads.length ?? 0)} | ${((best[mode] ?? 0) / 1000).toFixed(2)} s | ` +
        `${(medians[mode] ?? 0).toFixed(2)} ms | ${quantile(overheads, 0.95).toFixed(2)} ms | ${ofMode.every((run) => run.passed) ? 'yes' : 'no'} |`,
    );
  }
  lines.push('');
  lines.push(
    `Truncate / rollback: suite ${((best.truncate ?? 0) / (best.rollback ?? 1)).toFixed(2)}×, ` +
      `per-test overhead ${((medians.truncate ?? 0) / (medians.rollback ?? 1)).toFixed(1)}×. ` +
      `Recreate / rollback: suite ${((best.recreate ?? 0) / (best.rollback ?? 1)).toFixed(2)}×.`,
  );
  lines.push('');
}
fs.mkdirSync('bench/results', { recursive: true });
fs.writeFileSync('bench/results/isolation.md', `${lines.join('\n')}\n`);
process.stdout.write(`${lines.join('\n')}\n`);
