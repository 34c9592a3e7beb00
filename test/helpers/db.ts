import { openDatabase, type Database } from '../../src/db/client.ts';

/**
 * The suite runs on embedded PGlite by default, and on a real PostgreSQL when
 * TEST_DATABASE_URL is set (CI does both). Tests make their own rows with
 * random names, so files can share one PostgreSQL database.
 */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || undefined;

export async function openTestDatabase(): Promise<Database> {
  const database = await openDatabase({ databaseUrl: TEST_DATABASE_URL, dataDir: 'memory://' });
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
