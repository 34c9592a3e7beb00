import { createHash, randomInt, randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { AUDITED_ROUTES, auditAdminScope, createAuditRecorder } from '../src/admin/audit.ts';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { rowsOf as rowsIn, type Database, type Db } from '../src/db/client.ts';
import { generateOpenapiYaml } from '../src/http/openapi-document.ts';
import { ADMIN_TOKEN, adminHeaders, testApp } from './helpers/app.ts';
import { openTestDatabase } from './helpers/db.ts';

let database: Database;
let app: FastifyInstance;

beforeAll(async () => {
  database = await openTestDatabase();
  app = await testApp(database);
});
afterAll(async () => {
  await app.close();
  await database.close();
});

const ACTOR = `admin:${createHash('sha256').update(ADMIN_TOKEN).digest('hex').slice(0, 12)}`;

/** The suite may share a PostgreSQL database with earlier runs, and audit rows cannot be removed: each test picks its own address. */
const randomIp = () => `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`;

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

async function call(method: Method, url: string, payload?: object, extra: { remoteAddress?: string } = {}) {
  const res = await app.inject({ method, url: `/admin/v1${url}`, headers: adminHeaders, ...(payload ? { payload } : {}), ...extra });
  return { status: res.statusCode, body: res.json(), requestId: String(res.headers['x-request-id']) };
}

/** The audit rows a request wrote, read straight from the table. */
async function rowsOf(requestId: string) {
  return rowsIn<Record<string, unknown>>(await database.db.execute(sql`select * from audit_events where request_id = ${requestId} order by id`));
}

async function auditPage(query: string) {
  const res = await app.inject({ method: 'GET', url: `/admin/v1/audit?${query}`, headers: adminHeaders });
  expect(res.statusCode).toBe(200);
  return res.json<{ object: 'list'; data: { id: number; action: string; at: string; details: Record<string, unknown> }[]; has_more: boolean }>();
}

describe('audited admin actions', () => {
  it('gives every mutating admin route an action, and refuses to start with one that has none', async () => {
    const doc = parse(await generateOpenapiYaml());
    const mutating: string[] = [];
    for (const [path, ops] of Object.entries<Record<string, unknown>>(doc.paths)) {
      if (!path.startsWith('/admin/v1/')) continue;
      for (const method of Object.keys(ops)) {
        if (['post', 'put', 'patch', 'delete'].includes(method)) {
          mutating.push(`${method.toUpperCase()} ${path.slice('/admin/v1'.length).replace(/\{(\w+)\}/g, ':$1')}`);
        }
      }
    }
    expect(mutating.sort()).toEqual(Object.keys(AUDITED_ROUTES).sort());

    const bare = Fastify();
    const recorder = createAuditRecorder({ db: database.db, adminToken: ADMIN_TOKEN, now: Date.now, prefix: '/admin/v1' });
    const boot = async () => {
      await bare.register(
        async (scope) => {
          auditAdminScope(scope, recorder);
          scope.post('/organizations', async () => ({}));
          scope.post('/something-new', async () => ({}));
        },
        { prefix: '/admin/v1' },
      );
      await bare.ready();
    };
    await expect(boot()).rejects.toThrow(/POST \/something-new has no audit action/);
  });

  it('records each one with its action, target, actor, address and request id, and never a secret', async () => {
    const ip = randomIp();
    const seen: { action: string; targetType: string; targetId: string; requestId: string }[] = [];
    const step = async (method: Method, url: string, payload: object | undefined, action: string, targetType: string, targetId?: string) => {
      const res = await call(method, url, payload, { remoteAddress: ip });
      expect(res.status, `${method} ${url}: ${JSON.stringify(res.body)}`).toBeLessThan(300);
      seen.push({ action, targetType, targetId: targetId ?? res.body.id, requestId: res.requestId });
      return res.body;
    };

    const org = await step('POST', '/organizations', { name: 'Audited GmbH' }, 'organization.create', 'organization');
    await step('PATCH', `/organizations/${org.id}`, { status: 'suspended', daily_token_limit: 5000, name: 'Renamed' }, 'organization.update', 'organization', org.id);
    await step('PATCH', `/organizations/${org.id}`, { status: 'active' }, 'organization.update', 'organization', org.id);
    const email = `person.${randomUUID()}@example.eu`;
    const user = await step('POST', '/users', { organization_id: org.id, email, role: 'admin' }, 'user.create', 'user');
    const label = `secret-label-${randomUUID()}`;
    const key = await step('POST', '/api-keys', { user_id: user.id, label }, 'api_key.create', 'api_key');
    await step('POST', `/api-keys/${key.id}/revoke`, undefined, 'api_key.revoke', 'api_key', key.id);
    const planName = `audit-${randomUUID().slice(0, 8)}`;
    await step('PUT', `/plans/${planName}`, { daily_tokens: 1000, features: { tools: false } }, 'plan.put', 'plan', planName);
    const project = await step('POST', '/projects', { organization_id: org.id, name: 'Audit trail' }, 'project.create', 'project');
    await step('POST', `/projects/${project.id}/members`, { user_id: user.id }, 'project.member.add', 'project', project.id);
    await step('DELETE', `/projects/${project.id}/members/${user.id}`, undefined, 'project.member.remove', 'project', project.id);
    // A file uploaded for the user: multipart, so not through `call`; its name is free text, never recorded.
    const fileName = `secret-name-${randomUUID()}.txt`;
    const fd = new FormData();
    fd.append('purpose', 'user_data');
    fd.append('file', new Blob(['hello']), fileName);
    const form = new Request('http://x/', { method: 'POST', body: fd });
    const up = await app.inject({
      method: 'POST',
      url: `/admin/v1/users/${user.id}/files`,
      headers: { ...adminHeaders, 'content-type': form.headers.get('content-type')! },
      payload: Buffer.from(await form.arrayBuffer()),
      remoteAddress: ip,
    });
    expect(up.statusCode).toBe(201);
    const fileId = up.json<{ id: string }>().id;
    seen.push({ action: 'file.upload', targetType: 'file', targetId: fileId, requestId: String(up.headers['x-request-id']) });
    await step('DELETE', `/users/${user.id}/files/${fileId}`, undefined, 'file.delete', 'file', fileId);
    const projectFileId = randomUUID();
    await database.db.execute(sql`insert into files (id, user_id, organization_id, filename, purpose, bytes, sha256, storage, storage_key)
      values (${projectFileId}, ${user.id}, ${org.id}, 'a.txt', 'user_data', 1, ${'0'.repeat(64)}, 'database', ${`files/${projectFileId}`})`);
    await step('POST', `/projects/${project.id}/files`, { file_id: projectFileId }, 'project.file.add', 'project', project.id);
    await step('DELETE', `/projects/${project.id}/files/${projectFileId}`, undefined, 'project.file.remove', 'project', project.id);
    await step('POST', `/users/${user.id}/export`, undefined, 'user.export', 'user', user.id);
    await step('POST', `/organizations/${org.id}/export`, undefined, 'organization.export', 'organization', org.id);
    await step('POST', `/users/${user.id}/erase`, { confirm: true }, 'user.erase', 'user', user.id);
    await step('POST', `/organizations/${org.id}/erase`, { confirm: true }, 'organization.erase', 'organization', org.id);

    // Every route of the map is exercised here.
    expect(new Set(seen.map((s) => s.action))).toEqual(new Set(Object.values(AUDITED_ROUTES).map((r) => r.action)));

    for (const s of seen) {
      const rows = await rowsOf(s.requestId);
      expect(rows, s.action).toHaveLength(1);
      expect(rows[0]).toMatchObject({ actor: ACTOR, action: s.action, target_type: s.targetType, target_id: s.targetId, ip, request_id: s.requestId });
      const text = JSON.stringify(rows[0]);
      expect(text).not.toContain(key.key);
      expect(text).not.toContain(key.key.slice(0, 20));
      expect(text).not.toContain(ADMIN_TOKEN);
      expect(text).not.toContain(email);
      expect(text).not.toContain(label);
      expect(text).not.toContain('Audited GmbH');
      expect(text).not.toContain(fileName);
    }

    const details = async (i: number) => (await rowsOf(seen[i]!.requestId))[0]!.details;
    expect(await details(0)).toEqual({ fields: ['name'] });
    expect(await details(1)).toEqual({ fields: ['daily_token_limit', 'name', 'status'], status: 'suspended', daily_token_limit: 5000 });
    expect(await details(3)).toEqual({ fields: ['email', 'organization_id', 'role'], organization_id: org.id, role: 'admin' });
    expect(await details(4)).toEqual({ fields: ['label', 'user_id'], user_id: user.id });
    expect(await details(5)).toEqual({});
    expect(await details(6)).toMatchObject({ daily_tokens: 1000, fields: expect.arrayContaining(['daily_tokens', 'features']) });
    expect(await details(8)).toEqual({ fields: ['user_id'], user_id: user.id });
    expect(await details(9)).toEqual({ user_id: user.id });
    expect(await details(10)).toEqual({ id: user.id });
    expect(await details(11)).toEqual({ id: user.id });
  });

  it('does not record refused changes, or reads', async () => {
    const missing = await call('PATCH', `/organizations/${randomUUID()}`, { status: 'suspended' });
    expect(missing.status).toBe(404);
    expect(await rowsOf(missing.requestId)).toEqual([]);
    const invalid = await call('POST', '/organizations', { name: '' });
    expect(invalid.status).toBe(400);
    expect(await rowsOf(invalid.requestId)).toEqual([]);
    const read = await call('GET', '/organizations');
    expect(read.status).toBe(200);
    expect(await rowsOf(read.requestId)).toEqual([]);
  });

  it('logs the row when the database refuses it, and still answers', async () => {
    const failing = { insert: () => ({ values: async () => Promise.reject(new Error('database down')) }) } as unknown as Db;
    const recorder = createAuditRecorder({ db: failing, adminToken: ADMIN_TOKEN, now: Date.now, prefix: '/admin/v1' });
    const logged: unknown[] = [];
    const log = { error: (obj: unknown) => logged.push(obj) } as unknown as FastifyBaseLogger;
    const req = {
      method: 'POST',
      routeOptions: { url: '/admin/v1/api-keys/:id/revoke' },
      params: { id: 'k1' },
      body: undefined,
      ip: '192.0.2.1',
      id: 'req-1',
      log,
    } as unknown as FastifyRequest;
    await recorder.recordSuccess(req, 200, '{}');
    expect(logged).toEqual([expect.objectContaining({ audit_event: expect.objectContaining({ action: 'api_key.revoke', targetId: 'k1', requestId: 'req-1' }) })]);
  });
});

describe('refused admin tokens', () => {
  it('are recorded at most once per address and minute', async () => {
    let clock = Date.parse('2030-01-01T00:00:00Z');
    const timed = await buildApp({ config: loadConfig({ EUGPT_ADMIN_TOKEN: ADMIN_TOKEN }), database, logger: false, now: () => clock });
    await timed.ready();
    try {
      const [a, b] = [randomIp(), randomIp()];
      const attempt = async (remoteAddress: string, headers: Record<string, string>) => {
        const res = await timed.inject({ method: 'POST', url: '/admin/v1/organizations', headers, payload: { name: 'x' }, remoteAddress });
        expect(res.statusCode).toBe(401);
      };
      const wrong = { authorization: `Bearer ${ADMIN_TOKEN}-guess` };
      for (let i = 0; i < 5; i++) await attempt(a, wrong);
      await attempt(a, {});
      await attempt(b, {});
      const byIp = async (ip: string) => {
        return rowsIn<{ action: string }>(await database.db.execute(sql`select * from audit_events where ip = ${ip} order by id`));
      };
      expect(await byIp(a)).toHaveLength(1);
      expect((await byIp(a))[0]).toMatchObject({ actor: 'anonymous', action: 'admin.auth_failed', details: { reason: 'invalid', method: 'POST', route: '/admin/v1/organizations' } });
      expect(JSON.stringify(await byIp(a))).not.toContain('guess');
      expect(await byIp(b)).toMatchObject([{ action: 'admin.auth_failed', details: { reason: 'missing' } }]);

      clock += 59_000;
      await attempt(a, wrong);
      expect(await byIp(a)).toHaveLength(1);
      clock += 2_000;
      await attempt(a, wrong);
      expect(await byIp(a)).toHaveLength(2);
      // Nothing was created by the refused requests.
      expect((await byIp(a)).every((r) => r.action === 'admin.auth_failed')).toBe(true);
    } finally {
      await timed.close();
    }
  });

  it('are recorded under the client address the proxy reports, when the proxy is trusted', async () => {
    const proxied = await testApp(database, { EUGPT_TRUST_PROXY: 'true' });
    try {
      const client = randomIp();
      const res = await proxied.inject({
        method: 'POST',
        url: '/admin/v1/organizations',
        headers: { ...adminHeaders, 'x-forwarded-for': client },
        payload: { name: 'Behind a proxy' },
      });
      expect(res.statusCode).toBe(201);
      expect(await rowsOf(String(res.headers['x-request-id']))).toMatchObject([{ action: 'organization.create', ip: client }]);
    } finally {
      await proxied.close();
    }
  });
});

describe('the audit table', () => {
  it('refuses UPDATE, DELETE and TRUNCATE at the database', async () => {
    const res = await call('POST', '/organizations', { name: 'Immutable' });
    const [row] = await rowsOf(res.requestId);
    const id = Number(row!.id);
    await expect(database.db.execute(sql`update audit_events set action = 'forged' where id = ${id}`)).rejects.toThrow();
    await expect(database.db.execute(sql`delete from audit_events where id = ${id}`)).rejects.toThrow();
    await expect(database.db.execute(sql`truncate audit_events`)).rejects.toThrow();
    expect(await rowsOf(res.requestId)).toMatchObject([{ action: 'organization.create' }]);
  });
});

describe('GET /admin/v1/audit', () => {
  it('pages newest first and filters by action, target and time', async () => {
    const start = new Date(Date.now() - 60_000).toISOString();
    const org = (await call('POST', '/organizations', { name: 'Paged' })).body;
    for (const status of ['suspended', 'active', 'suspended'] as const) {
      expect((await call('PATCH', `/organizations/${org.id}`, { status })).status).toBe(200);
    }

    const first = await auditPage(`target_id=${org.id}&limit=2`);
    expect(first.has_more).toBe(true);
    expect(first.data.map((e) => e.action)).toEqual(['organization.update', 'organization.update']);
    expect(first.data.map((e) => e.details.status)).toEqual(['suspended', 'active']);
    expect(first.data[0]).toMatchObject({ object: 'audit_event', actor: ACTOR, target_type: 'organization', target_id: org.id });
    expect(first.data[0]!.id).toBeGreaterThan(first.data[1]!.id);
    expect(Date.parse(first.data[0]!.at)).not.toBeNaN();

    const second = await auditPage(`target_id=${org.id}&limit=2&before=${first.data[1]!.id}`);
    expect(second.has_more).toBe(false);
    expect(second.data.map((e) => e.action)).toEqual(['organization.update', 'organization.create']);

    expect((await auditPage(`target_id=${org.id}&action=organization.update`)).data).toHaveLength(3);
    expect((await auditPage(`target_id=${org.id}&action=organization.create&target_type=organization`)).data).toHaveLength(1);
    expect((await auditPage(`target_id=${org.id}&target_type=user`)).data).toHaveLength(0);
    expect((await auditPage(`target_id=${org.id}&since=${encodeURIComponent(start)}`)).data).toHaveLength(4);
    expect((await auditPage(`target_id=${org.id}&until=${encodeURIComponent(start)}`)).data).toHaveLength(0);
    const later = new Date(Date.now() + 3_600_000).toISOString();
    expect((await auditPage(`target_id=${org.id}&since=${encodeURIComponent(later)}`)).data).toHaveLength(0);
    expect((await auditPage(`target_id=${org.id}&until=${encodeURIComponent(later)}`)).data).toHaveLength(4);
  });

  it('checks its query and needs the admin token', async () => {
    for (const q of ['limit=0', 'limit=1001', 'before=abc', 'since=yesterday']) {
      const res = await app.inject({ method: 'GET', url: `/admin/v1/audit?${q}`, headers: adminHeaders });
      expect(res.statusCode, q).toBe(400);
    }
    const res = await app.inject({ method: 'GET', url: '/admin/v1/audit' });
    expect(res.statusCode).toBe(401);
  });
});
