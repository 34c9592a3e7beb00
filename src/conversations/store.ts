import { and, asc, desc, eq, gt, inArray, isNull, ne, or, sql } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { conversationItems, conversations, responses } from '../db/schema.ts';
import { notFound } from '../http/api-error.ts';
import { isUuid } from '../http/ids.ts';
import { fileIdsOf, filesForHistory, renderFile, type FileTexts } from '../files/prompt.ts';
import { imageKey, type ImageSet } from '../images/load.ts';
import type { ChatMessage, UserPart } from '../providers/types.ts';
import type { ImagePart } from '../responses/input-items.ts';

export type Conversation = typeof conversations.$inferSelect;

/** An image as stored: by file id, by http(s) URL, or (for a data URL, whose bytes are not kept) by type, size and digest. */
export type StoredImage = Omit<ImagePart, 'param'>;

/** Parts as stored in `conversation_items.content` of a message item: text, or a file or an image by reference. */
export type StoredContent = ({ type: string; text: string } | { type: 'input_file'; file_id: string; filename?: string | undefined } | StoredImage)[];

/** What stands in a prompt for an image that cannot be shown: it was not kept, cannot be read any more, or the model cannot see images. */
export const imageNote = (p: StoredImage) => `[an image${p.media_type === undefined ? '' : ` (${p.media_type})`} was here; it cannot be shown]`;

/** The content of a `function_call` item (role assistant) and of a `function_call_output` item (role tool). */
export interface StoredCall {
  id: string;
  call_id: string;
  name: string;
  arguments: string;
  /** The step of the response's tool loop it was made in; calls of one step were made together. */
  step?: number;
}
export interface StoredCallOutput {
  call_id: string;
  output: string;
}

/** A message's text for a prompt; a file part becomes the file's text (from `files`, or a note that it was deleted). */
export const textOfContent = (content: StoredContent, files: FileTexts = new Map()) =>
  content.map((p) => partText(p, files)).join('\n');

function partText(p: StoredContent[number], files: FileTexts): string {
  if (p.type === 'input_image') return imageNote(p as StoredImage);
  if (p.type === 'input_file' && 'file_id' in p) return renderFile(p.file_id, files.get(p.file_id), p.filename);
  return (p as { text: string }).text;
}

/**
 * A user message's content for a prompt: plain text, or, when it holds
 * images, text and images in order (an image not in `images` becomes a note).
 */
function userContent(content: StoredContent, files: FileTexts, images: ImageSet | undefined): string | UserPart[] {
  if (images === undefined || !content.some((p) => p.type === 'input_image')) return textOfContent(content, files);
  const parts: UserPart[] = [];
  for (const p of content) {
    const image = p.type === 'input_image' ? images.get(imageKey(p as StoredImage) ?? '') : undefined;
    if (image !== undefined) parts.push({ type: 'image', mediaType: image.mediaType, data: image.data, detail: (p as StoredImage).detail });
    else parts.push({ type: 'text', text: partText(p, files) });
  }
  return parts;
}

/** The image parts of stored message contents, in order. */
export function imagesOf(contents: unknown[]): StoredImage[] {
  return contents.flatMap((c) => (Array.isArray(c) ? (c as StoredContent).filter((p): p is StoredImage => p.type === 'input_image') : []));
}

