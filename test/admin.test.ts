import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertProjectMember } from '../src/tenancy/projects.ts';
import type { Database } from '../src/db/client.ts';
import { adminHeaders, createTenant, testApp, type Tenant } from './helpers/app.ts';
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

const caller = (t: Tenant) => ({ userId: t.userId, organizationId: t.orgId });

const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) => {
  const res = await app.inject({ method, url: `/admin/v1${url}`, headers: adminHeaders, ...(payload ? { payload } : {}) });
  return { status: res.statusCode, body: res.json() };
};

describe('admin token', () => {
  it('is required, and compared exactly', async () => {
    const none = await app.inject({ method: 'GET', url: '/admin/v1/organizations' });
    expect(none.statusCode).toBe(401);
    expect(none.json().error.code).toBe('missing_admin_token');
    const wrong = await app.inject({ method: 'GET', url: '/admin/v1/organizations', headers: { authorization: `${adminHeaders.authorization}x` } });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error.code).toBe('invalid_admin_token');
  });

  it('when not configured, makes the admin API say how to enable it', async () => {
    const off = await testApp(database, { EUGPT_ADMIN_TOKEN: '' });
    try {
      const res = await off.inject({ method: 'GET', url: '/admin/v1/organizations', headers: adminHeaders });
      expect(res.statusCode).toBe(401);
      expect(res.json().error).toMatchObject({ code: 'admin_api_disabled', message: expect.stringContaining('EUGPT_ADMIN_TOKEN') });
    } finally {
      await off.close();
    }
  });

  it('is not an API key, and an API key is not an admin token', async () => {
    const t = await createTenant(app);
    const res = await app.inject({ method: 'GET', url: '/admin/v1/organizations', headers: { authorization: `Bearer ${t.key}` } });
    expect(res.statusCode).toBe(401);
    const v1 = await app.inject({ method: 'GET', url: '/v1/models', headers: adminHeaders });
    expect(v1.statusCode).toBe(401);
  });
});

describe('organisations and users', () => {
  it('creates, gets and lists them', async () => {
    const org = await call('POST', '/organizations', { name: '  Acme Europe  ' });
    expect(org.status).toBe(201);
    expect(org.body).toMatchObject({ object: 'organization', name: 'Acme Europe', plan: 'default', status: 'active', api_access: true });
    expect(Date.parse(org.body.created_at)).not.toBeNaN();
    expect((await call('GET', `/organizations/${org.body.id}`)).body).toEqual(org.body);

    const email = `Ada.${randomUUID()}@Example.EU`;
    const user = await call('POST', '/users', { organization_id: org.body.id, email, role: 'owner' });
    expect(user.status).toBe(201);
    expect(user.body).toMatchObject({ object: 'user', organization_id: org.body.id, email: email.toLowerCase(), role: 'owner' });
    expect((await call('GET', `/users/${user.body.id}`)).body).toEqual(user.body);
    const listed = await call('GET', `/users?organization_id=${org.body.id}`);
    expect(listed.body).toEqual({ object: 'list', data: [user.body], has_more: false });
  });

  it('refuses a second user with the same email, whatever its case', async () => {
    const t = await createTenant(app);
    const email = `dup.${randomUUID()}@example.eu`;
    expect((await call('POST', '/users', { organization_id: t.orgId, email })).status).toBe(201);
    const again = await call('POST', '/users', { organization_id: t.orgId, email: email.toUpperCase() });
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'email_taken', param: 'email' });
  });

  it('answers 404 for unknown organisations and users', async () => {
    const id = randomUUID();
    expect((await call('GET', `/organizations/${id}`)).body.error.code).toBe('organization_not_found');
    expect((await call('GET', `/users/${id}`)).body.error.code).toBe('user_not_found');
    const user = await call('POST', '/users', { organization_id: id, email: `${randomUUID()}@example.eu` });
    expect(user.status).toBe(404);
    expect(user.body.error.code).toBe('organization_not_found');
  });

  it('rejects a bad email and an unknown role', async () => {
    const t = await createTenant(app);
    const email = await call('POST', '/users', { organization_id: t.orgId, email: 'not-an-email' });
    expect(email.status).toBe(400);
    expect(email.body.error.param).toBe('email');
    const role = await call('POST', '/users', { organization_id: t.orgId, email: `${randomUUID()}@example.eu`, role: 'god' });
    expect(role.status).toBe(400);
    expect(role.body.error.param).toBe('role');
  });

  it('pages through lists with limit and after', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await call('POST', '/organizations', { name: `Paged ${i}` })).body.id);
    const seen: string[] = [];
    let after: string | undefined;
    for (let pages = 0; pages < 1000; pages++) {
      const page = await call('GET', `/organizations?limit=2${after ? `&after=${after}` : ''}`);
      expect(page.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.data.map((o: { id: string }) => o.id));
      if (!page.body.has_more) break;
      after = page.body.data.at(-1).id;
    }
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of ids) expect(seen).toContain(id);
    expect((await call('GET', '/organizations?limit=0')).status).toBe(400);
    expect((await call('GET', '/organizations?limit=1001')).status).toBe(400);
  });
});

