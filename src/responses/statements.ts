import { inArray, sql, type SQL } from 'drizzle-orm';
import { executePrepared, rowsOf, type Db } from '../db/client.ts';
import { conversations } from '../db/schema.ts';
import type { FinishRecord, StartRecord, StoredItem } from './records.ts';

/** The statements of the response writer, each for a whole batch of rows. */

/**
 * Rows go to the database as one JSON parameter per statement, unpacked by
 * jsonb_to_recordset: building and sending one parameter costs a fraction of
 * one per value, which matters on the hot path of every request.
 */
export const recordset = (rows: object[], columns: string) => sql`jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(${sql.raw(columns)})`;

/** Rows per statement: bounds the size of one parameter. */
const CHUNK = 500;

const chunks = <T>(all: T[], size = CHUNK): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < all.length; i += size) out.push(all.slice(i, i + size));
  return out;
};

const RESPONSE_COLUMNS =
  'id uuid, user_id uuid, organization_id uuid, conversation_id uuid, project_id uuid, api_key_id uuid, model text, status text, ' +
  'input_tokens int, output_tokens int, cached_tokens int, reasoning_tokens int, total_tokens int, created_at timestamptz, ' +
  'completed_at timestamptz, first_token_ms int, duration_ms int, body jsonb, error jsonb, instance_id uuid, pending jsonb';
const RESPONSE_NAMES = RESPONSE_COLUMNS.split(', ')
  .map((c) => c.split(' ')[0])
  .join(', ');

/** The columns a response's row has from admission to its end. */
function commonColumns(r: FinishRecord | StartRecord) {
  return {
    id: r.responseId,
    user_id: r.userId,
    organization_id: r.organizationId,
    project_id: r.projectId,
    api_key_id: r.keyId,
    model: r.model,
    created_at: new Date(r.createdAt).toISOString(),
    // A response not to be stored has no body in its row at any time: GET and previous_response_id find nothing.
    body: r.store === false ? null : r.body,
    error: r.body.error,
  };
}

/** The row of an admitted response: in progress, with what recovery needs. */
const startRow = (s: StartRecord) => ({
  ...commonColumns(s),
  conversation_id: s.conversation.id,
  status: 'in_progress',
  input_tokens: 0,
  output_tokens: 0,
  cached_tokens: 0,
  reasoning_tokens: 0,
  total_tokens: 0,
  completed_at: null,
  first_token_ms: null,
  duration_ms: null,
  instance_id: s.instanceId,
  pending: s.pending,
});

/** The row of a finished response. */
const endRow = (f: FinishRecord) => ({
  ...commonColumns(f),
  conversation_id: f.conversationId,
  status: f.status,
  input_tokens: f.usage.inputTokens,
  output_tokens: f.usage.outputTokens,
  cached_tokens: f.usage.cachedTokens,
  reasoning_tokens: f.usage.reasoningTokens,
  total_tokens: f.usage.totalTokens,
  completed_at: f.completedAt === null ? null : new Date(f.completedAt).toISOString(),
  first_token_ms: f.firstTokenMs,
  duration_ms: f.durationMs,
  instance_id: null,
  pending: null,
});

/** Ends rows still in progress; returns the ids this batch ended (the others were recovered elsewhere). */
export async function endResponses(tx: Db, finishes: FinishRecord[]): Promise<Set<string>> {
  const ended = new Set<string>();
  for (const part of chunks(finishes, 200)) {
    const rows = rowsOf<{ id: string }>(
      await executePrepared(tx, sql`
        insert into responses (${sql.raw(RESPONSE_NAMES)})
        select ${sql.raw(RESPONSE_NAMES)} from ${recordset(
          part.map(endRow),
          RESPONSE_COLUMNS,
        )}
        on conflict (id) do update set
          model = excluded.model, status = excluded.status, input_tokens = excluded.input_tokens,
          output_tokens = excluded.output_tokens, cached_tokens = excluded.cached_tokens,
          reasoning_tokens = excluded.reasoning_tokens, total_tokens = excluded.total_tokens,
          completed_at = excluded.completed_at, first_token_ms = excluded.first_token_ms,
          duration_ms = excluded.duration_ms, body = excluded.body, error = excluded.error,
          instance_id = null, pending = null
        where responses.status = 'in_progress'
        returning id`),
    );
    for (const r of rows) ended.add(r.id);
  }
  return ended;
}

