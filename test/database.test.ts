import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { executePrepared, openDatabase, rowsOf } from '../src/db/client.ts';
import { DataDirInUseError } from '../src/db/lock.ts';
import { organizations } from '../src/db/schema.ts';
import { openTestDatabase, TEST_DATABASE_URL } from './helpers/db.ts';

describe('migrations', () => {
  it('apply again without change, and concurrently without conflict', async () => {
    const a = await openTestDatabase();
    const b = TEST_DATABASE_URL === undefined ? a : await openTestDatabase();
    try {
      await Promise.all([a.migrate(), b.migrate()]);
      const names = rowsOf<{ table_name: string }>(
        await a.db.execute(sql`select table_name from information_schema.tables where table_schema = 'public' order by table_name`),
      ).map((r) => r.table_name);
      expect(names).toEqual(
        expect.arrayContaining(['api_keys', 'conversation_items', 'conversations', 'organizations', 'project_members', 'projects', 'responses', 'users']),
      );
    } finally {
      if (b !== a) await b.close();
      await a.close();
    }
  });

  it('enforce the status check on organisations', async () => {
    const d = await openTestDatabase();
    try {
      await expect(d.db.insert(organizations).values({ name: 'x', status: 'deleted' as 'active' })).rejects.toThrow();
    } finally {
      await d.close();
    }
  });
});

describe('prepared write statements', () => {
  it('give the same rows as a plain query, and name at most 64 texts per process', async () => {
    const d = await openTestDatabase();
    try {
      await d.db.transaction(async (tx) => {
        // 70 distinct texts, each run twice with different parameters on one connection.
        for (let n = 0; n < 70; n++) {
          for (const v of [1, 2]) {
            const rows = rowsOf<{ v: number }>(await executePrepared(tx, sql`select ${v}::int + ${sql.raw(String(n))} as v`));
            expect(rows).toEqual([{ v: v + n }]);
          }
        }
        if (d.kind !== 'postgres') return;
        const named = rowsOf<{ name: string; statement: string }>(
          await tx.execute(sql`select name, statement from pg_prepared_statements where name like 'eugpt_w%'`),
        );
        expect(named.length).toBeGreaterThan(0);
        expect(named.length).toBeLessThanOrEqual(64);
        expect(new Set(named.map((r) => r.name)).size).toBe(named.length);
        // The texts past the bound run unnamed: the last one is never among the named.
        expect(named.some((r) => r.statement.endsWith('+ 69 as v'))).toBe(false);
      });
    } finally {
      await d.close();
    }
  });
});

describe('the connection pool', () => {
  it('opens its kept connections on warm(), never more than its maximum', async () => {
    const d = await openDatabase({ databaseUrl: TEST_DATABASE_URL, dataDir: 'memory://', poolMax: 3, poolMin: 5 });
    try {
      await d.warm();
      // The embedded database is one connection; PostgreSQL's pool opened min(poolMin, poolMax) at once.
      expect(d.poolStats()).toMatchObject(d.kind === 'postgres' ? { total: 3, idle: 3 } : { total: 1 });
      await d.warm(); // already open: nothing more
      expect(d.poolStats().total).toBe(d.kind === 'postgres' ? 3 : 1);
    } finally {
      await d.close();
    }
  });
});

describe('the embedded database folder', () => {
  it('keeps data across restarts and refuses a second opener while in use', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eugpt-data-'));
    const first = await openDatabase({ dataDir: dir });
    await first.migrate();
    await first.db.insert(organizations).values({ name: 'Persisted' });
    await expect(openDatabase({ dataDir: dir })).rejects.toThrow(DataDirInUseError);
    await first.close();

    const again = await openDatabase({ dataDir: dir });
    try {
      await again.migrate();
      const rows = await again.db.select().from(organizations);
      expect(rows.map((r) => r.name)).toEqual(['Persisted']);
    } finally {
      await again.close();
    }
  });
});

describe('an in-memory embedded database from a dump', () => {
  it('starts with the dumped rows, and its writes stay its own', async () => {
    const source = await openDatabase({ dataDir: 'memory://' });
    let dump: Blob;
    try {
      await source.migrate();
      await source.db.insert(organizations).values({ name: 'Dumped' });
      dump = await source.dumpDataDir!();
    } finally {
      await source.close();
    }
    const a = await openDatabase({ dataDir: 'memory://', loadDataDir: dump });
    const b = await openDatabase({ dataDir: 'memory://', loadDataDir: dump });
    try {
      await a.db.insert(organizations).values({ name: 'Only in a' });
      expect((await a.db.select().from(organizations)).map((r) => r.name).sort()).toEqual(['Dumped', 'Only in a']);
      expect((await b.db.select().from(organizations)).map((r) => r.name)).toEqual(['Dumped']);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
