import { and, eq, sql } from 'drizzle-orm';
import type { Principal } from '../auth/key-auth.ts';
import type { Db } from '../db/client.ts';
import { conversationItems, conversations, responses, usageTotals } from '../db/schema.ts';
import { notFound } from '../http/api-error.ts';
import { countTokens } from '../tokens.ts';
import { claimReservation, type Reservation } from '../limits/quota.ts';
import type { ResponseBuilder } from './builder.ts';
import type { ResponseContext } from './context.ts';
import { usageOf, type ResponseObject } from './object.ts';

export interface SaveRecord {
  builder: ResponseBuilder;
  principal: Principal;
  context: ResponseContext;
  projectId: string | null;
  /** The conversation's system message, stored when this response creates the conversation. */
  instructions: string | null;
  /** The admission: its windows are where the usage counts, and its estimate is given back. */
  reservation: Reservation;
}

/** Looks up a response of the given user; another user's is the same 404 as a missing one. */
export async function findOwnedResponse(db: Db, id: string, userId: string): Promise<{ conversationId: string; body: ResponseObject }> {
  const [row] = await db
    .select({ conversationId: responses.conversationId, body: responses.body })
    .from(responses)
    .where(and(eq(responses.id, id), eq(responses.userId, userId)));
  if (row === undefined || row.conversationId === null || row.body === null) {
    throw notFound('response_not_found', `response ${id} not found`);
  }
  return { conversationId: row.conversationId, body: row.body as ResponseObject };
}

/**
 * Stores a finished response (completed, incomplete or failed) in one
 * transaction: the conversation if this response creates it, the input and
 * output items, the response row, and the usage totals it adds to, where its
 * real usage replaces its reservation (issue 5: reconcile).
 */
export async function saveResponse(db: Db, rec: SaveRecord): Promise<void> {
  const b = rec.builder;
  const body = b.snapshot();
  const usage = body.usage ?? usageOf(0, 0);
  const { userId, organizationId, keyId } = rec.principal;
  const conversationId = rec.context.conversationId;

  await db.transaction(async (tx) => {
    let position = 0;
    if (rec.context.newConversation) {
      const title = rec.context.input.find((m) => m.role === 'user')?.content.map((p) => p.text).join(' ').slice(0, 100) ?? null;
      await tx.insert(conversations).values({ id: conversationId, userId, organizationId, hidden: true, title });
      if (rec.instructions !== null && rec.instructions !== '') {
        await tx.insert(conversationItems).values({
          conversationId,
          position: position++,
          role: 'system',
          content: [{ type: 'input_text', text: rec.instructions }],
          tokens: countTokens(rec.instructions),
        });
      }
    } else {
      // The row lock orders concurrent responses of one conversation, so positions never collide.
      await tx.select({ id: conversations.id }).from(conversations).where(eq(conversations.id, conversationId)).for('update');
      const [last] = await tx
        .select({ max: sql<number | null>`max(${conversationItems.position})` })
        .from(conversationItems)
        .where(eq(conversationItems.conversationId, conversationId));
      position = last?.max === null || last?.max === undefined ? 0 : Number(last.max) + 1;
    }

    await tx.insert(responses).values({
      id: b.id,
      userId,
      organizationId,
      conversationId,
      projectId: rec.projectId,
      apiKeyId: keyId,
      model: b.model,
      status: body.status === 'in_progress' ? 'incomplete' : body.status,
      inputTokens: usage.input_tokens,
      outputTokens: usage.output_tokens,
      cachedTokens: usage.input_tokens_details.cached_tokens,
      reasoningTokens: usage.output_tokens_details.reasoning_tokens,
      totalTokens: usage.total_tokens,
      createdAt: new Date(b.createdAt),
      completedAt: b.completedAt === null ? null : new Date(b.completedAt),
      firstTokenMs: b.firstTokenAt === null ? null : b.firstTokenAt - b.createdAt,
      durationMs: (b.completedAt ?? Date.now()) - b.createdAt,
      body,
      error: body.error,
    });

    const items = [
      ...rec.context.input.map((m) => ({ role: m.role, content: m.content, tokens: m.tokens })),
      ...body.output
        .filter((item) => item.content.some((p) => p.text !== ''))
        .map((item) => ({
          role: 'assistant',
          content: item.content.map((p) => ({ type: 'output_text', text: p.text })),
          tokens: countTokens(item.content.map((p) => p.text).join('')),
        })),
    ];
    if (items.length > 0) {
      await tx.insert(conversationItems).values(items.map((it) => ({ ...it, conversationId, position: position++, responseId: b.id })));
    }
    if (!rec.context.newConversation) {
      await tx.update(conversations).set({ updatedAt: new Date() }).where(eq(conversations.id, conversationId));
    }

    // One statement for the four totals (the user and the organisation, for the UTC day and month
    // of the admission), in the order admission takes them.
    const add = { inputTokens: usage.input_tokens, outputTokens: usage.output_tokens, totalTokens: usage.total_tokens, requests: 1 };
    const { day, month } = rec.reservation.windows;
    // Give the reservation back unless it expired and was given back already.
    const claimed = await claimReservation(tx, rec.reservation.id);
    const held = (subjectType: string, kind: string) =>
      claimed && rec.reservation.held.some((w) => w.subjectType === subjectType && w.window.kind === kind) ? -rec.reservation.estimate : 0;
    const row = (subjectType: 'user' | 'organization', subjectId: string, window: 'day' | 'month', windowStart: string) => ({
      subjectType,
      subjectId,
      window,
      windowStart,
      ...add,
      reservedTokens: held(subjectType, window),
    });
    await tx
      .insert(usageTotals)
      .values([
        row('user', userId, 'day', day.start),
        row('user', userId, 'month', month.start),
        row('organization', organizationId, 'day', day.start),
        row('organization', organizationId, 'month', month.start),
      ])
      .onConflictDoUpdate({
        target: [usageTotals.subjectType, usageTotals.subjectId, usageTotals.window, usageTotals.windowStart],
        set: {
          inputTokens: sql`${usageTotals.inputTokens} + excluded.input_tokens`,
          outputTokens: sql`${usageTotals.outputTokens} + excluded.output_tokens`,
          totalTokens: sql`${usageTotals.totalTokens} + excluded.total_tokens`,
          requests: sql`${usageTotals.requests} + excluded.requests`,
          reservedTokens: sql`greatest(0, ${usageTotals.reservedTokens} + excluded.reserved_tokens)`,
        },
      });
  });
}
