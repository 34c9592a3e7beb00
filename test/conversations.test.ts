import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import OpenAI, { NotFoundError } from 'openai';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { conversationItems, conversations, instances, responses } from '../src/db/schema.ts';
import { bearer, createTenant, type Tenant } from './helpers/app.ts';
import { resetUpstream, sentTranscript, startClientServer } from './helpers/clients.ts';
import { TEST_DATABASE_URL } from './helpers/db.ts';
import { eventually, type Harness } from './helpers/harness.ts';

/**
 * The conversations API through the official OpenAI SDK: a conversation
 * made, read, changed and deleted, its items listed page by page, added,
 * read and deleted; other users' conversations and foreign ids are 404s;
 * the list of one's conversations (ours); and a conversation made here,
 * continued by responses.create.
 */

let h: Harness;
let client: OpenAI;
let other: Tenant;
let otherClient: OpenAI;

beforeAll(async () => {
  h = await startClientServer();
  client = new OpenAI({ baseURL: `${h.origin}/v1`, apiKey: h.tenant.key });
  other = await createTenant(h.app);
  otherClient = new OpenAI({ baseURL: `${h.origin}/v1`, apiKey: other.key });
});
afterAll(async () => h.close());
beforeEach(() => resetUpstream(h));

const texts = (items: { type: string; content?: unknown; output?: unknown }[]) =>
  items.map((item) => (item.type === 'message' ? (item.content as { text: string }[]).map((p) => p.text).join('') : `${item.type}`));

