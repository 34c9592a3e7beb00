import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { inject } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.ts';

/**
 * The suite runs on embedded PGlite by default, and on a real PostgreSQL when
 * TEST_DATABASE_URL is set (CI does both). Tests make their own rows with
 * random names, so files can share one PostgreSQL database.
 */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || undefined;

/**
 * The dump of a migrated embedded database that the suite's setup made (setup/pglite-snapshot.ts), read once per
 * process; none on PostgreSQL.
 */
let snapshot: Blob | undefined;
const pgliteSnapshot = () => {
  const file = inject('pgliteSnapshot');
  if (file !== '') snapshot ??= new Blob([readFileSync(file)]);
  return snapshot;
};

export async function openTestDatabase(): Promise<Database> {
  const database = await openDatabase({ databaseUrl: TEST_DATABASE_URL, dataDir: 'memory://', loadDataDir: pgliteSnapshot() });
  // A copy of the snapshot is migrated already: this only checks it.
  await database.migrate();
  return database;
}

/**
 * A second handle on the same data, as a second server instance would have:
 * its own pool on PostgreSQL; on PGlite (one process only) the same handle.
 */
export async function openSecondHandle(first: Database): Promise<{ database: Database; close: () => Promise<void> }> {
  if (TEST_DATABASE_URL === undefined) return { database: first, close: async () => undefined };
  const database = await openDatabase({ databaseUrl: TEST_DATABASE_URL });
  return { database, close: () => database.close() };
}

/**
 * A database of the test's own. Every server on a database sweeps its
 * background jobs (text extraction, indexing, recovery of responses left by
 * dead instances) and takes any row that is due, as instances of one
 * deployment do; a test whose outcome depends on which server takes a job, or
 * whose servers sweep with shorter timings than the others', needs a database
 * no other file's server uses. On PostgreSQL a new database, dropped on close;
 * on PGlite the usual one.
 */
export async function openOwnDatabase(): Promise<Database> {
  if (TEST_DATABASE_URL === undefined) return openTestDatabase();
  const own = await createOwnDatabase(TEST_DATABASE_URL);
  const database = await openDatabase({ databaseUrl: own.url });
  await database.migrate();
  const close = database.close.bind(database);
  return Object.assign(database, {
    async close() {
      await close();
      await own.drop();
    },
  });
}

/** A new, empty PostgreSQL database beside the one at `baseUrl`: its URL, and how to drop it. */
export async function createOwnDatabase(baseUrl: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `eugpt_own_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  const admin = async (query: string) => {
    const client = new pg.Client({ connectionString: baseUrl });
    await client.connect();
    try {
      await client.query(query);
    } finally {
      await client.end();
    }
  };
  await admin(`create database ${name}`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`drop database if exists ${name} with (force)`) };
}
