import { randomUUID } from 'node:crypto';
import type { Principal } from '../auth/key-auth.ts';
import {
  findOwnedConversation,
  findOwnedItems,
  historyTokens,
  historyWithin,
  messagesOf,
  pairToolCalls,
  systemMessageOf,
  textOfContent,
  type Row,
} from '../conversations/store.ts';
import { loadSummary, summaryCost, withSummary, type Summary } from '../conversations/summary.ts';
import type { Db } from '../db/client.ts';
import { badRequest } from '../http/api-error.ts';
import type { ChatMessage } from '../providers/types.ts';
import type { ModelConfig } from '../router/catalog.ts';
import { assertProjectMember } from '../tenancy/projects.ts';
import { countMessageTokens, countTokens } from '../tokens.ts';
import { selectExcerpts } from '../files/excerpts.ts';
import { fileIdsOf, filesForInput, renderFile, type FileTexts } from '../files/prompt.ts';
import { ImageLoader, type ImageSet, type ImageSources } from '../images/load.ts';
import { historyHasImages, imageTokens, inputImages, storedImage, withoutImages } from '../images/prompt.ts';
import type { LoadedImage } from '../images/source.ts';
import { partText, type ImagePart, type InputItem, type MessagePart, type ResolvedItem } from './input-items.ts';
import { functionCallId, functionCallOutputId, messageId } from './object.ts';
import type { StoredItem } from './records.ts';
import type { CreateRequest } from './request.ts';
import { findOwnedResponse } from './store.ts';

/** What a request brings before a model is chosen: checked ownership, the system prompt, token counts. */
export interface PreparedContext {
  /** The conversation continued, or null for a stateless request. */
  existing: string | null;
  conversationId: string;
  /** The system prompt, as chat messages. */
  head: ChatMessage[];
  /** The input as chat messages (tool calls and results not yet paired with the history's). */
  inputMessages: ChatMessage[];
  /** The request's input, references resolved, as it will be stored (with each item's tokens). */
  input: StoredItem[];
  /** Tokens of system prompt and input (with message framing). */
  fixedTokens: number;
  /** Tokens of the whole eligible history (the summary and the items after it, when there is one). */
  historyTokens: number;
  /** The conversation's running summary of its older turns, if it has one (conversations/summary.ts). */
  summary: Summary | null;
  /** The text of the files the input names, by id. */
  files: FileTexts;
  /** Of `fixedTokens`, those of file text that excerpts may leave out for a model with a smaller window. */
  shrinkableTokens: number;
  /** The request's own words (its user text), that excerpts are chosen by. */
  query: string;
  /** The input's images, read; the input holds images (so only a vision model may take it); the history holds some. */
  images: ImageSet;
  hasImages: boolean;
  historyImages: boolean;
  /** Reads the history's images (each once for the whole response). */
  imageLoader: ImageLoader | undefined;
}

export interface ResponseContext {
  conversationId: string;
  /** A stateless request: its hidden conversation is created when the response is stored. */
  newConversation: boolean;
  messages: ChatMessage[];
  promptTokens: number;
  maxOutputTokens: number;
  /** Set when the files' text did not fit and passages were selected: how many of how many. */
  excerpts?: { kept: number; total: number } | undefined;
  /**
   * Set when older history was left out that no summary covers: the tokens
   * of history to keep as they are when the summary catches up (half of
   * what this prompt had for history).
   */
  overflow?: number | undefined;
}

/** However small the window, excerpts of at least this many tokens are given (fewer would not be worth a model call). */
const MIN_FILE_TOKENS = 1000;

/** An input item as a conversation item; a server tool's call sent back with its result becomes both. */
export function storedOf(item: ResolvedItem, files: FileTexts = new Map(), images: Map<ImagePart, Pick<LoadedImage, 'mediaType' | 'bytes' | 'sha256'>> = new Map()): StoredItem[] {
  if (item.type === 'message') {
    // A file part is stored with its name as it is now, for history and input item listings; an image as a reference.
    const content = item.content.map((p): MessagePart =>
      p.type === 'input_file' ? { type: 'input_file', file_id: p.file_id, filename: files.get(p.file_id)?.filename ?? p.filename } : p.type === 'input_image' ? storedImage(p, images.get(p)) : p,
    );
    // Counted with the files' text and the images' estimate, so that history budgets know what re-reading them will cost.
    return [{ role: item.role, itemId: messageId(), content, tokens: countTokens(textOfContent(content, files)) + imageTokens(content) }];
  }
  const output = (callId: string, text: string): StoredItem => ({
    role: 'tool',
    type: 'function_call_output',
    itemId: functionCallOutputId(),
    content: { call_id: callId, output: text },
    tokens: countTokens(text),
  });
  if (item.type === 'function_call_output') return [output(item.callId, item.output)];
  const call: StoredItem = {
    role: 'assistant',
    type: 'function_call',
    itemId: functionCallId(),
    content: { call_id: item.callId, name: item.name, arguments: item.arguments },
    tokens: countTokens(item.name) + countTokens(item.arguments),
  };
  return item.output === undefined ? [call] : [call, output(item.callId, item.output)];
}

