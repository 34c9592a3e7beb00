import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.ts';
import { adminHeaders, bearer, createTenant, testApp, type Tenant } from './helpers/app.ts';
import { openSecondHandle, openTestDatabase } from './helpers/db.ts';

let database: Database;
let app: FastifyInstance;
let tenant: Tenant;

beforeAll(async () => {
  database = await openTestDatabase();
  app = await testApp(database);
  tenant = await createTenant(app);
});
afterAll(async () => {
  await app.close();
  await database.close();
});

const models = (headers: Record<string, string> = {}) => app.inject({ method: 'GET', url: '/v1/models', headers });

describe('API key authentication', () => {
  it('lets a valid key list the models', async () => {
    const res = await models(bearer(tenant.key));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ object: 'list', data: [expect.objectContaining({ id: 'auto', object: 'model' })] });
  });

  it.each([
    ['no header', {}, 'missing_api_key'],
    ['an empty header', { authorization: '' }, 'missing_api_key'],
    ['a Basic header', { authorization: 'Basic dXNlcjpwYXNz' }, 'malformed_authorization'],
    ['Bearer without a token', { authorization: 'Bearer' }, 'malformed_authorization'],
    ['a token without the eugpt_ prefix', { authorization: 'Bearer sk-abcdef' }, 'malformed_api_key'],
    ['an unknown key', { authorization: 'Bearer eugpt_0000000000000000000000000000000000000000000' }, 'invalid_api_key'],
    ['an oversized key', { authorization: `Bearer eugpt_${'a'.repeat(5000)}` }, 'invalid_api_key'],
  ])('answers 401 for %s', async (_name, headers, code) => {
    const res = await models(headers);
    expect(res.statusCode).toBe(401);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = res.json();
    expect(body.error).toEqual({ type: 'authentication_error', code, message: expect.any(String), param: null });
    expect(body.detail).toBe(body.error.message);
  });

  it('answers 401 revoked_api_key for a revoked key, at once on the instance that revoked it', async () => {
    const other = await createTenant(app);
    expect((await models(bearer(other.key))).statusCode).toBe(200);
    const revoke = await app.inject({ method: 'POST', url: `/admin/v1/api-keys/${other.keyId}/revoke`, headers: adminHeaders });
    expect(revoke.statusCode).toBe(200);
    const res = await models(bearer(other.key));
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('revoked_api_key');
  });

  it('records when a key was last used, in batches', async () => {
    const fast = await testApp(database, { EUGPT_LAST_USED_FLUSH_MS: '100' });
    try {
      const t = await createTenant(fast);
      expect((await fast.inject({ method: 'GET', url: '/v1/models', headers: bearer(t.key) })).statusCode).toBe(200);
      const deadline = Date.now() + 5000;
      let lastUsed: string | null = null;
      while (lastUsed === null && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        const list = await fast.inject({ method: 'GET', url: `/admin/v1/api-keys?user_id=${t.userId}`, headers: adminHeaders });
        lastUsed = list.json().data[0].last_used_at;
      }
      expect(lastUsed).not.toBeNull();
      expect(Date.now() - Date.parse(lastUsed!)).toBeLessThan(60_000);
    } finally {
      await fast.close();
    }
  });
});

describe('revocation across instances', () => {
  it('makes a key fail on a second instance that shares the database once its cache time has passed', async () => {
    const ttlMs = 1_000;
    const second = await openSecondHandle(database);
    const other = await testApp(second.database, { EUGPT_KEY_CACHE_TTL_MS: String(ttlMs) });
    try {
      const t = await createTenant(app);
      // Warm the second instance's cache so that only expiry can make it notice.
      const warm = await other.inject({ method: 'GET', url: '/v1/models', headers: bearer(t.key) });
      expect(warm.statusCode).toBe(200);
      const cachedBy = Date.now();

      const revoke = await app.inject({ method: 'POST', url: `/admin/v1/api-keys/${t.keyId}/revoke`, headers: adminHeaders });
      expect(revoke.statusCode).toBe(200);
      // The entry was cached before `cachedBy`, so it has expired one cache time later: the next look-up reads the row.
      // (A busy machine only makes this later, never earlier.)
      await new Promise((r) => setTimeout(r, Math.max(0, cachedBy + ttlMs + 10 - Date.now())));
      const res = await other.inject({ method: 'GET', url: '/v1/models', headers: bearer(t.key) });
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('revoked_api_key');
    } finally {
      await other.close();
      await second.close();
    }
  });
});

describe('request ids', () => {
  it('sets x-request-id on every answer, keeping a sane one the client sent', async () => {
    const own = await app.inject({ method: 'GET', url: '/healthz' });
    expect(own.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const kept = await app.inject({ method: 'GET', url: '/nope', headers: { 'x-request-id': 'trace-123.abc' } });
    expect(kept.headers['x-request-id']).toBe('trace-123.abc');
    const replaced = await app.inject({ method: 'GET', url: '/v1/models', headers: { 'x-request-id': 'bad id\twith "quotes"' } });
    expect(replaced.statusCode).toBe(401);
    expect(replaced.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});
