import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { openDatabase, type Database } from '../src/db/client.ts';
import { ADMIN_TOKEN, bearer, createTenant, type Tenant } from './helpers/app.ts';
import { openTestDatabase, TEST_DATABASE_URL } from './helpers/db.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { writeConfig } from './helpers/harness.ts';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.ts';

/**
 * The database going away under a running server: backends terminated,
 * connections cut, new connections refused. The process must stay up, the
 * requests caught in it get 503 database_unavailable (never 500), finished
 * answers wait for the database instead of being lost, and the server works
 * again within a second of the database coming back.
 */

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream({ chunks: ['fine'] });
});
afterAll(async () => upstream.close());

interface Served {
  app: FastifyInstance;
  origin: string;
  tenant: Tenant;
  database: Database;
  close(): Promise<void>;
}

async function serve(database: Database, env: Record<string, string> = {}): Promise<Served> {
  const config = loadConfig({ EUGPT_ADMIN_TOKEN: ADMIN_TOKEN, EUGPT_CONFIG: writeConfig(upstream.url), FAKE_UPSTREAM_KEY: 'k', ...env });
  const app = await buildApp({ config, database, logger: false });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const tenant = await createTenant(app);
  return {
    app,
    origin,
    tenant,
    database,
    async close() {
      await app.close();
      await database.close();
    },
  };
}

async function ask(s: Served, body: Record<string, unknown> = {}) {
  const res = await fetch(`${s.origin}/v1/responses`, {
    method: 'POST',
    headers: { ...bearer(s.tenant.key), 'content-type': 'application/json' },
    body: JSON.stringify({ input: 'hello', stream: false, ...body }),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as { id?: string; error?: { code: string; type: string } } };
}

/** Sends requests until one succeeds; returns how long that took. */
async function timeToRecover(s: Served): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < 200; i++) {
    if ((await ask(s)).status === 200) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('did not recover');
}

const expectUnavailable = (r: Awaited<ReturnType<typeof ask>>) => {
  expect(r.status).toBe(503);
  expect(r.body.error).toMatchObject({ type: 'server_error', code: 'database_unavailable' });
  expect(r.headers.get('retry-after')).toBe('1');
};

describe('a closed database', () => {
  it('answers 503 database_unavailable, not 500', async () => {
    const s = await serve(await openTestDatabase());
    expect((await ask(s)).status).toBe(200);
    await s.database.close();
    expectUnavailable(await ask(s));
    await s.app.close();
  });
});

