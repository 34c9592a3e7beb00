import { randomUUID } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../src/db/client.ts';
import { blobChunks, conversationSummaries, conversations, files, responses, usageTotals } from '../src/db/schema.ts';
import { purgeExpired } from '../src/data/retention.ts';
import { adminHeaders, bearer, createTenant, type Tenant } from './helpers/app.ts';
import { startHarness, type Harness } from './helpers/harness.ts';

/** Export, erasure and retention of a person's data. */

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => h.close());

const admin = (method: 'POST' | 'PATCH' | 'GET', url: string, payload?: object) =>
  h.app.inject({ method, url: `/admin/v1${url}`, headers: adminHeaders, ...(payload ? { payload } : {}) });

/** A tenant with two turns of one conversation, and a stored file of `size` bytes. */
async function populated(marker: string, size = 300_001) {
  const t = await createTenant(h.app);
  const first = (await h.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(t.key), payload: { input: `first ${marker}`, stream: false } })).json();
  await h.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(t.key), payload: { input: `second ${marker}`, previous_response_id: first.id, stream: false } });
  const bytes = Buffer.alloc(size, 7);
  bytes.write(marker, 0);
  const key = `file-${randomUUID()}`;
  // Two chunks whose lengths are not multiples of three: the export's base64 must still join.
  await h.database.db.insert(blobChunks).values([
    { key, seq: 0, data: bytes.subarray(0, 262_144) },
    { key, seq: 1, data: bytes.subarray(262_144) },
  ]);
  const [file] = await h.database.db
    .insert(files)
    .values({ userId: t.userId, organizationId: t.orgId, filename: 'notes.txt', purpose: 'assistants', bytes: size, sha256: 'x', storage: 'database', storageKey: key, status: 'processed' })
    .returning();
  return { t, conversationId: first.conversation_id as string, file: file!, bytes, key };
}

/** Every row of every table, as text, that contains `needle`: the test of "nothing left behind". */
async function rowsMentioning(needle: string): Promise<string[]> {
  const tables = rowsOf<{ table_name: string }>(
    await h.database.db.execute(sql`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`),
  ).map((r) => r.table_name);
  const found: string[] = [];
  for (const table of tables) {
    const rows = rowsOf<{ n: number | string }>(
      await h.database.db.execute(sql`select count(*) as n from ${sql.identifier(table)} t where t::text like ${`%${needle}%`}`),
    );
    if (Number(rows[0]?.n ?? 0) > 0) found.push(table);
  }
  return found;
}

