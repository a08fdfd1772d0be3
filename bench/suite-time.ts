/**
 * `node bench/suite-time.ts [--rounds N] label=dir[:vitest args] ...`: the wall time of the test
 * suite in several checkouts (or with several vitest settings, or `NAME=value` environment
 * variables among the args), side by side on the same machine, alternating A B A B so the
 * machine's drift falls on every variant alike. Each run is
 * `npx vitest run --reporter=json` in that checkout, wrapped in /usr/bin/time for the CPU the
 * suite and its children used. Writes bench/results/suite-time.json and suite-time-runs.md.
 *
 * `node bench/suite-time.ts --report` re-renders the markdown from the JSON; `--append` adds the runs
 * of this invocation to those already in it (a later round of the same labels).
 *
 * @example
 * ```sh
 * git worktree add ../before bfeb8d0 && (cd ../before && npm ci)
 * node bench/suite-time.ts --rounds 2 before=../before after=. after-2-workers=.:--maxWorkers=2
 * ```
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const RESULTS = path.join(ROOT, 'bench/results');

interface Variant {
  readonly label: string;
  readonly dir: string;
  readonly args: readonly string[];
  /** Environment variables set for this variant's run (`NAME=value` among its args). */
  readonly env?: Readonly<Record<string, string>>;
}

interface Run {
  readonly label: string;
  readonly round: number;
  readonly commit: string;
  readonly startedAt: string;
  readonly wallSeconds: number;
  readonly cpuSeconds: number | null;
  readonly loadBefore: number;
  readonly files: number;
  readonly tests: number;
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
  /** Seconds per test file (endTime - startTime of vitest's report), slowest first. */
  readonly slowest: readonly { file: string; seconds: number; tests: number }[];
  readonly fileSecondsSum: number;
  /** Each failed test, with the first line of its failure. */
  readonly failures: readonly string[];
}

interface VitestReport {
  numTotalTests: number;
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  testResults: {
    name: string;
    startTime: number;
    endTime: number;
    assertionResults: { fullName: string; status: string; failureMessages?: string[] }[];
  }[];
}

function parseArgs(argv: readonly string[]): { rounds: number; variants: Variant[] } {
  let rounds = 1;
  const variants: Variant[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--rounds') {
      rounds = Number(argv[++i]);
      continue;
    }
    const match = /^([\w.-]+)=([^:]+)(?::(.*))?$/.exec(arg);
    if (!match) throw new Error(`expected label=dir[:vitest args], got ${arg}`);
    const [, label = '', dir = '', given] = match;
    const words = given ? given.split(/\s+/).filter(Boolean) : [];
    const isEnv = (word: string) => /^[A-Z][A-Z0-9_]*=/.test(word);
    const env = Object.fromEntries(
      words.filter(isEnv).map((word) => [word.split('=')[0], word.slice(word.indexOf('=') + 1)]),
    );
    variants.push({ label, dir: path.resolve(dir), args: words.filter((word) => !isEnv(word)), env });
  }
  if (variants.length === 0 || !(rounds >= 1))
    throw new Error('usage: bench/suite-time.ts [--rounds N] label=dir[:args] ...');
  return { rounds, variants };
}

function run(
  command: string,
  args: readonly string[],
  cwd: string,
  env: Readonly<Record<string, string>> = {},
): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('error', reject);
    child.on('close', (code) => {
      resolve({ code: code ?? 1, output });
    });
  });
}

async function measure(variant: Variant, round: number): Promise<Run> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'suite-time-'));
  const report = path.join(tmp, 'report.json');
  const times = path.join(tmp, 'time.txt');
  const commit = (await run('git', ['rev-parse', '--short', 'HEAD'], variant.dir)).output.trim();
  const vitest = ['vitest', 'run', '--reporter=json', `--outputFile=${report}`, ...variant.args];
  const useTime = fs.existsSync('/usr/bin/time');
  const loadBefore = os.loadavg()[0] ?? 0;
  const startedAt = new Date().toISOString();
  const started = performance.now();
  const { output } = useTime
    ? await run('/usr/bin/time', ['-f', '%U %S', '-o', times, 'npx', ...vitest], variant.dir, variant.env)
    : await run('npx', vitest, variant.dir, variant.env);
  const wallSeconds = (performance.now() - started) / 1000;
  const cpu = useTime ? fs.readFileSync(times, 'utf8').trim().split('\n').pop()?.split(' ').map(Number) : undefined;
  if (!fs.existsSync(report)) throw new Error(`${variant.label}: vitest wrote no report\n${output.slice(-2000)}`);
  const json = JSON.parse(fs.readFileSync(report, 'utf8')) as VitestReport;
  fs.rmSync(tmp, { recursive: true, force: true });
  const files = json.testResults.map((file) => ({
    file: path.relative(variant.dir, file.name),
    seconds: Math.round(file.endTime - file.startTime) / 1000,
    tests: file.assertionResults.length,
  }));
  return {
    label: variant.label,
    round,
    commit,
    startedAt,
    wallSeconds: Math.round(wallSeconds * 10) / 10,
    cpuSeconds: cpu ? Math.round(((cpu[0] ?? 0) + (cpu[1] ?? 0)) * 10) / 10 : null,
    loadBefore: Math.round(loadBefore * 100) / 100,
    files: files.length,
    tests: json.numTotalTests,
    passed: json.numPassedTests,
    failed: json.numFailedTests,
    skipped: json.numPendingTests + json.numTodoTests,
    slowest: [...files].sort((a, b) => b.seconds - a.seconds).slice(0, 10),
    fileSecondsSum: Math.round(files.reduce((sum, f) => sum + f.seconds, 0)),
    failures: json.testResults.flatMap((file) =>
      file.assertionResults
        .filter((test) => test.status === 'failed')
        .map(
          (test) =>
            `${path.relative(variant.dir, file.name)} > ${test.fullName}: ${(test.failureMessages?.[0] ?? '').split('\n')[0] ?? ''}`,
        ),
    ),
  };
}