/** A conversation of the given user; another user's is the same 404 as a missing one, so its existence is never revealed. */
export async function findOwnedConversation(db: Db, id: string, userId: string): Promise<Conversation> {
  if (!isUuid(id)) throw notFound('conversation_not_found', `conversation ${id} not found`);
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

/** History reads stop here whatever the budget: bounds the work one request (or summary) can cause. */
export const MAX_SCANNED = 4000;

/**
 * Items that count as history: user and assistant turns, tool calls and
 * their results, of responses that did not fail; only those after `after`
 * (the position a conversation's summary covers, -1 for all).
 */
export const eligible = (conversationId: string, after = -1) =>
  and(
    eq(conversationItems.conversationId, conversationId),
    gt(conversationItems.position, after),
    inArray(conversationItems.role, ['user', 'assistant', 'tool']),
    or(isNull(responses.status), ne(responses.status, 'failed')),
  );

/** Tokens of the whole history after `after` (bounded to the newest MAX_SCANNED items), for routing by length. */
export async function historyTokens(db: Db, conversationId: string, after = -1): Promise<number> {
  const newest = db
    .select({ tokens: conversationItems.tokens })
    .from(conversationItems)
    .leftJoin(responses, eq(responses.id, conversationItems.responseId))
    .where(eligible(conversationId, after))
    .orderBy(desc(conversationItems.position))
    .limit(MAX_SCANNED)
    .as('newest');
  const [row] = await db.select({ total: sql<string | null>`sum(${newest.tokens} + 4)` }).from(newest);
  return Number(row?.total ?? 0);
}

const PAGE = 200;

export interface Row {
  role: string;
  /** message when absent. */
  type?: string | undefined;
  content: unknown;
}

/**
 * Chat messages of stored items, oldest first. A tool call joins the answer
 * it belongs to (the assistant message before it), its result follows as a
 * `tool` message. Pair them with pairToolCalls once the whole prompt is known.
 */
export function messagesOf(rows: Row[], files: FileTexts = new Map(), images?: ImageSet): ChatMessage[] {
  const out: ChatMessage[] = [];
  const stepOf = new Map<ChatMessage, number | undefined>();
  for (const row of rows) {
    if (row.type === 'function_call') {
      const c = row.content as StoredCall;
      const call = { id: c.call_id, name: c.name, arguments: c.arguments };
      let owner = out.findLastIndex((m) => m.role !== 'tool');
      const ownerMessage = out[owner];
      // A call of a later step was made after the earlier results: it belongs to an answer of its own.
      const laterStep = ownerMessage !== undefined && stepOf.has(ownerMessage) && stepOf.get(ownerMessage) !== c.step;
      if (ownerMessage?.role !== 'assistant' || laterStep) {
        out.push({ role: 'assistant', content: '' });
        owner = out.length - 1;
      }
      stepOf.set(out[owner]!, c.step);
      const answer = out[owner] as Extract<ChatMessage, { role: 'assistant' }>;
      answer.toolCalls = [...(answer.toolCalls ?? []), call];
    } else if (row.type === 'function_call_output') {
      const c = row.content as StoredCallOutput;
      out.push({ role: 'tool', callId: c.call_id, content: c.output });
    } else {
      const content = row.content as StoredContent;
      if (row.role === 'user') out.push({ role: 'user', content: userContent(content, files, images) });
      else out.push({ role: row.role === 'assistant' ? 'assistant' : 'system', content: textOfContent(content, files) });
    }
  }
  return out;
}

/**
 * Every tool call answered, every result answering a call: calls without a
 * result (a response cut short) get one that says so, results without their
 * call are left out, since every upstream refuses a half pair.
 */
export function pairToolCalls(messages: ChatMessage[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  let open: Set<string> = new Set();
  const closeOpen = () => {
    for (const id of open) out.push({ role: 'tool', callId: id, content: JSON.stringify({ error: 'the call did not finish' }) });
    open = new Set();
  };
  for (const m of messages) {
    if (m.role === 'tool') {
      if (open.delete(m.callId)) out.push(m);
      continue;
    }
    closeOpen();
    out.push(m);
    if (m.role === 'assistant') open = new Set((m.toolCalls ?? []).map((c) => c.id));
  }
  closeOpen();
  return out;
}

/**
 * The newest turns that fit in `budget` tokens, oldest first. The window is
 * contiguous: it stops at the first item that does not fit, and it opens
 * with a user turn (an answer, tool call or result whose question was left
 * out is dropped). Only user and assistant turns and tool calls count
 * (system and developer items applied to their own response only), and the
 * items of failed responses are left out.
 */
export async function historyWithin(
  db: Db,
  conversationId: string,
  budget: number,
  after = -1,
  /** Reads the history's images for a model that can see them; without it they are told as notes. */
  readImages?: (parts: StoredImage[]) => Promise<ImageSet>,
): Promise<{ messages: ChatMessage[]; tokens: number; cut: boolean }> {
  const picked: (Row & { cost: number })[] = [];
  let used = 0;
  // `cut`: older history was left out, which a summary could stand for (summary.ts).
  const window = async (cut: boolean) => {
    while (cut && picked.length > 0 && !(picked.at(-1)!.role === 'user' && picked.at(-1)!.type === 'message')) used -= picked.pop()!.cost;
    // Files of earlier turns are read again: their current text, or a note where one was deleted.
    const contents = picked.filter((r) => r.type === 'message').map((r) => r.content);
    const files = await filesForHistory(db, fileIdsOf(contents));
    const images = readImages === undefined ? undefined : await readImages(imagesOf(contents.reverse()));
    return { messages: messagesOf(picked.reverse(), files, images), tokens: used, cut };
  };
  for (let offset = 0; offset < MAX_SCANNED; offset += PAGE) {
    const rows = await db
      .select({ role: conversationItems.role, type: conversationItems.type, content: conversationItems.content, tokens: conversationItems.tokens })
      .from(conversationItems)
      .leftJoin(responses, eq(responses.id, conversationItems.responseId))
      .where(eligible(conversationId, after))
      .orderBy(desc(conversationItems.position))
      .limit(PAGE)
      .offset(offset);
    for (const row of rows) {
      const cost = row.tokens + 4;
      if (used + cost > budget) return window(true);
      used += cost;
      picked.push({ ...row, cost });
    }
    if (rows.length < PAGE) return window(false);
  }
  return window(true);
}

/**
 * Items of the user's own conversations by the ids clients know them by
 * (`item_reference` inputs), each with what belongs to it: a tool call comes
 * with its stored result. An id that is not the user's is the same 404 as a
 * missing one.
 */
export async function findOwnedItems(db: Db, userId: string, ids: string[]): Promise<Map<string, Row[]>> {
  const unique = [...new Set(ids)];
  if (unique.length === 0) return new Map();
  const rows = await db
    .select({ itemId: conversationItems.itemId, conversationId: conversationItems.conversationId, role: conversationItems.role, type: conversationItems.type, content: conversationItems.content })
    .from(conversationItems)
    .innerJoin(conversations, eq(conversations.id, conversationItems.conversationId))
    .where(and(inArray(conversationItems.itemId, unique), eq(conversations.userId, userId)));
  const found = new Map<string, Row[]>();
  for (const row of rows) if (row.itemId !== null && !found.has(row.itemId)) found.set(row.itemId, [row]);
  const missing = unique.find((id) => !found.has(id));
  if (missing !== undefined) throw notFound('item_not_found', `item ${missing} not found`);
  const calls = rows.filter((r) => r.type === 'function_call');
  if (calls.length > 0) {
    const outputs = await db
      .select({ conversationId: conversationItems.conversationId, role: conversationItems.role, type: conversationItems.type, content: conversationItems.content })
      .from(conversationItems)
      .where(
        and(
          inArray(conversationItems.conversationId, [...new Set(calls.map((c) => c.conversationId))]),
          eq(conversationItems.type, 'function_call_output'),
          inArray(sql<string>`${conversationItems.content}->>'call_id'`, calls.map((c) => (c.content as StoredCall).call_id)),
        ),
      );
    for (const call of calls) {
      const callId = (call.content as StoredCall).call_id;
      const output = outputs.find((o) => o.conversationId === call.conversationId && (o.content as StoredCallOutput).call_id === callId);
      if (output !== undefined) found.get(call.itemId!)!.push(output);
    }
  }
  return found;
}
