import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One migrated embedded database, copied by every test that opens one.
    globalSetup: ['test/setup/pglite-snapshot.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: a few forks keep PGlite start-up cost and Postgres connections bounded.
    pool: 'forks',
    maxWorkers: 2,
    // Each file in a fresh process. Sharing processes (isolate: false) ran the embedded suite in 181 s instead of
    // 310 s, but tests then see one another's process-wide state (the metrics registry's labels, for one) and flaked.
  },
});