describe('API keys', () => {
  it('returns the secret once, and never again in listings', async () => {
    const t = await createTenant(app);
    const created = await app.inject({ method: 'POST', url: '/admin/v1/api-keys', headers: adminHeaders, payload: { user_id: t.userId, label: 'deploy' } });
    expect(created.statusCode).toBe(201);
    expect(created.headers['cache-control']).toBe('no-store');
    const key = created.json();
    expect(key.key).toMatch(/^eugpt_[0-9A-Za-z]{43}$/);
    expect(key.prefix).toBe(key.key.slice(0, 12));

    const list = await call('GET', `/api-keys?user_id=${t.userId}`);
    expect(list.body.data).toHaveLength(2);
    const text = JSON.stringify(list.body);
    expect(text).not.toContain(key.key);
    expect(text).not.toContain(t.key);
    expect(text).not.toMatch(/hash/);
  });

  it('revokes idempotently, keeping the first revocation time', async () => {
    const t = await createTenant(app);
    const first = await call('POST', `/api-keys/${t.keyId}/revoke`);
    expect(first.status).toBe(200);
    expect(first.body.revoked_at).not.toBeNull();
    const second = await call('POST', `/api-keys/${t.keyId}/revoke`);
    expect(second.body.revoked_at).toBe(first.body.revoked_at);
  });

  it('answers 404 for unknown users and keys', async () => {
    expect((await call('POST', '/api-keys', { user_id: randomUUID(), label: 'x' })).body.error.code).toBe('user_not_found');
    expect((await call('GET', `/api-keys?user_id=${randomUUID()}`)).body.error.code).toBe('user_not_found');
    expect((await call('POST', `/api-keys/${randomUUID()}/revoke`)).body.error.code).toBe('api_key_not_found');
  });
});

describe('projects', () => {
  it('creates projects and manages members of the same organisation', async () => {
    const t = await createTenant(app);
    const project = await call('POST', '/projects', { organization_id: t.orgId, name: 'Audit' });
    expect(project.status).toBe(201);
    expect(project.body).toMatchObject({ object: 'project', organization_id: t.orgId, name: 'Audit' });
    const dup = await call('POST', '/projects', { organization_id: t.orgId, name: 'Audit' });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe('project_name_taken');

    const pid = project.body.id as string;
    await expect(assertProjectMember(database.db, pid, caller(t))).rejects.toMatchObject({ status: 403, code: 'project_forbidden' });
    const added = await call('POST', `/projects/${pid}/members`, { user_id: t.userId });
    expect(added.status).toBe(200);
    expect(added.body).toMatchObject({ object: 'project_member', project_id: pid, user_id: t.userId });
    expect((await call('POST', `/projects/${pid}/members`, { user_id: t.userId })).status).toBe(200);
    expect((await call('GET', `/projects/${pid}/members`)).body.data).toHaveLength(1);
    await expect(assertProjectMember(database.db, pid, caller(t))).resolves.toMatchObject({ id: pid });

    const removed = await call('DELETE', `/projects/${pid}/members/${t.userId}`);
    expect(removed.body).toMatchObject({ deleted: true });
    expect((await call('GET', `/projects/${pid}/members`)).body.data).toHaveLength(0);
    expect((await call('DELETE', `/projects/${pid}/members/${t.userId}`)).body.error.code).toBe('project_member_not_found');
  });

  it('refuses members from another organisation and unknown ids', async () => {
    const a = await createTenant(app);
    const b = await createTenant(app);
    const pid = (await call('POST', '/projects', { organization_id: a.orgId, name: 'P' })).body.id;
    const cross = await call('POST', `/projects/${pid}/members`, { user_id: b.userId });
    expect(cross.status).toBe(400);
    expect(cross.body.error.code).toBe('user_not_in_organization');
    expect((await call('POST', `/projects/${pid}/members`, { user_id: randomUUID() })).body.error.code).toBe('user_not_found');
    expect((await call('POST', `/projects/${randomUUID()}/members`, { user_id: a.userId })).body.error.code).toBe('project_not_found');
    expect((await call('POST', '/projects', { organization_id: randomUUID(), name: 'P' })).body.error.code).toBe('organization_not_found');
    await expect(assertProjectMember(database.db, randomUUID(), caller(a))).rejects.toMatchObject({ status: 404, code: 'project_not_found' });
  });

  it("hides another organisation's project as not found, and forbids only a non-member of the caller's own", async () => {
    const a = await createTenant(app);
    const b = await createTenant(app);
    const pid = (await call('POST', '/projects', { organization_id: a.orgId, name: 'Private' })).body.id as string;
    await expect(assertProjectMember(database.db, pid, caller(b))).rejects.toMatchObject({ status: 404, code: 'project_not_found' });
    await expect(assertProjectMember(database.db, pid, caller(a))).rejects.toMatchObject({ status: 403, code: 'project_forbidden' });
  });

  it('lists the projects of an organisation', async () => {
    const t = await createTenant(app);
    await call('POST', '/projects', { organization_id: t.orgId, name: 'One' });
    await call('POST', '/projects', { organization_id: t.orgId, name: 'Two' });
    const list = await call('GET', `/projects?organization_id=${t.orgId}`);
    expect(list.body.data.map((p: { name: string }) => p.name)).toEqual(['One', 'Two']);
  });
});