/** A stored item (of a referenced response) as the input item it stands for. */
function resolvedOf(row: Row): ResolvedItem {
  if (row.type === 'function_call') {
    const c = row.content as { call_id: string; name: string; arguments: string };
    return { type: 'function_call', callId: c.call_id, name: c.name, arguments: c.arguments };
  }
  if (row.type === 'function_call_output') {
    const c = row.content as { call_id: string; output: string };
    return { type: 'function_call_output', callId: c.call_id, output: c.output };
  }
  const role = row.role === 'assistant' || row.role === 'system' || row.role === 'developer' ? row.role : 'user';
  return { type: 'message', role, content: row.content as MessagePart[] };
}

/** Items with every `item_reference` replaced by the user's own stored item (and the result of a referenced call). */
export async function resolveItems(db: Db, userId: string, items: InputItem[]): Promise<ResolvedItem[]> {
  const ids = items.flatMap((it) => (it.type === 'item_reference' ? [it.id] : []));
  const found = await findOwnedItems(db, userId, ids);
  return items.flatMap((it) => (it.type === 'item_reference' ? found.get(it.id)!.map(resolvedOf) : [it]));
}

/** Which conversation this request continues, checking ownership of everything it names. */
async function resolveConversation(db: Db, principal: Principal, req: CreateRequest): Promise<string | null> {
  let conversationId = req.conversationId;
  if (req.previousResponseId !== null) {
    const previous = await findOwnedResponse(db, req.previousResponseId, principal.userId);
    if (conversationId !== null && conversationId !== previous.conversationId) {
      throw badRequest('conversation_mismatch', 'previous_response_id belongs to another conversation than conversation_id', 'previous_response_id');
    }
    conversationId = previous.conversationId;
  }
  if (conversationId !== null) await findOwnedConversation(db, conversationId, principal.userId);
  return conversationId;
}

export async function prepareContext(db: Db, principal: Principal, req: CreateRequest, imageSources?: ImageSources): Promise<PreparedContext> {
  const existing = await resolveConversation(db, principal, req);
  if (req.projectId !== null) await assertProjectMember(db, req.projectId, principal);
  const system = req.instructions ?? (existing === null ? null : await systemMessageOf(db, existing));
  const head: ChatMessage[] = system === null || system === '' ? [] : [{ role: 'system', content: system }];
  const resolved = await resolveItems(db, principal.userId, req.input);
  const files = await filesForInput(db, principal.userId, resolved.flatMap((it) => (it.type === 'message' ? fileIdsOf([it.content]) : [])));
  const imageLoader = imageSources === undefined ? undefined : new ImageLoader(imageSources, principal.userId);
  const images = imageLoader === undefined ? { set: new Map() as ImageSet, byPart: new Map<ImagePart, LoadedImage>() } : await inputImages(imageLoader, resolved);
  const input = resolved.flatMap((it) => storedOf(it, files, images.byPart));
  const inputMessages = messagesOf(input, files, images.set);
  const fileTokens = [...files].reduce((sum, [id, f]) => sum + countTokens(renderFile(id, f, undefined)), 0);
  const summary = existing === null ? null : await loadSummary(db, existing);
  return {
    existing,
    conversationId: existing ?? randomUUID(),
    head,
    inputMessages,
    input,
    fixedTokens: countMessageTokens([...head, ...inputMessages]),
    historyTokens:
      existing === null ? 0 : summary === null ? await historyTokens(db, existing) : summaryCost(summary) + (await historyTokens(db, existing, summary.throughPosition)),
    summary,
    files,
    shrinkableTokens: Math.max(0, fileTokens - MIN_FILE_TOKENS),
    query: resolved.flatMap((it) => (it.type === 'message' && it.role === 'user' ? it.content.map(partText) : [])).join('\n'),
    images: images.set,
    hasImages: input.some((it) => Array.isArray(it.content) && (it.content as MessagePart[]).some((p) => p.type === 'input_image')),
    historyImages: existing !== null && imageLoader !== undefined && (await historyHasImages(db, existing)),
    imageLoader,
  };
}

