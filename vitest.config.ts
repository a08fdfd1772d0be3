import os from 'node:os';
import { defineConfig } from 'vitest/config';

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
        : ['test/reliability/{database-outage,shutdown,crash,email-crash,email-server}.test.ts']),
      ...(process.env.SCALE_OUT
        ? []
        : [
            'test/e2e/{two-instances,rate-limit-store}.test.ts',
            'test/integration/{read-replicas,throttle-store}.test.ts',
          ]),
    ],
    globalSetup: ['test/helpers/global-setup.ts'],
    // Each worker clones its own database from the migrated template (see test/helpers/database.ts).
    pool: 'forks',
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
      include: ['src/**/*.ts'],
      // Process entry points run as child processes in the tests (migrate, db:check, the real server),
      // where v8 coverage cannot follow them.
      exclude: ['src/server.ts', 'src/cli/**'],
      reporter: ['text-summary', 'html', 'json-summary'],
      thresholds: { lines: 90, branches: 88 },
    },
  },
});
