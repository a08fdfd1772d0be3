import { defineConfig } from 'vitest/config';

// The isolation benchmark's own suite: 240 small database tests, run by bench/isolation/run.ts
// under each isolation mode of test/helpers/database.ts.
export default defineConfig({
  test: {
    include: ['bench/isolation/*.spec.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});
