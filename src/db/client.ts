import { fileURLToPath } from 'node:url';
import type { PGlite } from '@electric-sql/pglite';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import type { SQL } from 'drizzle-orm';
import pg from 'pg';
import { acquireDataDirLock } from './lock.ts';
import * as schema from './schema.ts';

/** The one database type both drivers (embedded PGlite and PostgreSQL) satisfy. */
export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

/** The rows of a raw `db.execute(sql…)`: both drivers answer with `{ rows }`. */
export function rowsOf<T>(result: unknown): T[] {
  return (result as { rows: T[] }).rows;
}

/** Names of the statements run through executePrepared, by text; bounded, past that a statement runs unnamed. */
const statementNames = new Map<string, string>();
const MAX_NAMED_STATEMENTS = 64;

/** What executePrepared needs of drizzle's database or transaction object: its SQL dialect and session (not in drizzle's public types). */
interface DrizzleInternals {
  dialect: { sqlToQuery(query: SQL): { sql: string; params: unknown[] } };
  session: { prepareQuery(query: { sql: string; params: unknown[] }, fields: undefined, name: string | undefined, arrayMode: boolean): { execute(): Promise<unknown> } };
}

/**
 * Runs a statement of the write path (one whose text does not depend on its
 * data: the rows travel as parameters) as a named prepared statement, so
 * that on PostgreSQL each connection parses and plans it once instead of on
 * every batch. For the admission statement that is about a quarter of a
 * millisecond on every request's way to its first token. Same result as
 * `db.execute`; the embedded database ignores the name.
 */
export async function executePrepared(db: Db, query: SQL): Promise<unknown> {
  const { dialect, session } = db as unknown as DrizzleInternals;
  const built = dialect.sqlToQuery(query);
  let name = statementNames.get(built.sql);
  if (name === undefined && statementNames.size < MAX_NAMED_STATEMENTS) {
    name = `eugpt_w${statementNames.size}`;
    statementNames.set(built.sql, name);
  }
  return session.prepareQuery(built, undefined, name, false).execute();
}

export interface Database {
  db: Db;
  kind: 'pglite' | 'postgres';
  /**
   * Resolves when the database answers a trivial query. On PostgreSQL it uses
   * a connection of its own, so a pool busy with a burst of requests does not
   * make a healthy database look unreachable.
   */
  ping(timeoutMs?: number): Promise<void>;
  migrate(): Promise<void>;
  close(): Promise<void>;
  /** Connections for the metrics: PostgreSQL's pool (total, idle, requests waiting); the embedded database is one. */
  poolStats(): { total: number; idle?: number; waiting?: number };
  /**
   * Opens the pool's kept connections (`poolMin`) now, so that a burst of
   * requests right after start does not have to open them while the event
   * loop is busy (a connection that cannot finish its handshake within the
   * connect timeout fails the statements waiting for it). Nothing to do on
   * the embedded database.
   */
  warm(): Promise<void>;
  /** The embedded database's data folder as one uncompressed tarball, for `loadDataDir`; not on PostgreSQL. */
  dumpDataDir?(): Promise<Blob>;
}

const MIGRATIONS = fileURLToPath(new URL('../../migrations', import.meta.url));

/** Any fixed number: serialises migrations of instances that start together on one PostgreSQL. */
const MIGRATION_LOCK_KEY = 7_214_552_019;

/** Server-side limits on every pooled session, so a stuck lock or a runaway statement cannot hang requests. */
export interface DbTimeouts {
  /** Longest wait for a pooled connection (and for a new one to connect). */
  connectMs: number;
  statementMs: number;
  lockMs: number;
  idleInTransactionMs: number;
}

export const DEFAULT_DB_TIMEOUTS: DbTimeouts = { connectMs: 5_000, statementMs: 15_000, lockMs: 5_000, idleInTransactionMs: 30_000 };

export interface OpenOptions {
  databaseUrl?: string | undefined;
  /** A folder for embedded PGlite; `memory://` keeps it in memory (tests). */
  dataDir?: string;
  /**
   * An in-memory embedded database starts as a copy of this dump of a data
   * folder (PGlite's `dumpDataDir`), which takes a fraction of the time of
   * initialising a new one: the test suite opens one per test file this way.
   */
  loadDataDir?: Blob | undefined;
  poolMax?: number;
  /** Connections kept open while idle (at most poolMax); 0: every idle connection closes after 10 s. */
  poolMin?: number;
  timeouts?: Partial<DbTimeouts>;
  /** Shown in pg_stat_activity, so an operator can tell this server's sessions apart. */
  applicationName?: string;
  /** A connection failed (the server went away, a backend was terminated); it is dropped and replaced. */
  onConnectionError?: (err: Error) => void;
}

