import { partText } from './input-items.ts';
import { and, eq } from 'drizzle-orm';
import type { Principal } from '../auth/key-auth.ts';
import type { Db } from '../db/client.ts';
import { responses } from '../db/schema.ts';
import { notFound } from '../http/api-error.ts';
import { isUuid } from '../http/ids.ts';
import type { Reservation } from '../limits/quota.ts';
import { countTokens } from '../tokens.ts';
import type { ResponseBuilder } from './builder.ts';
import type { PreparedContext } from './context.ts';
import { functionCallOutputId, usageOf, type OutputItem, type ResponseObject } from './object.ts';
import type { CreateRequest } from './request.ts';
import type { FinishRecord, ReleaseRecord, StartRecord, StoredItem } from './records.ts';

/** Looks up a response of the given user; another user's is the same 404 as a missing one. */
export async function findOwnedResponse(db: Db, id: string, userId: string): Promise<{ conversationId: string; body: ResponseObject }> {
  if (!isUuid(id)) throw notFound('response_not_found', `response ${id} not found`);
  const [row] = await db
    .select({ conversationId: responses.conversationId, body: responses.body })
    .from(responses)
    .where(and(eq(responses.id, id), eq(responses.userId, userId)));
  if (row === undefined || row.conversationId === null || row.body === null) {
    throw notFound('response_not_found', `response ${id} not found`);
  }
  return { conversationId: row.conversationId, body: row.body as ResponseObject };
}


/** The row written at admission: the response as `in_progress`, and what recovery needs to finish it. */
export function startRecord(args: {
  responseId: string;
  instanceId: string;
  principal: Principal;
  request: CreateRequest;
  prepared: PreparedContext;
  model: string;
  body: ResponseObject;
  reservationId: string | null;
  windows: Reservation['windows'];
}): StartRecord {
  const { principal, request, prepared } = args;
  const isNew = prepared.existing === null;
  // Without storing, nothing of the request is written: no title, no instructions, no input kept for recovery.
  const keep = request.store;
  const first = request.input.find((m) => m.type === 'message' && m.role === 'user');
  const text = first?.type === 'message' ? first.content.map(partText).join(' ') : undefined;
  // By code points, so an emoji at the cut is not split into a lone surrogate.
  const title = text === undefined ? null : Array.from(text).slice(0, 100).join('');
  return {
    responseId: args.responseId,
    store: keep,
    instanceId: args.instanceId,
    userId: principal.userId,
    organizationId: principal.organizationId,
    keyId: principal.keyId,
    projectId: request.projectId,
    conversation: {
      id: prepared.conversationId,
      isNew,
      title: isNew && keep ? title : null,
      instructions: isNew && keep ? request.instructions : null,
      instructionTokens: request.instructions === null ? 0 : countTokens(request.instructions),
    },
    model: args.model,
    createdAt: args.body.created_at,
    body: args.body,
    pending: {
      input: keep ? prepared.input : [],
      promptTokens: prepared.fixedTokens + prepared.historyTokens,
      reservationId: args.reservationId,
      windows: { day: { start: args.windows.day.start }, month: { start: args.windows.month.start } },
    },
  };
}

/**
 * A response's output as conversation items: each message with text, and
 * each tool call as a `function_call` item followed, for a server tool, by
 * its `function_call_output`. Later turns read them back as history.
 */
export function storedOutput(output: OutputItem[], stepOf?: ReadonlyMap<string, number>): StoredItem[] {
  const items: StoredItem[] = [];
  for (const item of output) {
    if (item.type === 'message') {
      const text = item.content.map((p) => p.text).join('');
      if (text === '') continue;
      items.push({ role: 'assistant', itemId: item.id, origin: 'output', content: item.content.map((p) => ({ type: 'output_text', text: p.text })), tokens: countTokens(text) });
      continue;
    }
    const step = stepOf?.get(item.id);
    const call = { id: item.id, call_id: item.call_id, name: item.name, arguments: item.arguments, ...(step === undefined ? {} : { step }) };
    items.push({ role: 'assistant', type: 'function_call', itemId: item.id, origin: 'output', content: call, tokens: countTokens(item.name) + countTokens(item.arguments) });
    if (item.output !== undefined) {
      items.push({ role: 'tool', type: 'function_call_output', itemId: functionCallOutputId(), origin: 'output', content: { call_id: item.call_id, output: item.output }, tokens: countTokens(item.output) });
    }
  }
  return items;
}

/** The final write of a response that reached a model (completed, incomplete or failed). */
export function finishRecord(b: ResponseBuilder, prepared: PreparedContext, principal: Principal, request: CreateRequest, reservation: Reservation): FinishRecord {
  const body = b.snapshot();
  const usage = body.usage ?? usageOf(0, 0);
  return {
    responseId: b.id,
    store: request.store,
    userId: principal.userId,
    organizationId: principal.organizationId,
    keyId: principal.keyId,
    conversationId: prepared.conversationId,
    newConversation: prepared.existing === null,
    projectId: request.projectId,
    model: b.model,
    status: body.status === 'in_progress' ? 'incomplete' : body.status,
    usage: {
      inputTokens: usage.input_tokens,
      outputTokens: usage.output_tokens,
      cachedTokens: usage.input_tokens_details.cached_tokens,
      reasoningTokens: usage.output_tokens_details.reasoning_tokens,
      totalTokens: usage.total_tokens,
    },
    createdAt: b.createdAt,
    completedAt: b.completedAt,
    firstTokenMs: b.firstTokenAt === null ? null : b.firstTokenAt - b.createdAt,
    durationMs: (b.completedAt ?? Date.now()) - b.createdAt,
    body,
    items: [...prepared.input, ...storedOutput(body.output, b.stepOf)],
    reservationId: reservation.id,
    windows: reservation.windows,
  };
}

/** Undoes an admission whose request reached no model. */
export function releaseRecord(responseId: string, prepared: PreparedContext, reservation: Reservation): ReleaseRecord {
  return { responseId, conversationId: prepared.conversationId, newConversation: prepared.existing === null, reservationId: reservation.id };
}
