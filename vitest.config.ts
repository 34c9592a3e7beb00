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
  },
});