describe('export', () => {
  it("holds the user's conversations, responses, files with their bytes, keys without secrets, and usage", async () => {
    const marker = `exp-${randomUUID()}`;
    const { t, bytes } = await populated(marker);
    const [conv] = await h.database.db.select({ id: conversations.id }).from(conversations).where(eq(conversations.userId, t.userId));
    await h.database.db.insert(conversationSummaries).values({ conversationId: conv!.id, text: `summary ${marker}`, throughPosition: 1, tokens: 3, model: 'm' });
    const res = await admin('POST', `/users/${t.userId}/export`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-disposition']).toContain(`user-${t.userId}.json`);
    const doc = res.json();
    expect(doc.user.id).toBe(t.userId);
    expect(doc.api_keys).toEqual([expect.objectContaining({ id: t.keyId, label: 'test' })]);
    expect(JSON.stringify(doc.api_keys)).not.toContain('secret');
    expect(doc.conversations).toHaveLength(1);
    expect(doc.conversations[0].items.map((i: { role: string }) => i.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
    expect(doc.conversations[0].summary).toMatchObject({ text: `summary ${marker}`, through_position: 1 });
    expect(doc.responses).toHaveLength(2);
    expect(Buffer.from(doc.files[0].content_base64, 'base64').equals(bytes)).toBe(true);
    expect(doc.usage.length).toBeGreaterThan(0);
    expect(res.body).not.toContain(t.key);
  });

  it('is a 404 for a user that does not exist, and is audited', async () => {
    expect((await admin('POST', `/users/${randomUUID()}/export`)).statusCode).toBe(404);
    const { t } = await populated(`aud-${randomUUID()}`, 10);
    await admin('POST', `/users/${t.userId}/export`);
    const audit = (await admin('GET', `/audit?target_id=${t.userId}`)).json();
    expect(audit.data.map((e: { action: string }) => e.action)).toContain('user.export');
  });
});

describe('erasure', () => {
  it('needs confirmation, then leaves no content behind: only anonymous usage and the audit trail name the id', async () => {
    const marker = `era-${randomUUID()}`;
    const { t, key } = await populated(marker);
    const unconfirmed = await admin('POST', `/users/${t.userId}/erase`, {});
    expect(unconfirmed.statusCode).toBe(400);
    expect(unconfirmed.json().error.code).toBe('confirmation_required');

    const orgUsageBefore = await h.database.db.select().from(usageTotals).where(eq(usageTotals.subjectId, t.orgId));
    const res = await admin('POST', `/users/${t.userId}/erase`, { confirm: true });
    expect(res.json()).toMatchObject({ object: 'user.erased', id: t.userId, conversations: 1, responses: 2, files: 1, api_keys: 1 });

    expect(await rowsMentioning(marker)).toEqual([]);
    expect((await rowsMentioning(t.userId)).sort()).toEqual(['audit_events', 'usage_totals']);
    expect(await h.database.db.select().from(blobChunks).where(eq(blobChunks.key, key))).toEqual([]);
    expect((await h.app.inject({ method: 'GET', url: '/v1/models', headers: bearer(t.key) })).statusCode).toBe(401);
    // Billing keeps its numbers.
    expect(await h.database.db.select().from(usageTotals).where(eq(usageTotals.subjectId, t.orgId))).toEqual(orgUsageBefore);
    expect((await admin('POST', `/users/${t.userId}/erase`, { confirm: true })).statusCode).toBe(404);
  });

  it('erases a whole organisation', async () => {
    const marker = `org-${randomUUID()}`;
    const { t } = await populated(marker, 10);
    const res = await admin('POST', `/organizations/${t.orgId}/erase`, { confirm: true });
    expect(res.json()).toMatchObject({ object: 'organization.erased', users: 1, responses: 2 });
    expect(await rowsMentioning(marker)).toEqual([]);
    expect((await admin('GET', `/organizations/${t.orgId}`)).statusCode).toBe(404);
  });
});

describe('retention', () => {
  async function age(t: Tenant, conversationId: string, days: number) {
    const when = sql`now() - make_interval(days => ${days})`;
    await h.database.db.update(responses).set({ createdAt: when }).where(eq(responses.userId, t.userId));
    await h.database.db.update(conversations).set({ updatedAt: when }).where(eq(conversations.id, conversationId));
    await h.database.db.update(files).set({ createdAt: when }).where(eq(files.userId, t.userId));
  }

  it("deletes what is older than the organisation's retention (or its plan's), and keeps the rest and the usage", async () => {
    const kept = await populated(`keep-${randomUUID()}`, 10);
    const old = await populated(`old-${randomUUID()}`, 10);
    const fresh = await populated(`fresh-${randomUUID()}`, 10);
    await age(kept.t, kept.conversationId, 400);
    await age(old.t, old.conversationId, 40);
    expect((await admin('PATCH', `/organizations/${old.t.orgId}`, { retention_days: 30 })).statusCode).toBe(200);
    expect((await admin('PATCH', `/organizations/${fresh.t.orgId}`, { retention_days: 30 })).statusCode).toBe(200);
    const usageBefore = await h.database.db.select().from(usageTotals).where(eq(usageTotals.subjectId, old.t.orgId));

    await purgeExpired(h.database.db, 1);

    const left = async (t: Tenant) => (await h.database.db.select().from(responses).where(eq(responses.userId, t.userId))).length;
    expect(await left(old.t)).toBe(0);
    // Its file (made 40 days ago) and the file's bytes went too; the fresh organisation's stayed.
    expect(await h.database.db.select().from(files).where(eq(files.id, old.file.id))).toEqual([]);
    expect(await h.database.db.select().from(blobChunks).where(eq(blobChunks.key, old.key))).toEqual([]);
    expect(await h.database.db.select().from(files).where(eq(files.id, fresh.file.id))).toHaveLength(1);
    expect(await h.database.db.select().from(conversations).where(eq(conversations.id, old.conversationId))).toEqual([]);
    expect(await left(fresh.t)).toBe(2);
    expect(await left(kept.t)).toBe(2); // no retention set: kept however old
    expect(await h.database.db.select().from(usageTotals).where(eq(usageTotals.subjectId, old.t.orgId))).toEqual(usageBefore);
  });

  it("applies a plan's retention to its organisations", async () => {
    const plan = `ret-${randomUUID().slice(0, 8)}`;
    expect((await h.app.inject({ method: 'PUT', url: `/admin/v1/plans/${plan}`, headers: adminHeaders, payload: { retention_days: 7 } })).statusCode).toBe(200);
    const old = await populated(`plan-${randomUUID()}`, 10);
    expect((await admin('PATCH', `/organizations/${old.t.orgId}`, { plan })).statusCode).toBe(200);
    await age(old.t, old.conversationId, 8);
    await purgeExpired(h.database.db);
    expect(await h.database.db.select().from(responses).where(eq(responses.userId, old.t.userId))).toEqual([]);
  });
});