export interface ItemBatch {
  conversationId: string;
  /** null: items added through the conversations API, made by no response. */
  responseId: string | null;
  items: StoredItem[];
  /** The conversation was made for this response: nobody else has written to it, its activity time is its creation. */
  isNew: boolean;
}

/** Appends items to conversations, each after the conversation's last position, under the conversation's row lock. */
export async function appendItems(tx: Db, batches: ItemBatch[]): Promise<void> {
  const withItems = batches.filter((b) => b.items.length > 0);
  if (withItems.length === 0) return;
  const ids = [...new Set(withItems.map((b) => b.conversationId))].sort();
  // The row locks order concurrent writers of one conversation, so positions never collide.
  const last = rowsOf<{ id: string; max: number | string | null }>(
    await executePrepared(tx, sql`
      select c.id, (select max(i.position) from conversation_items i where i.conversation_id = c.id) as max
      from conversations c
      where c.id in (select value::uuid from jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))
      order by c.id
      for no key update of c`),
  );
  const next = new Map(ids.map((id) => [id, 0]));
  for (const r of last) if (r.max !== null) next.set(r.id, Number(r.max) + 1);
  const rows = withItems.flatMap((b) =>
    b.items.map((it) => {
      const position = next.get(b.conversationId)!;
      next.set(b.conversationId, position + 1);
      return { conversation_id: b.conversationId, position, role: it.role, type: it.type ?? 'message', item_id: it.itemId ?? null, origin: it.origin ?? 'input', content: it.content, tokens: it.tokens, response_id: b.responseId };
    }),
  );
  for (const part of chunks(rows)) {
    await executePrepared(tx, sql`
      insert into conversation_items (conversation_id, position, role, type, item_id, origin, content, tokens, response_id)
      select conversation_id, position, role, type, item_id, origin, content, tokens, response_id
      from ${recordset(part, 'conversation_id uuid, position int, role text, type text, item_id text, origin text, content jsonb, tokens int, response_id uuid')}`);
  }
  const touched = [...new Set(withItems.filter((b) => !b.isNew).map((b) => b.conversationId))];
  if (touched.length > 0) await tx.update(conversations).set({ updatedAt: new Date() }).where(inArray(conversations.id, touched));
}

/**
 * The in-progress rows, with the hidden conversations (and their system
 * messages) of stateless requests, in one statement per chunk: the
 * conversations go in through CTEs of the same statement, whose foreign keys
 * are checked at its end. One statement is one round trip, and atomic alone.
 */
export async function insertStarts(db: Db, starts: StartRecord[], before: SQL[] = []): Promise<void> {
  const parts = chunks(starts, 200);
  if (parts.length === 0) parts.push([]);
  for (const [i, part] of parts.entries()) {
    const fresh = part.filter((s) => s.conversation.isNew);
    const system = fresh.filter((s) => s.conversation.instructions !== null && s.conversation.instructions !== '');
    const ctes = [
      ...(i === 0 ? before : []),
      sql`new_conversations as (
        insert into conversations (id, user_id, organization_id, hidden, title)
        select id, user_id, organization_id, true, title
        from ${recordset(
          fresh.map((s) => ({ id: s.conversation.id, user_id: s.userId, organization_id: s.organizationId, title: s.conversation.title })),
          'id uuid, user_id uuid, organization_id uuid, title text',
        )}
        on conflict (id) do nothing)`,
      sql`system_messages as (
        insert into conversation_items (conversation_id, position, role, content, tokens)
        select conversation_id, 0, 'system', content, tokens
        from ${recordset(
          system.map((s) => ({
            conversation_id: s.conversation.id,
            content: [{ type: 'input_text', text: s.conversation.instructions }],
            tokens: s.conversation.instructionTokens,
          })),
          'conversation_id uuid, content jsonb, tokens int',
        )})`,
    ];
    await executePrepared(db, sql`
      with ${sql.join(ctes, sql`, `)}
      insert into responses (${sql.raw(RESPONSE_NAMES)})
      select ${sql.raw(RESPONSE_NAMES)} from ${recordset(
        part.map(startRow),
        RESPONSE_COLUMNS,
      )}`);
  }
}