/**
 * The input's messages for one model: as prepared when they fit, otherwise
 * with the files' text cut down to the passages most related to the request
 * (excerpts.ts). The files get what the window leaves after the rest of the
 * input, the answer, and some history (up to a quarter of the window).
 */
function inputFor(prepared: PreparedContext, room: number): { messages: ChatMessage[]; tokens: number; excerpts?: { kept: number; total: number } } {
  const whole = { messages: prepared.inputMessages, tokens: prepared.fixedTokens };
  if (prepared.files.size === 0) return whole;
  const historyShare = Math.min(prepared.historyTokens, Math.floor(room / 4));
  if (prepared.fixedTokens + historyShare <= room) return whole;
  const fileTokens = prepared.shrinkableTokens + MIN_FILE_TOKENS;
  const others = prepared.fixedTokens - fileTokens;
  // Tags, notes and passage separators take a little: kept out of the budget the passages share.
  const budget = Math.max(MIN_FILE_TOKENS, room - historyShare - others - 50 * prepared.files.size);
  const picked = selectExcerpts(prepared.files, budget, prepared.query);
  const messages = messagesOf(prepared.input, picked.texts, prepared.images);
  return { messages, tokens: countMessageTokens([...prepared.head, ...messages]), excerpts: { kept: picked.kept, total: picked.total } };
}

/** The output a request may use on a model: what it asked for, capped by the model. */
export const outputBudget = (req: CreateRequest, model: ModelConfig) =>
  Math.min(req.maxOutputTokens ?? model.max_output_tokens, model.max_output_tokens);

/**
 * The prompt for one model: the system prompt, as much history as fits, and
 * the input. The budget is the model's context minus the reserved output and
 * what the response's tool steps added.
 */
export async function contextFor(db: Db, prepared: PreparedContext, req: CreateRequest, model: ModelConfig, addedTokens = 0): Promise<ResponseContext> {
  const maxOutputTokens = outputBudget(req, model);
  // `addedTokens`: what this response's own tool steps add after the input; history gives way to them.
  const room = model.context_window - maxOutputTokens - addedTokens;
  const input = inputFor(prepared, room);
  const budget = room - input.tokens;
  if (budget < 0) {
    throw badRequest(
      'context_length_exceeded',
      `the input and instructions are ${input.tokens} tokens; this model takes ${model.context_window - maxOutputTokens} with ${maxOutputTokens} kept for the answer`,
      'input',
    );
  }
  // The summary goes first when it takes at most half of the history's room; a window too small for it has the sliding window only.
  const summary = prepared.summary !== null && summaryCost(prepared.summary) <= budget / 2 ? prepared.summary : null;
  const summaryTokens = summary === null ? 0 : summaryCost(summary);
  // A model that cannot see images gets notes in their place; one that can gets the history's images read again.
  const vision = model.capabilities.includes('vision');
  const loader = vision ? prepared.imageLoader : undefined;
  const readImages = loader === undefined ? undefined : (parts: Parameters<ImageLoader['forStored']>[0]) => loader.forStored(parts);
  const history =
    prepared.existing === null
      ? { messages: [], tokens: 0, cut: false }
      : await historyWithin(db, prepared.existing, budget - summaryTokens, summary?.throughPosition ?? -1, readImages);
  const turns = vision ? [...history.messages, ...input.messages] : withoutImages([...history.messages, ...input.messages]);
  checkResults(turns, input.messages);
  const head = summary === null ? prepared.head : withSummary(prepared.head, summary);
  return {
    conversationId: prepared.conversationId,
    newConversation: prepared.existing === null,
    messages: [...head, ...pairToolCalls(turns)],
    promptTokens: input.tokens + history.tokens + summaryTokens,
    maxOutputTokens,
    excerpts: input.excerpts,
    overflow: history.cut && (summary !== null || prepared.summary === null) ? Math.floor(budget / 2) : undefined,
  };
}

/** A function's result must answer a call the conversation (or the input) made: a stray one is the client's mistake. */
function checkResults(turns: ChatMessage[], input: ChatMessage[]): void {
  const calls = new Set(turns.flatMap((m) => (m.role === 'assistant' ? (m.toolCalls ?? []).map((c) => c.id) : [])));
  const stray = input.find((m) => m.role === 'tool' && !calls.has(m.callId));
  if (stray?.role === 'tool') {
    throw badRequest('unknown_call_id', `a function_call_output answers call_id ${stray.callId}, which no function_call of this conversation made`, 'input');
  }
}