function write(given: readonly Variant[], runs: readonly Run[]): void {
  // A label given twice (A B A in one round) is one variant.
  const variants = given.filter((v, i) => given.findIndex((w) => w.label === v.label) === i);
  fs.writeFileSync(
    path.join(RESULTS, 'suite-time.json'),
    `${JSON.stringify({ cpus: os.availableParallelism(), variants, runs }, null, 2)}\n`,
  );
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
  };
  const first = variants[0]?.label;
  const medianWall = (label: string) => median(runs.filter((r) => r.label === label).map((r) => r.wallSeconds));
  const lines = [
    '# Suite time, side by side (`node bench/suite-time.ts`)',
    '',
    `Machine: ${os.availableParallelism()} cores. Runs alternate between the variants, in the order below.`,
    '',
    '| run | variant | commit | vitest args | started (UTC) | load before | wall | CPU (user+sys) | files | tests | passed | failed | skipped | wall per test |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...runs.map((r, i) => {
      const variant = variants.find((v) => v.label === r.label);
      const given = variant?.args ?? [];
      const env = Object.entries(variant?.env ?? {}).map(([name, value]) => `${name}=${value}`);
      const args = [...env, given.length > 3 ? `${given.length} test files` : given.join(' ')].join(' ').trim() || '—';
      return `| ${i + 1} | ${r.label} | ${r.commit} | ${args} | ${r.startedAt.slice(11, 19)} | ${r.loadBefore} | ${r.wallSeconds} s | ${r.cpuSeconds ?? '?'} s | ${r.files} | ${r.tests} | ${r.passed} | ${r.failed} | ${r.skipped} | ${((r.wallSeconds / Math.max(1, r.tests)) * 1000).toFixed(0)} ms |`;
    }),
    '',
    '| variant | median wall | ÷ ' + (first ?? '?') + ' |',
    '|---|---|---|',
    ...variants.map((v) => {
      const wall = medianWall(v.label);
      return `| ${v.label} | ${wall.toFixed(1)} s | ${first === undefined ? '?' : (wall / medianWall(first)).toFixed(2)} |`;
    }),
    '',
    '## Slowest files (seconds, tests) of each variant’s last run',
    '',
  ];
  for (const v of variants) {
    const last = runs.filter((r) => r.label === v.label).pop();
    if (last === undefined) continue;
    lines.push(
      `- **${v.label}** (sum over files ${last.fileSecondsSum} s of ${last.wallSeconds} s wall): ${last.slowest
        .map((f) => `${f.file} ${f.seconds} s (${f.tests})`)
        .join(', ')}`,
    );
  }
  const failed = runs.filter((r) => r.failures.length > 0);
  if (failed.length > 0) {
    lines.push('', '## Failures', '');
    for (const r of failed) for (const f of r.failures) lines.push(`- run ${runs.indexOf(r) + 1} (${r.label}): ${f}`);
  }
  lines.push('');
  fs.writeFileSync(path.join(RESULTS, 'suite-time-runs.md'), lines.join('\n'));
}

/** The runs committed in bench/results/suite-time.json (older ones recorded no failures). */
function readSaved(): { variants: Variant[]; runs: Run[] } {
  const saved = JSON.parse(fs.readFileSync(path.join(RESULTS, 'suite-time.json'), 'utf8')) as {
    variants: Variant[];
    runs: (Omit<Run, 'failures'> & Partial<Pick<Run, 'failures'>>)[];
  };
  return { variants: saved.variants, runs: saved.runs.map((r) => ({ ...r, failures: r.failures ?? [] })) };
}

if (process.argv[2] === '--report') {
  // Re-render the markdown from the committed JSON.
  const saved = readSaved();
  write(saved.variants, saved.runs);
  process.exit(0);
}

// `--append`: add this invocation's runs to the committed ones (same labels, later rounds).
const append = process.argv.includes('--append');
const { rounds, variants: given } = parseArgs(process.argv.slice(2).filter((arg) => arg !== '--append'));
const saved = append ? readSaved() : { variants: [], runs: [] };
const variants = [...saved.variants, ...given.filter((v) => !saved.variants.some((s) => s.label === v.label))];
const runs: Run[] = [...saved.runs];
const firstRound = Math.max(0, ...runs.map((r) => r.round)) + 1;
for (let round = firstRound; round < firstRound + rounds; round++) {
  for (const variant of given) {
    process.stderr.write(`[suite-time] round ${round}: ${variant.label} in ${variant.dir} ${variant.args.join(' ')}\n`);
    const result = await measure(variant, round);
    process.stderr.write(
      `[suite-time] ${variant.label}: ${result.wallSeconds} s wall, ${result.tests} tests, ${result.failed} failed\n`,
    );
    runs.push(result);
    write(variants, runs);
  }
}