describe('conversations', () => {
  it('creates one with items and metadata, retrieves, updates and deletes it', async () => {
    const before = Math.floor(Date.now() / 1000);
    const made = await client.conversations.create({
      metadata: { topic: 'rivers' },
      items: [
        { type: 'message', role: 'user', content: 'Name a river.' },
        { type: 'message', role: 'assistant', content: 'The Danube.' },
        { type: 'function_call', call_id: 'call_1', name: 'get_length', arguments: '{"river":"Danube"}' },
        { type: 'function_call_output', call_id: 'call_1', output: '2850 km' },
      ],
    });
    expect(made).toMatchObject({ object: 'conversation', metadata: { topic: 'rivers' } });
    // Seconds, as OpenAI's: not milliseconds.
    expect(made.created_at).toBeGreaterThanOrEqual(before - 1);
    expect(made.created_at).toBeLessThanOrEqual(Math.floor(Date.now() / 1000) + 1);

    expect(await client.conversations.retrieve(made.id)).toMatchObject({ id: made.id, object: 'conversation', metadata: { topic: 'rivers' } });

    const items = await client.conversations.items.list(made.id, { order: 'asc' });
    expect(items.data.map((i) => i.type)).toEqual(['message', 'message', 'function_call', 'function_call_output']);
    expect(items.data[0]).toMatchObject({ type: 'message', role: 'user', status: 'completed', content: [{ type: 'input_text', text: 'Name a river.' }] });
    expect(items.data[0]!.id).toMatch(/^msg_/);
    expect(items.data[1]).toMatchObject({ role: 'assistant', content: [{ text: 'The Danube.' }] });
    expect(items.data[2]).toMatchObject({ id: expect.stringMatching(/^fc_/), call_id: 'call_1', name: 'get_length', arguments: '{"river":"Danube"}' });
    expect(items.data[3]).toMatchObject({ id: expect.stringMatching(/^fco_/), call_id: 'call_1', output: '2850 km' });
    // Stored as the conversation's own: made by no response, sent as input.
    const rows = await h.database.db.select().from(conversationItems).where(eq(conversationItems.conversationId, made.id));
    expect(rows.every((r) => r.responseId === null && r.origin === 'input')).toBe(true);

    const updated = await client.conversations.update(made.id, { metadata: { topic: 'lakes', lang: 'en' } });
    expect(updated).toMatchObject({ id: made.id, metadata: { topic: 'lakes', lang: 'en' } });
    const titled = await h.app.inject({ method: 'POST', url: `/v1/conversations/${made.id}`, headers: bearer(h.tenant.key), payload: { title: 'Rivers of Europe' } });
    expect(titled.json()).toMatchObject({ title: 'Rivers of Europe', metadata: { topic: 'lakes', lang: 'en' } });
    const tooMany = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    await expect(client.conversations.update(made.id, { metadata: tooMany })).rejects.toMatchObject({ status: 400 });

    expect(await client.conversations.delete(made.id)).toEqual({ id: made.id, object: 'conversation.deleted', deleted: true });
    await expect(client.conversations.retrieve(made.id)).rejects.toBeInstanceOf(NotFoundError);
    expect(await h.database.db.select().from(conversationItems).where(eq(conversationItems.conversationId, made.id))).toEqual([]);
  });

  it('creates an empty one without a body', async () => {
    const made = await client.conversations.create();
    expect(made.metadata).toEqual({});
    const items = await client.conversations.items.list(made.id);
    expect(items.data).toEqual([]);
    expect(items.has_more).toBe(false);
  });

  it('refuses bad items by their place in `items`, and more than 20', async () => {
    const bad = await h.app.inject({ method: 'POST', url: '/v1/conversations', headers: bearer(h.tenant.key), payload: { items: [{ role: 'user', content: 'ok' }, { role: 'robot', content: 'x' }] } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.param).toBe('items[1].role');
    const many = Array.from({ length: 21 }, () => ({ role: 'user', content: 'x' }));
    await expect(client.conversations.create({ items: many as OpenAI.Responses.ResponseInputItem[] })).rejects.toMatchObject({ status: 400 });
  });

  it('adds, lists page by page, retrieves and deletes items', async () => {
    const made = await client.conversations.create({ items: [{ type: 'message', role: 'user', content: 'one' }] });
    const added = await client.conversations.items.create(made.id, {
      items: ['two', 'three', 'four', 'five'].map((t) => ({ type: 'message' as const, role: 'user' as const, content: t })),
    });
    expect(added).toMatchObject({ object: 'list', has_more: false });
    expect(texts(added.data)).toEqual(['two', 'three', 'four', 'five']);

    // Newest first by default; the SDK follows `last_id` through the pages.
    const first = await client.conversations.items.list(made.id, { limit: 2 });
    expect(texts(first.data)).toEqual(['five', 'four']);
    expect(first.has_more).toBe(true);
    const all: string[] = [];
    for await (const item of client.conversations.items.list(made.id, { limit: 2 })) all.push(...texts([item]));
    expect(all).toEqual(['five', 'four', 'three', 'two', 'one']);
    const asc: string[] = [];
    for await (const item of client.conversations.items.list(made.id, { limit: 3, order: 'asc' })) asc.push(...texts([item]));
    expect(asc).toEqual(['one', 'two', 'three', 'four', 'five']);

    const three = added.data[1]!;
    const threeId = three.id!;
    expect(await client.conversations.items.retrieve(threeId, { conversation_id: made.id })).toEqual(three);
    const conversation = await client.conversations.items.delete(threeId, { conversation_id: made.id });
    expect(conversation).toMatchObject({ id: made.id, object: 'conversation' });
    await expect(client.conversations.items.retrieve(threeId, { conversation_id: made.id })).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.conversations.items.delete(threeId, { conversation_id: made.id })).rejects.toBeInstanceOf(NotFoundError);
    const left: string[] = [];
    for await (const item of client.conversations.items.list(made.id)) left.push(...texts([item]));
    expect(left).toEqual(['five', 'four', 'two', 'one']);

    const badAfter = await h.app.inject({ method: 'GET', url: `/v1/conversations/${made.id}/items?after=msg_nothere`, headers: bearer(h.tenant.key) });
    expect(badAfter.statusCode).toBe(400);
  });

  it("is the same 404 for another user's conversation, a missing one and a foreign id", async () => {
    const mine = await client.conversations.create({ items: [{ type: 'message', role: 'user', content: 'private' }] });
    const [item] = (await client.conversations.items.list(mine.id)).data;
    for (const id of [mine.id, randomUUID(), 'conv_68af0000000000000000000000000000']) {
      for (const call of [
        () => otherClient.conversations.retrieve(id),
        () => otherClient.conversations.update(id, { metadata: { x: 'y' } }),
        () => otherClient.conversations.delete(id),
        () => otherClient.conversations.items.list(id),
        () => otherClient.conversations.items.create(id, { items: [{ type: 'message', role: 'user', content: 'hi' }] }),
        () => otherClient.conversations.items.retrieve(item!.id!, { conversation_id: id }),
        () => otherClient.conversations.items.delete(item!.id!, { conversation_id: id }),
      ]) {
        const err = await call().then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(NotFoundError);
        expect((err as NotFoundError).code).toBe('conversation_not_found');
      }
    }
    // Nothing was changed by the attempts.
    expect(await client.conversations.retrieve(mine.id)).toMatchObject({ metadata: {} });
    expect((await client.conversations.items.list(mine.id)).data).toHaveLength(1);
    // An item of one conversation is not found through another.
    const another = await client.conversations.create();
    await expect(client.conversations.items.retrieve(item!.id!, { conversation_id: another.id })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('lists conversations newest first, hidden ones only when asked, page by page', async () => {
    const tenant = await createTenant(h.app);
    const list = async (query: string) => {
      const res = await h.app.inject({ method: 'GET', url: `/v1/conversations${query}`, headers: bearer(tenant.key) });
      expect(res.statusCode).toBe(200);
      return res.json<{ data: { id: string; title: string | null }[]; has_more: boolean; last_id: string | null }>();
    };
    const own = new OpenAI({ baseURL: `${h.origin}/v1`, apiKey: tenant.key });
    const a = await own.conversations.create({ metadata: { n: 'a' } });
    const b = await own.conversations.create({ metadata: { n: 'b' } });
    h.upstream.queue.push({ chunks: ['Stateless.'] });
    const stateless = await own.responses.create({ model: 'auto', input: 'A question without a conversation', stream: false });
    const hiddenId = (stateless as unknown as { conversation_id: string }).conversation_id;
    // Items added later make a conversation the most recently active.
    await own.conversations.items.create(a.id, { items: [{ type: 'message', role: 'user', content: 'later' }] });

    const visible = await list('');
    expect(visible.data.map((c) => c.id)).toEqual([a.id, b.id]);
    const withHidden = await list('?include_hidden=true');
    expect(withHidden.data.map((c) => c.id)).toEqual([a.id, hiddenId, b.id]);
    expect(withHidden.data[1]!.title).toBe('A question without a conversation');

    const page1 = await list('?include_hidden=true&limit=2');
    expect(page1.data.map((c) => c.id)).toEqual([a.id, hiddenId]);
    expect(page1.has_more).toBe(true);
    const page2 = await list(`?include_hidden=true&limit=2&after=${page1.last_id}`);
    expect(page2.data.map((c) => c.id)).toEqual([b.id]);
    expect(page2.has_more).toBe(false);
    // Another user's list is theirs alone.
    const others = await h.app.inject({ method: 'GET', url: '/v1/conversations?include_hidden=true', headers: bearer(other.key) });
    expect(others.json<{ data: { id: string }[] }>().data.map((c) => c.id)).not.toContain(a.id);
  });

  it('is continued by responses.create, its items as the history', async () => {
    const made = await client.conversations.create({
      items: [
        { type: 'message', role: 'user', content: 'My name is Ana.' },
        { type: 'message', role: 'assistant', content: 'Hello Ana.' },
      ],
    });
    h.upstream.queue.push({ chunks: ['Your name is Ana.'] });
    const res = await client.responses.create({ model: 'auto', input: 'What is my name?', conversation: made.id, stream: false });
    expect(res.output_text).toBe('Your name is Ana.');
    expect(sentTranscript(h, 0)).toEqual([
      { role: 'user', text: 'My name is Ana.' },
      { role: 'assistant', text: 'Hello Ana.' },
      { role: 'user', text: 'What is my name?' },
    ]);
    const items: string[] = [];
    for await (const item of client.conversations.items.list(made.id, { order: 'asc' })) items.push(...texts([item]));
    expect(items).toEqual(['My name is Ana.', 'Hello Ana.', 'What is my name?', 'Your name is Ana.']);
    // Made through the API: listed, and its activity moved by the response.
    const listed = await h.app.inject({ method: 'GET', url: '/v1/conversations', headers: bearer(h.tenant.key) });
    expect(listed.json<{ data: { id: string }[] }>().data[0]!.id).toBe(made.id);

    // Deleting it removes its responses' content; their usage rows stay.
    expect((await client.conversations.delete(made.id)).deleted).toBe(true);
    await expect(client.responses.retrieve(res.id)).rejects.toBeInstanceOf(NotFoundError);
    const [row] = await h.database.db.select().from(responses).where(eq(responses.id, res.id));
    expect(row).toMatchObject({ body: null, conversationId: null, status: 'completed' });
    expect(row!.totalTokens).toBeGreaterThan(0);
    expect(await h.database.db.select().from(conversations).where(eq(conversations.id, made.id))).toEqual([]);
  });

  it('takes item references to your own items, with the result of a referenced call', async () => {
    const source = await client.conversations.create({
      items: [
        { type: 'function_call', call_id: 'call_ref', name: 'get_length', arguments: '{}' },
        { type: 'function_call_output', call_id: 'call_ref', output: '42' },
      ],
    });
    const [call] = (await client.conversations.items.list(source.id, { order: 'asc' })).data;
    const copy = await client.conversations.items.create((await client.conversations.create()).id, { items: [{ type: 'item_reference', id: call!.id! }] });
    expect(copy.data).toEqual([
      expect.objectContaining({ type: 'function_call', call_id: 'call_ref' }),
      expect.objectContaining({ type: 'function_call_output', call_id: 'call_ref', output: '42' }),
    ]);
    // A copy has an id of its own; someone else's item is not found.
    expect(copy.data[0]!.id).not.toBe(call!.id);
    await expect(otherClient.conversations.create({ items: [{ type: 'item_reference', id: call!.id! }] })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('does not list the instructions as an item', async () => {
    h.upstream.queue.push({ chunks: ['Ok.'] });
    const res = await client.responses.create({ model: 'auto', input: 'Hi', instructions: 'Be brief.', stream: false });
    const conversationId = (res as unknown as { conversation_id: string }).conversation_id;
    const items = await client.conversations.items.list(conversationId, { order: 'asc' });
    expect(texts(items.data)).toEqual(['Hi', 'Ok.']);
  });

  it('refuses to delete a conversation while one of its responses is in progress', async () => {
    const made = await client.conversations.create();
    const [user] = await h.database.db.select({ organizationId: conversations.organizationId }).from(conversations).where(eq(conversations.id, made.id));
    // Its instance is alive, so recovery leaves it in progress.
    const instanceId = randomUUID();
    await h.database.db.insert(instances).values({ id: instanceId });
    await h.database.db.insert(responses).values({
      instanceId,
      userId: h.tenant.userId,
      organizationId: user!.organizationId,
      conversationId: made.id,
      model: 'test',
      status: 'in_progress',
      body: {},
    });
    await expect(client.conversations.delete(made.id)).rejects.toMatchObject({ status: 409 });
    expect(await client.conversations.retrieve(made.id)).toMatchObject({ id: made.id });
  });
});

if (TEST_DATABASE_URL !== undefined) {
  const databaseUrl = TEST_DATABASE_URL;
  describe('a conversation deleted while a response continuing it is admitted', () => {
    it('is a clean 404 for that response, not a server error', async () => {
      const made = await client.conversations.create();
      // Another session deletes the conversation and holds its transaction open: the request passes its checks
      // (the row is still visible), then its admission waits on the row, and fails once the delete commits.
      const other = new pg.Client({ connectionString: databaseUrl });
      await other.connect();
      try {
        const { rows } = await other.query<{ pid: number }>('select pg_backend_pid() as pid');
        await other.query('begin');
        await other.query('delete from conversations where id = $1', [made.id]);
        const pending = h.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(h.tenant.key), payload: { input: 'Hi', conversation_id: made.id, stream: false } });
        // Wait until the admission is blocked on the deleted row.
        await eventually(async () => {
          // Statistics views keep one snapshot per transaction unless it is cleared.
          await other.query('select pg_stat_clear_snapshot()');
          const r = await other.query<{ n: string }>('select count(*) as n from pg_stat_activity where $1 = any(pg_blocking_pids(pid))', [rows[0]!.pid]);
          return Number(r.rows[0]!.n) > 0 ? true : undefined;
        });
        await other.query('commit');
        const res = await pending;
        expect(res.statusCode).toBe(404);
        expect(res.json().error).toMatchObject({ code: 'conversation_not_found' });
      } finally {
        await other.end();
      }
    });
  });
}
