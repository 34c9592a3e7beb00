import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitForSummary } from '../src/conversations/summary.ts';
import { conversationSummaries, usageTotals } from '../src/db/schema.ts';
import { countMessageTokens } from '../src/tokens.ts';
import { bearer, createTenant } from './helpers/app.ts';
import { startHarness, type Harness } from './helpers/harness.ts';
import type { SeenRequest } from './helpers/fake-openai.ts';

const WINDOW = 600;
const MAX_OUTPUT = 100;
let h: Harness;

beforeAll(async () => {
  // A small window, so that a conversation outgrows it within a few turns.
  h = await startHarness({ model: { context_window: WINDOW, max_output_tokens: MAX_OUTPUT } });
});
afterAll(async () => h.close());

const isSummaryCall = (r: SeenRequest) => String(r.body.messages[0]?.content ?? '').startsWith('You keep a running summary');

async function turn(conversationId: string | undefined, text: string, key = h.tenant.key) {
  const res = await h.app.inject({
    method: 'POST',
    url: '/v1/responses',
    headers: bearer(key),
    payload: { input: text, stream: false, ...(conversationId === undefined ? {} : { conversation_id: conversationId }) },
  });
  expect(res.statusCode).toBe(200);
  // The summary is made after the response: waiting for it makes each turn's prompt predictable.
  await h.app.summaries.idle();
  return res.json<{ id: string; conversation_id: string; usage: { total_tokens: number } }>();
}

const filler = 'the quarterly figures were discussed again in some detail '.repeat(3);

describe('summaries of long conversations', () => {
  it('a 200-turn conversation keeps answering within the window, its old turns folded into a summary', async () => {
    const tenant = await createTenant(h.app);
    const seenBefore = h.upstream.requests.length;
    const first = await turn(undefined, `turn 0: my name is Ada and my budget is 4711 euros. ${filler}`, tenant.key);
    const conversation = first.conversation_id;
    for (let n = 1; n < 200; n++) await turn(conversation, `turn ${n}: ${filler}`, tenant.key);

    const seen = h.upstream.requests.slice(seenBefore);
    const answers = seen.filter((r) => !isSummaryCall(r));
    const summaries = seen.filter(isSummaryCall);
    expect(answers).toHaveLength(200);
    // Every prompt fit the model's window with the answer's room kept.
    for (const r of answers) {
      expect(countMessageTokens(r.body.messages)).toBeLessThanOrEqual(WINDOW - MAX_OUTPUT);
      expect(r.body.max_tokens).toBe(MAX_OUTPUT);
    }
    // The summary was made incrementally: the first fold saw turn 0, each later one the summary before it.
    expect(summaries.length).toBeGreaterThan(5);
    expect(summaries[0]!.body.messages[1]!.content).toContain('User: turn 0: my name is Ada');
    expect(summaries[0]!.body.messages[1]!.content).not.toContain('Summary so far');
    expect(summaries.at(-1)!.body.messages[1]!.content).toMatch(/^Summary so far:\nHello, world\./);

    // The last prompt: the summary first (in the system message), then the newest turns, ending with the input.
    const last = answers.at(-1)!.body.messages;
    expect(last[0]).toEqual({ role: 'system', content: expect.stringMatching(/^Summary of the earlier part of this conversation[^\n]*\nHello, world\.$/) });
    expect(last.at(-1)).toEqual({ role: 'user', content: `turn 199: ${filler}` });
    expect(last.some((m) => m.content.startsWith('turn 198:'))).toBe(true);
    expect(last.some((m) => m.content.startsWith('turn 0:'))).toBe(false);

    const [row] = await h.database.db.select().from(conversationSummaries).where(eq(conversationSummaries.conversationId, conversation));
    expect(row).toMatchObject({ text: 'Hello, world.', model: 'llama-small' });
    expect(row!.throughPosition).toBeGreaterThan(300);

    // Metered: each summary call's tokens are the user's, as tokens and not as requests (the fake reports 11 + 3 per call).
    const [usage] = await h.database.db
      .select()
      .from(usageTotals)
      .where(and(eq(usageTotals.subjectType, 'user'), eq(usageTotals.subjectId, tenant.userId), eq(usageTotals.window, 'day')));
    expect(usage).toMatchObject({ requests: 200, inputTokens: 11 * (200 + summaries.length), outputTokens: 3 * (200 + summaries.length), reservedTokens: 0 });
  }, 120_000);

  it('deleting a response the summary covers drops the summary; the next overflow makes it again without that turn', async () => {
    const tenant = await createTenant(h.app);
    const first = await turn(undefined, `secret turn: the code word is xylophone. ${filler}`, tenant.key);
    const conversation = first.conversation_id;
    for (let n = 1; n < 14; n++) await turn(conversation, `turn ${n}: ${filler}`, tenant.key);
    const summaryRow = () => h.database.db.select().from(conversationSummaries).where(eq(conversationSummaries.conversationId, conversation));
    expect(await summaryRow()).toHaveLength(1);

    const del = await h.app.inject({ method: 'DELETE', url: `/v1/responses/${first.id}`, headers: bearer(tenant.key) });
    expect(del.statusCode).toBe(200);
    expect(await summaryRow()).toHaveLength(0);

    const before = h.upstream.requests.length;
    await turn(conversation, `turn 14: ${filler}`, tenant.key);
    const made = h.upstream.requests.slice(before).filter(isSummaryCall);
    // One run may take several calls to catch up with the whole uncovered history.
    expect(made.length).toBeGreaterThanOrEqual(1);
    for (const m of made) expect(m.body.messages[1]!.content).not.toContain('xylophone');
    expect(await summaryRow()).toHaveLength(1);
  }, 60_000);
});

describe('splitForSummary', () => {
  const item = (position: number, role: string, tokens: number, type = 'message') => ({ position, role, type, content: [], tokens });

  it('keeps the newest turns worth the budget, opening with a user message, and folds the rest oldest first', () => {
    const newestFirst = [item(5, 'assistant', 10), item(4, 'user', 10), item(3, 'assistant', 10), item(2, 'user', 10), item(1, 'assistant', 10), item(0, 'user', 10)];
    expect(splitForSummary(newestFirst, 28).map((i) => i.position)).toEqual([0, 1, 2, 3]);
    // 3 items fit, but the oldest of them is an answer: its question goes with it into the summary.
    expect(splitForSummary(newestFirst, 42).map((i) => i.position)).toEqual([0, 1, 2, 3]);
    expect(splitForSummary(newestFirst, 1000)).toEqual([]);
  });
});
