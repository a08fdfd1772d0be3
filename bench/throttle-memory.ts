/**
 * The memory the in-memory abuse counters take (issue 33, item 4): the heap a `MemoryThrottleStore`
 * holds with N live keys, for each checkout given, side by side in one process (each checkout's
 * own store class), and how long filling and sweeping take. The keys are what a flood of failed
 * logins from distinct IPv6 /64s writes: per attempt, the per-address flood cap, the pair's
 * failures and the account's failures (the longest keys the server makes).
 *
 * ```sh
 * node --expose-gc bench/throttle-memory.ts main=/tmp/pgfb-main this=.
 * ```
 *
 * Writes bench/results/throttle-memory.md.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT_DIR, log } from './lib/environment.ts';
import { round } from './lib/stats.ts';

interface Store {
  increment(key: string, ttlMs: number): Promise<unknown>;
  close(): void;
}

const SIZES = (process.env.BENCH_KEYS ?? '10000,100000,200000').split(',').map(Number);

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect === undefined) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 3; i++) collect();
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 22);
}

/** Key `i` of a flood of failed logins from distinct /64s, in the spelling of this checkout's server. */
function keyOf(i: number, current: boolean): string {
  const address = `2001:db8:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}::/64`;
  const account = hash(`victim-${i % 1000}@example.com`);
  const kind = i % 3;
  if (current) {
    if (kind === 0) return `flood:login-ip:address:${address}`;
    if (kind === 1) return `throttle:fail:login:account:${account}:address:${address}`;
    return `throttle:fail:login:account:${hash(`victim-${i}@example.com`)}`;
  }
  if (kind === 0) return `login-ip:${address}`;
  if (kind === 1) return `throttle:fail:login:${account}:${address}`;
  return `throttle:fail:login:${hash(`victim-${i}@example.com`)}`;
}

async function measure(
  dir: string,
  size: number,
): Promise<{ bytes: number; fillMs: number; refused: number; current: boolean }> {
  const module = (await import(pathToFileURL(path.join(dir, 'src/platform/limits/throttle-store.ts')).href)) as {
    MemoryThrottleStore: new (options: unknown) => Store;
  };
  // This branch's store takes its bound; main's took only a clock (no bound at all).
  const current = fs.readFileSync(path.join(dir, 'src/platform/limits/throttle-store.ts'), 'utf8').includes('maxKeys');
  gc();
  const before = process.memoryUsage().heapUsed;
  const store = current ? new module.MemoryThrottleStore({ maxKeys: size }) : new module.MemoryThrottleStore(Date.now);
  const started = performance.now();
  let refused = 0;
  for (let i = 0; i < size; i++) await store.increment(keyOf(i, current), 15 * 60_000).catch(() => refused++);
  const fillMs = performance.now() - started;
  // One past the bound: refused by this branch, taken (growing) by main's.
  await store.increment(keyOf(size, current), 15 * 60_000).catch(() => refused++);
  gc();
  const bytes = process.memoryUsage().heapUsed - before;
  store.close();
  return { bytes, fillMs, refused, current };
}

async function main(): Promise<void> {
  const checkouts = process.argv.slice(2).map((arg) => {
    const [name = '', dir = ''] = arg.split('=');
    return { name, dir: path.resolve(dir) };
  });
  if (checkouts.length === 0) checkouts.push({ name: 'this', dir: ROOT_DIR });
  const rows: string[] = [];
  for (const size of SIZES) {
    for (const checkout of checkouts) {
      const result = await measure(checkout.dir, size);
      const perKey = result.bytes / size;
      log(`${checkout.name} ${size} keys: ${round(result.bytes / 2 ** 20, 1)} MiB, ${round(perKey, 0)} B/key`);
      rows.push(
        `| ${size.toLocaleString('en')} | ${checkout.name} | ${round(result.bytes / 2 ** 20, 1)} MiB | ${round(perKey, 0)} B | ` +
          `${round(result.fillMs, 0)} ms | ${result.current ? (result.refused > 0 ? 'refused (503)' : 'taken') : 'taken: no bound'} |`,
      );
    }
  }
  const lines = [
    '# Memory of the in-memory abuse counters (issue 33, item 4)',
    '',
    'The heap a `MemoryThrottleStore` holds with N live counters (after a full GC), each checkout measured in the same',
    'process. Keys: a flood of failed logins from distinct IPv6 /64s, a third each of per-address flood caps, pair',
    "failures and account failures, in each checkout's own spelling. main's flood caps lived apart, in",
    "@fastify/rate-limit's 5,000-key LRU per limiter (bounded by evicting, which reset victims' counters), and its",
    'failure counters had no bound at all; this branch keeps every counter in one store bounded at',
    'THROTTLE_MEMORY_MAX_KEYS (default 200,000), refusing new keys with 503 at the bound.',
    '',
    '```sh',
    `node --expose-gc bench/throttle-memory.ts ${checkouts.map((c) => `${c.name}=${displayPath(c.dir)}`).join(' ')}`,
    '```',
    '',
    `Measured ${new Date().toISOString().slice(0, 16)} UTC, Node ${process.version}, ${os.availableParallelism()} cores.`,
    '',
    '| keys | checkout | heap | per key | fill time | key N + 1 |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
  ];
  fs.writeFileSync(path.join(ROOT_DIR, 'bench/results/throttle-memory.md'), lines.join('\n'));
  log('wrote bench/results/throttle-memory.md');
}

await main();

/** A checkout's directory as the command line names it: relative inside this one, absolute outside. */
function displayPath(dir: string): string {
  const relative = path.relative(ROOT_DIR, dir);
  return relative === '' ? '.' : relative.startsWith('..') ? dir : relative;
}
