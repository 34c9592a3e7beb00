import { randomUUID } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.ts';
import { conversationItems, usageTotals } from '../src/db/schema.ts';
import { windowsAt } from '../src/limits/windows.ts';
import { echoOf, ResponseBuilder } from '../src/responses/builder.ts';
import { parseCreateRequest } from '../src/responses/request.ts';
import type { FinishRecord, StartRecord } from '../src/responses/records.ts';
import { ResponseWriter } from '../src/responses/writer.ts';
import { testApp, createTenant, type Tenant } from './helpers/app.ts';
import { openTestDatabase } from './helpers/db.ts';

/** The writer's own guarantees, on the real database. */

let database: Database;
let tenant: Tenant;
beforeAll(async () => {
  database = await openTestDatabase();
  const app = await testApp(database);
  tenant = await createTenant(app);
  await app.close();
});
afterAll(async () => database.close());

const now = Date.parse('2026-05-04T10:00:00Z');
const windows = windowsAt(now);

function records(): { start: StartRecord; finish: FinishRecord } {
  const responseId = randomUUID();
  const conversationId = randomUUID();
  const builder = new ResponseBuilder(responseId, now, 'm', conversationId, echoOf(parseCreateRequest({ input: 'hello' })));
  const owner = { userId: tenant.userId, organizationId: tenant.orgId, keyId: tenant.keyId };
  const input = [{ role: 'user', content: [{ type: 'input_text', text: 'hello' }], tokens: 1 }];
  const start: StartRecord = {
    ...owner,
    responseId,
    instanceId: randomUUID(),
    projectId: null,
    conversation: { id: conversationId, isNew: true, title: 'hello', instructions: null, instructionTokens: 0 },
    model: 'm',
    createdAt: now,
    body: builder.snapshot(),
    pending: { input, promptTokens: 5, reservationId: null, windows },
  };
  const item = { id: 'msg_1', type: 'message' as const, role: 'assistant' as const, status: 'in_progress' as const, content: [] };
  const at = { item_id: item.id, output_index: 0, content_index: 0, sequence_number: 0 };
  builder.apply({ type: 'response.output_item.added', output_index: 0, item, sequence_number: 0 });
  builder.apply({ type: 'response.content_part.added', ...at, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
  builder.apply({ type: 'response.output_text.delta', ...at, delta: 'hi there', logprobs: [] });
  builder.usage = { inputTokens: 5, outputTokens: 2, cachedTokens: 0, reasoningTokens: 0 };
  builder.finish('completed', now + 10);
  const finish: FinishRecord = {
    ...owner,
    responseId,
    conversationId,
    newConversation: true,
    projectId: null,
    model: 'm',
    status: 'completed',
    usage: { inputTokens: 5, outputTokens: 2, cachedTokens: 0, reasoningTokens: 0, totalTokens: 7 },
    createdAt: now,
    completedAt: now + 10,
    firstTokenMs: 5,
    durationMs: 10,
    body: builder.snapshot(),
    items: [...input, { role: 'assistant', content: [{ type: 'output_text', text: 'hi there' }], tokens: 2 }],
    reservationId: null,
    windows,
  };
  return { start, finish };
}

const orgDay = async () => {
  const [row] = await database.db
    .select()
    .from(usageTotals)
    .where(and(eq(usageTotals.subjectId, tenant.orgId), eq(usageTotals.window, 'day'), eq(usageTotals.windowStart, windows.day.start)));
  return { total: Number(row?.totalTokens ?? 0), requests: row?.requests ?? 0 };
};

describe('the response writer', () => {
  it('counts a response once, when its final write comes twice', async () => {
    const writer = new ResponseWriter(database.db);
    const { start, finish } = records();
    await writer.admit(null, start);
    const before = await orgDay();
    await Promise.all([writer.finish(finish), writer.finish(finish)]);
    await writer.finish(finish);
    expect(await orgDay()).toEqual({ total: before.total + 7, requests: before.requests + 1 });
    const items = await database.db.select().from(conversationItems).where(eq(conversationItems.conversationId, finish.conversationId));
    expect(items).toHaveLength(2);
    await writer.close(1_000);
  });
});
