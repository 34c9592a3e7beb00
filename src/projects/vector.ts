import { sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/client.ts';

/**
 * Whether this database can compare vectors itself (pgvector). Tried once
 * per database handle at start: `create extension if not exists vector`
 * succeeds on the embedded database (the extension ships with it) and on a
 * PostgreSQL that has pgvector installed and lets this role create it; on
 * any other, vectors are compared in the server (retrieve.ts).
 */

const found = new WeakMap<Db, Promise<boolean>>();

export function hasVector(db: Db): Promise<boolean> {
  let known = found.get(db);
  if (known === undefined) {
    known = (async () => {
      try {
        await db.execute(sql`create extension if not exists vector`);
      } catch {
        // Not installed, or not allowed: looked up below in case someone else created it.
      }
      try {
        return rowsOf(await db.execute(sql`select 1 from pg_extension where extname = 'vector'`)).length > 0;
      } catch {
        return false;
      }
    })();
    found.set(db, known);
  }
  return known;
}
