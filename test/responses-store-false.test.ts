import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import OpenAI, { NotFoundError } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { conversationItems, conversations, responses, usageTotals } from '../src/db/schema.ts';
import { Recovery } from '../src/responses/recovery.ts';
import { createTenant, type Tenant } from './helpers/app.ts';
import { gate, resetUpstream, sentTranscript } from './helpers/clients.ts';
import { eventually, startHarness, type Harness } from './helpers/harness.ts';
import { insertOrphan } from './helpers/orphan.ts';

/**
 * `store: false`: the client gets the whole answer, streamed or as JSON,
 * and the server keeps only what metering needs: the response's row with
 * status, model, token counts and times, without its body; no items in any
 * conversation; nothing to retrieve or continue from. Also after a crash.
 */

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ env: { EUGPT_CHECKPOINT_MS: '100' } });
});
afterAll(async () => h.close());
beforeEach(() => resetUpstream(h));

/** A fresh user per test, so its usage and conversations are its own. */
async function user(): Promise<{ tenant: Tenant; client: OpenAI }> {
  const tenant = await createTenant(h.app);
  return { tenant, client: new OpenAI({ baseURL: `${h.origin}/v1`, apiKey: tenant.key }) };
}

async function rowOf(id: string) {
  const [row] = await h.database.db.select().from(responses).where(eq(responses.id, id));
  return row!;
}

const itemsOf = (conversationId: string) => h.database.db.select().from(conversationItems).where(eq(conversationItems.conversationId, conversationId));

async function usageOf(userId: string) {
  const [row] = await h.database.db
    .select({ total: usageTotals.totalTokens, requests: usageTotals.requests })
    .from(usageTotals)
    .where(and(eq(usageTotals.subjectType, 'user'), eq(usageTotals.subjectId, userId), eq(usageTotals.window, 'day')));
  return row ?? { total: 0, requests: 0 };
}

