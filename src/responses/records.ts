import type { ResponseObject } from './object.ts';

/** The records the response writer takes (responses/writer.ts): what each write of a response's life holds. */

export interface StoredItem {
  role: string;
  /** message (the default), function_call or function_call_output. */
  type?: 'message' | 'function_call' | 'function_call_output';
  /** The id clients know the item by, for `item_reference`. */
  itemId?: string | undefined;
  /** output: made by the response; input (the default): sent by the client. */
  origin?: 'input' | 'output';
  content: unknown;
  tokens: number;
}

/** What a response in progress keeps in its row for recovery. */
export interface PendingState {
  input: StoredItem[];
  promptTokens: number;
  reservationId: string | null;
  windows: { day: { start: string }; month: { start: string } };
  /** Usage of the model calls already finished, and the prompt of the one under way, written by checkpoints. */
  used?: { inputTokens: number; outputTokens: number; inFlight: number } | undefined;
}

export interface Owner {
  userId: string;
  organizationId: string;
  keyId: string;
}

export interface StartRecord extends Owner {
  responseId: string;
  /** false (`store: false`): the row holds no body, and `pending` no input, from the start; absent: stored. */
  store?: boolean;
  instanceId: string;
  projectId: string | null;
  conversation: { id: string; isNew: boolean; title: string | null; instructions: string | null; instructionTokens: number };
  model: string;
  createdAt: number;
  body: ResponseObject;
  pending: PendingState;
}

export interface FinishRecord extends Owner {
  responseId: string;
  /**
   * false (`store: false`): only the facts are written (status, model, usage,
   * times, error code); the body and the items are dropped by the writer.
   * Absent: stored.
   */
  store?: boolean;
  conversationId: string;
  /** The conversation was created by this response's admission. */
  newConversation: boolean;
  projectId: string | null;
  model: string;
  status: 'completed' | 'failed' | 'incomplete';
  usage: { inputTokens: number; outputTokens: number; cachedTokens: number; reasoningTokens: number; totalTokens: number };
  createdAt: number;
  completedAt: number | null;
  firstTokenMs: number | null;
  durationMs: number;
  body: ResponseObject;
  items: StoredItem[];
  reservationId: string | null;
  windows: { day: { start: string }; month: { start: string } };
}

export interface ReleaseRecord {
  responseId: string;
  conversationId: string;
  newConversation: boolean;
  reservationId: string | null;
}