export async function openDatabase(opts: OpenOptions): Promise<Database> {
  const timeouts = { ...DEFAULT_DB_TIMEOUTS, ...opts.timeouts };
  if (opts.databaseUrl !== undefined) {
    const max = opts.poolMax ?? 10;
    return openPostgres(opts.databaseUrl, { max, min: Math.min(max, opts.poolMin ?? 0) }, timeouts, opts.applicationName ?? 'eugpt', opts.onConnectionError);
  }
  return openPglite(opts.dataDir ?? 'memory://', opts.loadDataDir);
}

function openPostgres(url: string, { max, min }: { max: number; min: number }, timeouts: DbTimeouts, applicationName: string, onConnectionError?: (err: Error) => void): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    min,
    application_name: applicationName,
    connectionTimeoutMillis: timeouts.connectMs,
    statement_timeout: timeouts.statementMs,
    lock_timeout: timeouts.lockMs,
    idle_in_transaction_session_timeout: timeouts.idleInTransactionMs,
  });
  const report = (err: Error) => onConnectionError?.(err);
  // pg-pool listens for errors only on idle clients: a backend terminated while
  // its client is checked out (inside a transaction) would emit an 'error' with
  // no listener and end the process. A listener for the client's whole life
  // makes that error fail only the statements on that connection; the pool
  // drops the broken client when it is released.
  pool.on('connect', (client) => {
    client.on('error', report);
  });
  pool.on('error', report);
  const db = drizzlePg(pool, { schema });

  // Readiness asks on a connection of its own, made again whenever it broke.
  let probe: pg.Client | undefined;
  let closed = false;
  const dropProbe = () => {
    const p = probe;
    probe = undefined;
    p?.end().catch(() => undefined);
  };
  return {
    db,
    kind: 'postgres',
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    async warm() {
      const clients = await Promise.all(Array.from({ length: Math.max(0, min - pool.totalCount) }, () => pool.connect()));
      for (const c of clients) c.release();
    },
    async ping(timeoutMs = 2_000) {
      if (closed) throw new Error('the database pool is closed');
      try {
        if (probe === undefined) {
          const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
          client.on('error', () => {
            if (probe === client) probe = undefined;
          });
          await client.connect();
          probe = client;
        }
        await probe.query('select 1');
      } catch (err) {
        dropProbe();
        throw err;
      }
    },
    async migrate() {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
        await migratePg(drizzlePg(client), { migrationsFolder: MIGRATIONS });
      } finally {
        await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
        await client.end();
      }
    },
    async close() {
      closed = true;
      dropProbe();
      await pool.end();
    },
  };
}

async function openPglite(dataDir: string, loadDataDir?: Blob): Promise<Database> {
  // Loaded only here: a server on PostgreSQL never loads the embedded database.
  const [{ PGlite }, { vector }, { drizzle: drizzlePglite }, { migrate: migratePglite }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('@electric-sql/pglite-pgvector'),
    import('drizzle-orm/pglite'),
    import('drizzle-orm/pglite/migrator'),
  ]);
  const inMemory = dataDir.startsWith('memory://');
  // PGlite is single-process: a second process on the same folder would corrupt it.
  const release = inMemory ? () => undefined : acquireDataDirLock(dataDir);
  let client: PGlite;
  try {
    // pgvector ships with the embedded database, for retrieval by embeddings (projects/vector.ts).
    client = await PGlite.create(inMemory ? undefined : dataDir, { extensions: { vector }, ...(inMemory && loadDataDir !== undefined ? { loadDataDir } : {}) });
  } catch (err) {
    release();
    throw err;
  }
  const db = drizzlePglite(client, { schema });
  return {
    db,
    kind: 'pglite',
    poolStats: () => ({ total: client.closed ? 0 : 1 }),
    warm: () => Promise.resolve(),
    dumpDataDir: () => client.dumpDataDir('none'),
    // Embedded: there is no server to lose, and a query would wait behind a busy
    // queue of statements; ready while the instance is open.
    async ping() {
      if (client.closed) throw new Error('the embedded database is closed');
    },
    async migrate() {
      await migratePglite(db, { migrationsFolder: MIGRATIONS });
    },
    async close() {
      try {
        await client.close();
      } finally {
        release();
      }
    },
  };
}