/** What must hold of every finished `store: false` response: its facts and usage kept, nothing of its content. */
async function expectNothingKept(client: OpenAI, id: string, userId: string) {
  const row = await rowOf(id);
  expect(row).toMatchObject({ status: 'completed', body: null, pending: null, instanceId: null });
  expect(row.model).not.toBe('');
  expect(row.inputTokens).toBeGreaterThan(0);
  expect(row.outputTokens).toBeGreaterThan(0);
  expect(row.completedAt).not.toBeNull();
  expect(await itemsOf(row.conversationId!)).toEqual([]);
  const [conversation] = await h.database.db.select().from(conversations).where(eq(conversations.id, row.conversationId!));
  expect(conversation).toMatchObject({ hidden: true, title: null });

  await expect(client.responses.retrieve(id)).rejects.toBeInstanceOf(NotFoundError);
  await expect(client.responses.inputItems.list(id)).rejects.toBeInstanceOf(NotFoundError);
  const followUp = await client.responses.create({ model: 'auto', input: 'And then?', previous_response_id: id, stream: false }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(followUp).toBeInstanceOf(NotFoundError);
  expect((followUp as NotFoundError).code).toBe('response_not_found');
  const usage = await usageOf(userId);
  expect(usage.requests).toBe(1);
  expect(Number(usage.total)).toBe(row.totalTokens);
}

describe('store: false', () => {
  it('answers JSON in full and keeps only the facts', async () => {
    const { tenant, client } = await user();
    h.upstream.queue.push({ chunks: ['A private ', 'answer.'], usage: { prompt_tokens: 9, completion_tokens: 3 } });
    const res = await client.responses.create({ model: 'auto', input: 'A private question', instructions: 'Be discreet.', store: false, stream: false });
    expect(res).toMatchObject({ status: 'completed', output_text: 'A private answer.' });
    expect(res.usage).toMatchObject({ input_tokens: 9, output_tokens: 3 });
    await expectNothingKept(client, res.id, tenant.userId);
    expect(await rowOf(res.id)).toMatchObject({ inputTokens: 9, outputTokens: 3, totalTokens: 12 });
  });

  it('streams in full, and holds no content while in progress either', async () => {
    const { tenant, client } = await user();
    const held = gate();
    h.upstream.queue.push({ chunks: ['Streamed ', 'and ', 'forgotten.'], hold: held.promise });
    const stream = await client.responses.create({ model: 'auto', input: 'A secret', store: false, stream: true });
    const events = [];
    let id: string | undefined;
    let checked = false;
    for await (const event of stream) {
      events.push(event);
      if (event.type === 'response.created') id = event.response.id;
      if (event.type === 'response.output_text.delta' && id !== undefined && !checked) {
        checked = true;
        // Several checkpoint periods pass: the row still has no body, and nothing of the request for recovery.
        await new Promise((r) => setTimeout(r, 350));
        const row = await rowOf(id);
        expect(row).toMatchObject({ status: 'in_progress', body: null });
        expect((row.pending as { input: unknown[] }).input).toEqual([]);
        await expect(client.responses.retrieve(id)).rejects.toBeInstanceOf(NotFoundError);
        held.open();
      }
    }
    expect(checked).toBe(true);
    const done = events.at(-1)!;
    expect(done.type).toBe('response.completed');
    expect(done.type === 'response.completed' && done.response.output_text).toBe('Streamed and forgotten.');
    await expectNothingKept(client, id!, tenant.userId);
  });

  it('reads the history of a conversation it continues, and adds nothing to it', async () => {
    const { client } = await user();
    const made = await client.conversations.create({ items: [{ type: 'message', role: 'user', content: 'My code word is heron.' }] });
    h.upstream.queue.push({ chunks: ['Heron.'] });
    const res = await client.responses.create({ model: 'auto', input: 'What is my code word?', conversation: made.id, store: false, stream: false });
    expect(res.output_text).toBe('Heron.');
    expect(sentTranscript(h, 0)).toEqual([
      { role: 'user', text: 'My code word is heron.' },
      { role: 'user', text: 'What is my code word?' },
    ]);
    expect((await itemsOf(made.id)).map((i) => i.content)).toEqual([[{ type: 'input_text', text: 'My code word is heron.' }]]);
    expect(await rowOf(res.id)).toMatchObject({ conversationId: made.id, body: null, status: 'completed' });
  });

  it('is stored as usual when store is true or absent', async () => {
    const { client } = await user();
    h.upstream.queue.push({ chunks: ['Kept.'] });
    const res = await client.responses.create({ model: 'auto', input: 'Keep this', store: true, stream: false });
    expect((await client.responses.retrieve(res.id)).output_text).toBe('Kept.');
    expect(await itemsOf((await rowOf(res.id)).conversationId!)).toHaveLength(2);
  });

  it('after a crash, is finalised with its usage and still no content', async () => {
    const { tenant } = await user();
    // The row a store: false admission writes, left by an instance that died (it has no heartbeat).
    const { id, conversationId } = await insertOrphan(h.database.db, { userId: tenant.userId, organizationId: tenant.orgId }, { prompt: 40, output: 7 });
    const sweeper = new Recovery(h.database.db, randomUUID(), { heartbeatMs: 1000, staleMs: 600_000, checkpointMs: 1000, onError: () => undefined, onRecovered: () => undefined });
    await eventually(async () => ((await sweeper.sweep()) > 0 || (await rowOf(id)).status !== 'in_progress' ? true : undefined));
    const row = await rowOf(id);
    expect(row).toMatchObject({ status: 'incomplete', body: null, pending: null, inputTokens: 40, outputTokens: 7, totalTokens: 47 });
    expect(await itemsOf(conversationId)).toEqual([]);
    expect(Number((await usageOf(tenant.userId)).total)).toBe(47);
    const [count] = await h.database.db.select({ n: sql<number>`count(*)::int` }).from(conversationItems).where(eq(conversationItems.responseId, id));
    expect(count!.n).toBe(0);
  });
});
