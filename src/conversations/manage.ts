import { and, asc, desc, eq, gt, isNull, lt, ne, not, or, sql } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { dropSummaryFrom } from './summary.ts';
import { conversationItems, conversations, responses } from '../db/schema.ts';
import { ApiError, notFound } from '../http/api-error.ts';
import { storedOf } from '../responses/context.ts';
import type { ResolvedItem } from '../responses/input-items.ts';
import { appendItems } from '../responses/statements.ts';
import { byItemId, itemColumns, itemOf, pageOf, type ItemView } from './items.ts';
import { findOwnedConversation, type Conversation } from './store.ts';
import { fileIdsOf, filesForInput } from '../files/prompt.ts';
import { describeItemImages } from '../images/prompt.ts';
import type { StoredItem } from '../responses/records.ts';

/**
 * What the conversations API does to the database: conversations made,
 * changed, listed and deleted by their owner, and items added and removed
 * outside any response.
 */

/** A conversation as the API shows it; `title` and `updated_at` are ours, OpenAI's object has neither. */
export function conversationOf(c: Conversation) {
  return {
    id: c.id,
    object: 'conversation' as const,
    created_at: Math.floor(c.createdAt.getTime() / 1000),
    metadata: c.metadata as Record<string, string>,
    title: c.title,
    updated_at: Math.floor(c.updatedAt.getTime() / 1000),
  };
}

/**
 * Items as stored. Files named in them must be the caller's and processed,
 * as for a response's input: history later reads a file's text by its id,
 * so an item must never name another user's file.
 */
async function storedItems(db: Db, userId: string, items: ResolvedItem[]): Promise<StoredItem[]> {
  const files = await filesForInput(db, userId, items.flatMap((it) => (it.type === 'message' ? fileIdsOf([it.content]) : [])));
  const images = await describeItemImages(db, userId, items);
  return items.flatMap((it) => storedOf(it, files, images));
}

/** A visible conversation with its first items, in one transaction: a failure leaves nothing behind. */
export async function createConversation(
  db: Db,
  owner: { userId: string; organizationId: string },
  fields: { metadata: Record<string, string>; title: string | null },
  items: ResolvedItem[],
): Promise<Conversation> {
  const stored = await storedItems(db, owner.userId, items);
  return db.transaction(async (tx) => {
    const [row] = await tx
      .insert(conversations)
      .values({ userId: owner.userId, organizationId: owner.organizationId, metadata: fields.metadata, title: fields.title, hidden: false })
      .returning();
    await appendItems(tx, [{ conversationId: row!.id, responseId: null, items: stored, isNew: true }]);
    return row!;
  });
}

export async function updateConversation(
  db: Db,
  id: string,
  userId: string,
  fields: { metadata?: Record<string, string> | null | undefined; title?: string | null | undefined },
): Promise<Conversation> {
  await findOwnedConversation(db, id, userId);
  const set: Partial<typeof conversations.$inferInsert> = {};
  // OpenAI's update replaces the whole metadata; null clears it.
  if (fields.metadata !== undefined) set.metadata = fields.metadata ?? {};
  if (fields.title !== undefined) set.title = fields.title;
  if (Object.keys(set).length === 0) return findOwnedConversation(db, id, userId);
  const [row] = await db
    .update(conversations)
    .set(set)
    .where(and(eq(conversations.id, id), eq(conversations.userId, userId)))
    .returning();
  if (row === undefined) throw notFound('conversation_not_found', `conversation ${id} not found`);
  return row;
}

/**
 * Deletes a conversation and its items. Its responses stay as rows for
 * metering (usage, model, times) but lose their content: their body is
 * cleared, so they are no longer retrievable. A response still being
 * produced would write into the conversation after it is gone, so it is
 * refused until that response ends.
 */
export async function deleteConversation(db: Db, id: string, userId: string): Promise<void> {
  await findOwnedConversation(db, id, userId);
  await db.transaction(async (tx) => {
    // The conversation's row lock orders this against a response appending its items.
    await tx.execute(sql`select id from conversations where id = ${id} for update`);
    const [running] = await tx
      .select({ id: responses.id })
      .from(responses)
      .where(and(eq(responses.conversationId, id), eq(responses.status, 'in_progress')))
      .limit(1);
    if (running !== undefined) {
      throw new ApiError(409, 'invalid_request_error', 'response_in_progress', `response ${running.id} of this conversation is still being produced; cancel it first`);
    }
    await tx.update(responses).set({ body: null }).where(eq(responses.conversationId, id));
    await tx.delete(conversations).where(and(eq(conversations.id, id), eq(conversations.userId, userId)));
  });
}

