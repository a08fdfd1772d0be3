import os from 'node:os';
import path from 'node:path';
import { defineConfig } from 'vitest/config';

// Node's on-disk compile cache for the processes the suite starts (real servers, npm run migrate,
// db:check and the other CLIs): each compiled the same megabytes of JavaScript again, about a
// third of its 1.2-1.5 s start-up (importing src/app.ts: 0.86-0.94 s with the cache against
// 1.17-1.48 s without, four runs each, alternating, on a busy machine). The cache keys on each
// file's contents, so a changed file is compiled afresh. Coverage is not affected: it covers src/
// in the workers, which vitest evaluates with vm.runInThisContext, outside Node's cache.
// NODE_COMPILE_CACHE set by the caller wins.
process.env.NODE_COMPILE_CACHE ??= path.resolve(import.meta.dirname, 'node_modules/.cache/node-compile-cache');

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Left out of plain `npm test`, which needs nothing but Node and npm:
    // - the process-level fault scenarios (a server killed, a database stopped; about a minute),
    //   run by `npm run test:reliability`;
    // - the scale-out scenarios, which need Redis, PgBouncer and Debian's PostgreSQL binaries (pg_basebackup),
    //   run by `npm run test:scale-out` (with the change feed's PgBouncer case, skipped without SCALE_OUT).
    // .ci/run runs both after the main suite.
    exclude: [
      ...(process.env.RELIABILITY
        ? []
        : ['test/reliability/{database-outage,shutdown,ctrl-c,test-clusters,crash,email-crash,email-server}.test.ts']),
      ...(process.env.SCALE_OUT
        ? []
        : [
            'test/platform/server/two-instances.test.ts',
            'test/platform/limits/{rate-limit-store,throttle-store}.test.ts',
            'test/platform/db/read-replicas.test.ts',
          ]),
    ],
    globalSetup: ['test/helpers/global-setup.ts'],
    // Each worker clones its own database from the migrated template (see test/helpers/database.ts).
    pool: 'forks',
    // A worker runs its files one after another in one module graph instead of importing fastify,
    // kysely and the whole app again for every file: the suite's summed import time went from 47 s
    // to 9 s, and the whole suite took 225.9 s instead of 263.9 s with about three quarters of the
    // CPU (medians of two alternating runs on an earlier, slower machine,
    // bench/results/suite-time-runs-previous-machine.md). What a file could hand
    // the next is what the harness checks: its database is cloned afresh, the `database` fixture
    // fails a file that leaves rows or connections behind, and every app, pool and server is the
    // test's own and closed by it; environment stubs are undone after each test. Module state of
    // src/ is shared, so it must not depend on what an earlier file did (uuidv7Maker gives a test
    // its own clock).
    isolate: false,
    unstubEnvs: true,
    unstubGlobals: true,
    // At least two workers: the suite waits on PostgreSQL and child processes more than it
    // computes (one worker kept about one of two cores busy), so on 2 cores a second worker halves
    // the wall time where vitest's default (cores less one) would run one. More than vitest's
    // default made tests time out on a loaded 2-core machine (bench/results/suite-time.md).
    maxWorkers: Math.max(2, os.availableParallelism() - 1),
    testTimeout: 20_000,
    hookTimeout: 60_000,
    // `npm test -- --coverage` (as .ci/run runs it, with every suite enabled) fails below these.
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts', 'tools/**/*.ts'],
      // Process entry points and what only they run (src/platform/cli: the one-line failure report, the
      // CLI's database target) run as child processes in the tests, where v8 coverage cannot follow them.
      exclude: ['src/server.ts', 'src/platform/cli/**', 'tools/cli/**'],
      reporter: ['text-summary', 'html', 'json-summary'],
      thresholds: { lines: 90, branches: 88 },
    },
  },
});
