import { randomUUID } from 'node:crypto';
import type { Principal } from '../auth/key-auth.ts';
import { findOwnedConversation, historyTokens, historyWithin, systemMessageOf } from '../conversations/store.ts';
import type { Db } from '../db/client.ts';
import { badRequest } from '../http/api-error.ts';
import type { ChatMessage } from '../providers/types.ts';
import type { ModelConfig } from '../router/catalog.ts';
import { assertProjectMember } from '../tenancy/projects.ts';
import { countMessageTokens, countTokens } from '../tokens.ts';
import type { CreateRequest, InputMessage } from './request.ts';
import { findOwnedResponse } from './store.ts';

/** What a request brings before a model is chosen: checked ownership, the system prompt, token counts. */
export interface PreparedContext {
  /** The conversation continued, or null for a stateless request. */
  existing: string | null;
  conversationId: string;
  /** The system prompt and the input, as chat messages, in order. */
  head: ChatMessage[];
  inputMessages: ChatMessage[];
  /** The request's input with each item's token count, as it will be stored. */
  input: (InputMessage & { tokens: number })[];
  /** Tokens of system prompt and input (with message framing). */
  fixedTokens: number;
  /** Tokens of the whole eligible history. */
  historyTokens: number;
}

export interface ResponseContext {
  conversationId: string;
  /** A stateless request: its hidden conversation is created when the response is stored. */
  newConversation: boolean;
  messages: ChatMessage[];
  promptTokens: number;
  maxOutputTokens: number;
  input: (InputMessage & { tokens: number })[];
}

const toChat = (m: InputMessage): ChatMessage => ({
  role: m.role === 'assistant' ? 'assistant' : m.role === 'user' ? 'user' : 'system',
  content: m.content.map((p) => p.text).join('\n'),
});

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

export async function prepareContext(db: Db, principal: Principal, req: CreateRequest): Promise<PreparedContext> {
  const existing = await resolveConversation(db, principal, req);
  if (req.projectId !== null) await assertProjectMember(db, req.projectId, principal);
  const system = req.instructions ?? (existing === null ? null : await systemMessageOf(db, existing));
  const head: ChatMessage[] = system === null || system === '' ? [] : [{ role: 'system', content: system }];
  const input = req.input.map((m) => ({ ...m, tokens: countTokens(toChat(m).content) }));
  const inputMessages = input.map(toChat);
  return {
    existing,
    conversationId: existing ?? randomUUID(),
    head,
    inputMessages,
    input,
    fixedTokens: countMessageTokens([...head, ...inputMessages]),
    historyTokens: existing === null ? 0 : await historyTokens(db, existing),
  };
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
  const budget = model.context_window - maxOutputTokens - prepared.fixedTokens - addedTokens;
  if (budget < 0) {
    throw badRequest(
      'context_length_exceeded',
      `the input and instructions are ${prepared.fixedTokens} tokens; this model takes ${model.context_window - maxOutputTokens} with ${maxOutputTokens} kept for the answer`,
      'input',
    );
  }
  const history = prepared.existing === null ? { messages: [], tokens: 0 } : await historyWithin(db, prepared.existing, budget);
  return {
    conversationId: prepared.conversationId,
    newConversation: prepared.existing === null,
    messages: [...prepared.head, ...history.messages, ...prepared.inputMessages],
    promptTokens: prepared.fixedTokens + history.tokens,
    maxOutputTokens,
    input: prepared.input,
  };
}
