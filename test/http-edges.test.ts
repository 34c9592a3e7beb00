import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.ts';
import { openDatabase } from '../src/db/client.ts';
import { adminHeaders, bearer, createTenant, testApp } from './helpers/app.ts';
import { openTestDatabase } from './helpers/db.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { writeConfig } from './helpers/harness.ts';

let database: Database;
let app: FastifyInstance;
let upstream: FakeUpstream;

beforeAll(async () => {
  database = await openTestDatabase();
  // A configured model whose server answers (its model list only: it is never called here) makes the server ready.
  upstream = await startFakeUpstream();
  app = await testApp(database, { EUGPT_BODY_LIMIT: '4096', EUGPT_CONFIG: writeConfig(upstream.url), FAKE_UPSTREAM_KEY: 'k' });
  await app.probes.firstRound;
});
afterAll(async () => {
  await app.close();
  await upstream.close();
  await database.close();
});

function expectEnvelope(res: { statusCode: number; json: () => unknown; headers: Record<string, unknown> }, status: number, type: string, code: string) {
  expect(res.statusCode).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.headers['x-request-id']).toBeTruthy();
  const body = res.json() as { error: Record<string, unknown>; detail: string };
  expect(body.error).toMatchObject({ type, code });
  expect(typeof body.error.message).toBe('string');
  expect(body.detail).toBe(body.error.message);
  return body;
}

const createOrg = (payload: string, headers: Record<string, string> = {}) =>
  app.inject({
    method: 'POST',
    url: '/admin/v1/organizations',
    headers: { ...adminHeaders, 'content-type': 'application/json', ...headers },
    payload,
  });

describe('errors in the envelope', () => {
  it('answers an unknown route with 404 route_not_found', async () => {
    expectEnvelope(await app.inject({ method: 'GET', url: '/v2/whatever?x=1' }), 404, 'not_found_error', 'route_not_found');
  });

  it('answers malformed JSON with 400 invalid_json', async () => {
    expectEnvelope(await createOrg('{"name": '), 400, 'invalid_request_error', 'invalid_json');
  });

  it('answers an empty JSON body with 400 invalid_json', async () => {
    expectEnvelope(await createOrg(''), 400, 'invalid_request_error', 'invalid_json');
  });

  it('answers a body over the limit with 413 request_too_large', async () => {
    const body = JSON.stringify({ name: 'x'.repeat(10_000) });
    expectEnvelope(await createOrg(body), 413, 'invalid_request_error', 'request_too_large');
  });

  it('answers a wrong content type with 415 unsupported_media_type', async () => {
    const res = await createOrg('name=Acme', { 'content-type': 'application/x-www-form-urlencoded' });
    expectEnvelope(res, 415, 'invalid_request_error', 'unsupported_media_type');
  });

  it('answers a schema violation with 400, naming the field in param', async () => {
    const body = expectEnvelope(await createOrg(JSON.stringify({ name: '   ' })), 400, 'invalid_request_error', 'invalid_request');
    expect(body.error.param).toBe('name');
    const uuid = await app.inject({
      method: 'POST',
      url: '/admin/v1/users',
      headers: adminHeaders,
      payload: { organization_id: 'not-a-uuid', email: 'a@b.eu' },
    });
    expect(expectEnvelope(uuid, 400, 'invalid_request_error', 'invalid_uuid').error.param).toBe('organization_id');
  });

  it('answers a malformed id in the path with 400 invalid_uuid', async () => {
    const res = await app.inject({ method: 'GET', url: '/admin/v1/organizations/123', headers: adminHeaders });
    expectEnvelope(res, 400, 'invalid_request_error', 'invalid_uuid');
  });

  it('answers a database that is gone with 503 database_unavailable and no internals', async () => {
    const doomed = await openTestDatabase();
    const broken = await testApp(doomed);
    await doomed.close();
    try {
      const res = await broken.inject({ method: 'POST', url: '/admin/v1/organizations', headers: adminHeaders, payload: { name: 'x' } });
      const body = expectEnvelope(res, 503, 'server_error', 'database_unavailable');
      expect(res.headers['retry-after']).toBe('1');
      expect(JSON.stringify(body)).not.toMatch(/stack|at .*\.ts|pglite|pool|postgres/i);
      const ready = await broken.inject({ method: 'GET', url: '/readyz' });
      expectEnvelope(ready, 503, 'server_error', 'not_ready');
      expect(ready.json().checks.database).toMatch(/^unreachable: /);
    } finally {
      await broken.close();
    }
  });
});

describe('health', () => {
  it('answers /healthz and /readyz without auth', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await app.inject({ method: 'GET', url: '/readyz' })).json()).toEqual({
      status: 'ready',
      checks: { database: 'ok', models: 'ok', routing: 'ok' },
      routing_state: { state: 'ok', open: [], cooling: [] },
      routing: {},
    });
  });
});

describe('logs', () => {
  it('never contain the API key, the admin token or request bodies', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logged = await testApp(database, {}, pino({ level: 'trace' }, sink));
    try {
      const t = await createTenant(logged);
      await logged.inject({ method: 'GET', url: '/v1/models', headers: bearer(t.key) });
      await logged.inject({ method: 'POST', url: '/admin/v1/organizations', headers: adminHeaders, payload: { name: 'SecretProjectName' } });
      const text = lines.join('');
      expect(text).toContain('request completed');
      expect(text).not.toContain(t.key);
      expect(text).not.toContain(adminHeaders.authorization.slice(7));
      expect(text).not.toContain('SecretProjectName');
    } finally {
      await logged.close();
    }
  });
});

describe('an unreachable PostgreSQL', () => {
  it('fails to open with an error rather than hanging', async () => {
    const db = await openDatabase({ databaseUrl: 'postgres://postgres@127.0.0.1:1/none' });
    await expect(db.ping()).rejects.toThrow();
    await db.close();
  });
});
