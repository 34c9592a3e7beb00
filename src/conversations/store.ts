import { and, asc, desc, eq, inArray, isNull, ne, or, sql } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { conversationItems, conversations, responses } from '../db/schema.ts';
import { notFound } from '../http/api-error.ts';
import type { ChatMessage } from '../providers/types.ts';

export type Conversation = typeof conversations.$inferSelect;

/** Text parts as stored in `conversation_items.content`. */
export type StoredContent = { type: string; text: string }[];

export const textOfContent = (content: StoredContent) => content.map((p) => p.text).join('\n');

/** A conversation of the given user; another user's is the same 404 as a missing one, so its existence is never revealed. */
export async function findOwnedConversation(db: Db, id: string, userId: string): Promise<Conversation> {
  const [row] = await db
    .select()
    .from(conversations)
    .where(and(eq(conversations.id, id), eq(conversations.userId, userId)));
  if (row === undefined) throw notFound('conversation_not_found', `conversation ${id} not found`);
  return row;
}

/** The stored system message (a conversation's instructions), if it has one. */
export async function systemMessageOf(db: Db, conversationId: string): Promise<string | null> {
  const [row] = await db
    .select({ content: conversationItems.content })
    .from(conversationItems)
    .where(and(eq(conversationItems.conversationId, conversationId), eq(conversationItems.role, 'system')))
    .orderBy(asc(conversationItems.position))
    .limit(1);
  return row === undefined ? null : textOfContent(row.content as StoredContent);
}

/** History reads stop here whatever the budget: bounds the work one request can cause. */
const MAX_SCANNED = 4000;

/** Items that count as history: user and assistant turns of responses that did not fail. */
const eligible = (conversationId: string) =>
  and(
    eq(conversationItems.conversationId, conversationId),
    inArray(conversationItems.role, ['user', 'assistant']),
    or(isNull(responses.status), ne(responses.status, 'failed')),
  );

/** Tokens of the whole history (bounded to the newest MAX_SCANNED items), for routing by length. */
export async function historyTokens(db: Db, conversationId: string): Promise<number> {
  const newest = db
    .select({ tokens: conversationItems.tokens })
    .from(conversationItems)
    .leftJoin(responses, eq(responses.id, conversationItems.responseId))
    .where(eligible(conversationId))
    .orderBy(desc(conversationItems.position))
    .limit(MAX_SCANNED)
    .as('newest');
  const [row] = await db.select({ total: sql<string | null>`sum(${newest.tokens} + 4)` }).from(newest);
  return Number(row?.total ?? 0);
}

const PAGE = 200;

/**
 * The newest turns that fit in `budget` tokens, oldest first. The window is
 * contiguous: it stops at the first turn that does not fit. Only user and
 * assistant turns count (system and developer items applied to their own
 * response only), and the items of failed responses are left out.
 */
export async function historyWithin(db: Db, conversationId: string, budget: number): Promise<{ messages: ChatMessage[]; tokens: number }> {
  const picked: (ChatMessage & { cost: number })[] = [];
  let used = 0;
  const window = () => {
    // A cut window must not open with an answer whose question was left out.
    while (picked.at(-1)?.role === 'assistant') used -= picked.pop()!.cost;
    return { messages: picked.reverse().map(({ role, content }) => ({ role, content })), tokens: used };
  };
  for (let offset = 0; offset < MAX_SCANNED; offset += PAGE) {
    const rows = await db
      .select({ role: conversationItems.role, content: conversationItems.content, tokens: conversationItems.tokens })
      .from(conversationItems)
      .leftJoin(responses, eq(responses.id, conversationItems.responseId))
      .where(eligible(conversationId))
      .orderBy(desc(conversationItems.position))
      .limit(PAGE)
      .offset(offset);
    for (const row of rows) {
      const cost = row.tokens + 4;
      if (used + cost > budget) return window();
      used += cost;
      picked.push({ role: row.role === 'assistant' ? 'assistant' : 'user', content: textOfContent(row.content as StoredContent), cost });
    }
    if (rows.length < PAGE) return { messages: picked.reverse().map(({ role, content }) => ({ role, content })), tokens: used };
  }
  return window();
}