/** The user's conversations, most recently active first; hidden ones (made for stateless requests) only when asked. */
export async function listConversations(db: Db, userId: string, page: { limit: number; after?: string | undefined; includeHidden: boolean }) {
  let cursor;
  if (page.after !== undefined) {
    const anchor = await findOwnedConversation(db, page.after, userId).catch(() => {
      throw new ApiError(400, 'invalid_request_error', 'invalid_after', `after: ${page.after} is not one of your conversations`, 'after');
    });
    // Compared in the database, so the anchor's time keeps its full precision.
    cursor = sql`(${conversations.updatedAt}, ${conversations.id}) < (select updated_at, id from conversations where id = ${anchor.id})`;
  }
  const rows = await db
    .select()
    .from(conversations)
    .where(and(eq(conversations.userId, userId), page.includeHidden ? undefined : eq(conversations.hidden, false), cursor))
    .orderBy(desc(conversations.updatedAt), desc(conversations.id))
    .limit(page.limit + 1);
  const data = rows.slice(0, page.limit).map(conversationOf);
  return { object: 'list' as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: rows.length > page.limit };
}

/** A conversation's instructions are stored as its system item without an item id; they are not one of its items. */
const listed = (conversationId: string) =>
  and(eq(conversationItems.conversationId, conversationId), or(ne(conversationItems.role, 'system'), not(isNull(conversationItems.itemId))));

export async function listItems(db: Db, conversationId: string, page: { limit: number; order: 'asc' | 'desc'; after?: string | undefined }) {
  let cursor;
  if (page.after !== undefined) {
    const [anchor] = await db
      .select({ position: conversationItems.position })
      .from(conversationItems)
      .where(and(listed(conversationId), byItemId(page.after)));
    if (anchor === undefined) {
      throw new ApiError(400, 'invalid_request_error', 'invalid_after', `after: ${page.after} is not an item of this conversation`, 'after');
    }
    cursor = page.order === 'asc' ? gt(conversationItems.position, anchor.position) : lt(conversationItems.position, anchor.position);
  }
  const rows = await db
    .select(itemColumns)
    .from(conversationItems)
    .where(and(listed(conversationId), cursor))
    .orderBy(page.order === 'asc' ? asc(conversationItems.position) : desc(conversationItems.position))
    .limit(page.limit + 1);
  return pageOf(rows, page.limit);
}

export async function findItem(db: Db, conversationId: string, itemId: string): Promise<ItemView> {
  const [row] = await db
    .select(itemColumns)
    .from(conversationItems)
    .where(and(listed(conversationId), byItemId(itemId)));
  if (row === undefined) throw notFound('item_not_found', `item ${itemId} not found`);
  return itemOf(row);
}

/** Appends items after the conversation's last one; returns them as stored, in order. */
export async function addItems(db: Db, userId: string, conversationId: string, items: ResolvedItem[]): Promise<ItemView[]> {
  const stored = await storedItems(db, userId, items);
  return db.transaction(async (tx) => {
    await appendItems(tx, [{ conversationId, responseId: null, items: stored, isNew: false }]);
    const ids = stored.map((s) => s.itemId!);
    const rows = await tx
      .select(itemColumns)
      .from(conversationItems)
      .where(and(eq(conversationItems.conversationId, conversationId), sql`${conversationItems.itemId} in (select value from jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))`))
      .orderBy(asc(conversationItems.position));
    return rows.map(itemOf);
  });
}

export async function deleteItem(db: Db, conversationId: string, itemId: string): Promise<void> {
  await db.transaction(async (tx) => {
    const gone = await tx
      .delete(conversationItems)
      .where(and(listed(conversationId), byItemId(itemId)))
      .returning({ position: conversationItems.position });
    if (gone.length === 0) throw notFound('item_not_found', `item ${itemId} not found`);
    // A summary that covers the deleted item would keep what it said.
    await dropSummaryFrom(tx, conversationId, Math.min(...gone.map((g) => g.position)));
  });
}