if (TEST_DATABASE_URL !== undefined) {
  const databaseUrl = TEST_DATABASE_URL;
  const target = new URL(databaseUrl);
  let proxy: TcpProxy;
  let s: Served;
  let admin: pg.Client;
  const name = `eugpt-test-${randomUUID().slice(0, 8)}`;

  /** The database's URL through the proxy, whose connections a test can cut or refuse. */
  const viaProxy = () => {
    const via = new URL(databaseUrl);
    via.hostname = '127.0.0.1';
    via.port = String(proxy.port);
    return via.toString();
  };

  /**
   * How many backends of `applicationName` wait for a lock on usage_totals. (Statistics views are read once per
   * transaction unless the snapshot is cleared, and the admin session may be inside one.)
   */
  const lockWaiters = async (applicationName: string) => {
    await admin.query('select pg_stat_clear_snapshot()');
    const rows = await admin.query(
      "select 1 from pg_locks l join pg_stat_activity a on a.pid = l.pid where l.relation = 'usage_totals'::regclass and not l.granted and a.application_name = $1",
      [applicationName],
    );
    return rows.rowCount ?? 0;
  };

  /** Opens a stream whose answer waits for `release()`; `readUntil` reads it up to a text. */
  const heldStream = async (on: Served, chunks: string[]) => {
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    upstream.queue.push({ chunks, hold });
    const res = await fetch(`${on.origin}/v1/responses`, {
      method: 'POST',
      headers: { ...bearer(on.tenant.key), 'content-type': 'application/json' },
      body: JSON.stringify({ input: 'hold on' }),
    });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    const stream = { text: '', release };
    const readUntil = async (needle: string) => {
      while (!stream.text.includes(needle)) {
        const { value, done } = await reader.read();
        if (done) return;
        stream.text += decoder.decode(value, { stream: true });
      }
    };
    return Object.assign(stream, { readUntil });
  };

  describe('PostgreSQL going away under load', () => {
    beforeAll(async () => {
      proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
      const database = await openDatabase({ databaseUrl: viaProxy(), applicationName: name, poolMax: 10, timeouts: { connectMs: 1_000 } });
      await database.migrate();
      s = await serve(database, { EUGPT_STORE_WAIT_MS: '20000' });
      admin = new pg.Client({ connectionString: databaseUrl });
      await admin.connect();
    });
    afterAll(async () => {
      await admin.end();
      await s.close();
      await proxy.close();
    });

    it('survives its backends being terminated mid-request: nothing 500s, and it serves again at once', async () => {
      // Hold the usage table so the server's write transactions wait inside it, their connections checked out.
      await admin.query('begin');
      await admin.query('lock table usage_totals in share row exclusive mode');
      const inFlight = Array.from({ length: 40 }, () => ask(s));
      // Wait until a write of the server is blocked on the table, inside its transaction.
      while ((await lockWaiters(name)) === 0) await new Promise((r) => setTimeout(r, 10));
      await admin.query('select pg_stat_clear_snapshot()');
      await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [name]);
      await admin.query('rollback');
      const answers = await Promise.all(inFlight);
      for (const a of answers) {
        if (a.status !== 200) expectUnavailable(a);
      }
      expect(await timeToRecover(s)).toBeLessThan(1_000);
      // Every answer that said 200 is stored.
      for (const a of answers.filter((x) => x.status === 200)) {
        const got = await fetch(`${s.origin}/v1/responses/${a.body.id}`, { headers: bearer(s.tenant.key) });
        expect(got.status).toBe(200);
      }
    });

    it('answers 503 while the database refuses connections, and recovers within a second of its return', async () => {
      await proxy.refuse();
      const refused = await Promise.all(Array.from({ length: 5 }, () => ask(s)));
      for (const r of refused) expectUnavailable(r);
      const ready = await fetch(`${s.origin}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { checks: { database: string } }).checks.database).toMatch(/^unreachable: /);

      await proxy.accept();
      expect(await timeToRecover(s)).toBeLessThan(1_000);
      expect((await fetch(`${s.origin}/readyz`)).status).toBe(200);
    });

    it('fails a request fast with 503 when a lock is held elsewhere, instead of hanging', async () => {
      const locked = await serve(await openDatabase({ databaseUrl, timeouts: { lockMs: 300 } }));
      try {
        const patched = await locked.app.inject({
          method: 'PATCH',
          url: `/admin/v1/organizations/${locked.tenant.orgId}`,
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
          payload: { daily_token_limit: 1_000_000 },
        });
        expect(patched.statusCode).toBe(200);
        await admin.query('begin');
        await admin.query('lock table usage_totals in exclusive mode');
        const started = performance.now();
        const r = await ask(locked);
        const waited = performance.now() - started;
        await admin.query('rollback');
        expectUnavailable(r);
        expect(waited).toBeLessThan(5_000);
        expect((await ask(locked)).status).toBe(200);
      } finally {
        await locked.close();
      }
    });

    /** A server through the proxy whose clients wait `storeWaitMs` for their response's write. */
    const quickServer = async (applicationName: string, storeWaitMs: number) => {
      const database = await openDatabase({ databaseUrl: viaProxy(), applicationName, poolMax: 4, timeouts: { connectMs: 1_000 } });
      return serve(database, { EUGPT_STORE_WAIT_MS: String(storeWaitMs) });
    };

    it('tells a client storage_unavailable when the database stays away past the store wait, and stores its response once back', async () => {
      const quick = await quickServer(`${name}-away`, 300);
      try {
        const stream = await heldStream(quick, ['stored ', 'later']);
        await stream.readUntil('output_text.delta');
        await proxy.refuse();
        stream.release();
        await stream.readUntil('"type":"error"');
        const error = JSON.parse(/data: (\{"type":"error".*)\n/.exec(stream.text)![1]!) as { code: string };
        expect(error.code).toBe('storage_unavailable');
        expect(stream.text).not.toContain('response.completed');
        const id = /"response":\{"id":"([0-9a-f-]{36})"/.exec(stream.text)![1]!;
        await proxy.accept();
        let got: { status?: string; output_text?: string } = {};
        for (let i = 0; i < 200 && got.status !== 'completed'; i++) {
          const res = await fetch(`${quick.origin}/v1/responses/${id}`, { headers: bearer(quick.tenant.key) });
          got = (await res.json()) as typeof got;
          if (got.status !== 'completed') await new Promise((r) => setTimeout(r, 25));
        }
        expect(got).toMatchObject({ status: 'completed', output_text: 'stored later' });
      } finally {
        await quick.close();
      }
    });

    it('waits past the store wait for a write that is only slow on a working database', async () => {
      const app = `${name}-slow`;
      const storeWaitMs = 1_000;
      const quick = await quickServer(app, storeWaitMs);
      try {
        const stream = await heldStream(quick, ['slow ', 'but ', 'stored']);
        await stream.readUntil('output_text.delta');
        await admin.query('begin');
        await admin.query('lock table usage_totals in share row exclusive mode');
        stream.release();
        // The server's write of the finished response waits on the table.
        while ((await lockWaiters(app)) === 0) await new Promise((r) => setTimeout(r, 10));
        // Longer than the store wait, shorter than the bound for a slow write (6 times it).
        await new Promise((r) => setTimeout(r, 2 * storeWaitMs));
        await admin.query('rollback');
        await stream.readUntil('"type":"response.completed"');
        expect(stream.text).toContain('"type":"response.completed"');
        expect(stream.text).not.toContain('storage_unavailable');
      } finally {
        await admin.query('rollback').catch(() => undefined);
        await quick.close();
      }
    });

    it('keeps a finished answer through an outage and stores it when the database is back', async () => {
      const stream = await heldStream(s, ['kept ', 'through ', 'the outage']);
      // The first delta arrived, so admission was written; now the database goes away.
      await stream.readUntil('output_text.delta');
      await proxy.refuse();
      stream.release();
      // The answer's last delta arrived: the response has ended and waits for its write. The database comes back.
      await stream.readUntil('"delta":"the outage"');
      expect(stream.text).not.toContain('response.completed');
      await proxy.accept();
      await stream.readUntil('"type":"response.completed"');
      expect(stream.text).toContain('"type":"response.completed"');
      const id = /"response":\{"id":"([0-9a-f-]{36})"/.exec(stream.text)![1]!;
      const got = (await (await fetch(`${s.origin}/v1/responses/${id}`, { headers: bearer(s.tenant.key) })).json()) as { status: string; output_text: string };
      expect(got).toMatchObject({ status: 'completed', output_text: 'kept through the outage' });
    });
  });
}
