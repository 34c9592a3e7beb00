/**
 * The one internal language every upstream adapter speaks:
 * the engine never sees a provider's wire format.
 */

/** A call the model made to a tool, as history sends it back. `id` is our `call_…` id. */
export interface ToolCall {
  id: string;
  name: string;
  /** The arguments as the model wrote them: a JSON string. */
  arguments: string;
}

export type ImageDetail = 'low' | 'high' | 'auto';

/** An image in a user message: its bytes, base64-encoded, of a type every vision upstream reads (png, jpeg, gif, webp). */
export interface ImageContent {
  type: 'image';
  mediaType: string;
  /** Base64 of the bytes. */
  data: string;
  detail: ImageDetail;
}

/** A piece of a user message that holds images: text and images in the order the user gave them. */
export type UserPart = { type: 'text'; text: string } | ImageContent;

export type ChatMessage =
  | { role: 'system'; content: string }
  /** Plain text, or parts when the message holds images. */
  | { role: 'user'; content: string | UserPart[] }
  /** An answer, with the tool calls it made (its text may be empty then). */
  | { role: 'assistant'; content: string; toolCalls?: ToolCall[] | undefined }
  /** A tool's result, answering the call with that id. */
  | { role: 'tool'; callId: string; content: string };

/** A tool the model may call: its arguments' JSON Schema. */
export interface ToolSpec {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
  strict?: boolean | undefined;
}

/** `required`: some tool must be called; `{name}`: that one; `none`: tools are shown (the history may hold calls) but none may be called. */
export type ToolChoice = 'auto' | 'none' | 'required' | { name: string };

export type ResponseFormat =
  | { type: 'json_object' }
  | { type: 'json_schema'; name: string; schema: Record<string, unknown>; strict?: boolean | undefined; description?: string | undefined };

export interface ChatRequest {
  /** The provider's own model name (`upstream_model`). */
  model: string;
  messages: ChatMessage[];
  maxOutputTokens: number;
  temperature?: number | undefined;
  topP?: number | undefined;
  responseFormat?: ResponseFormat | undefined;
  /** Tools offered for this call; none means the model can only answer. */
  tools?: ToolSpec[] | undefined;
  toolChoice?: ToolChoice | undefined;
  parallelToolCalls?: boolean | undefined;
  /** Aborts the upstream call: the client went away, or the server is giving up. */
  signal: AbortSignal;
  /** Called when the call got a connection and was sent: waiting before that is not the model's latency. */
  onSent?: (() => void) | undefined;
}

export interface UpstreamUsage {
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  reasoningTokens: number;
}

export type FinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls' | 'other';

/**
 * What an adapter streams. Tool calls come as start, argument pieces and end,
 * keyed by the call's position in this answer (`index`), which is all the
 * upstreams agree on; the engine gives each call its own ids.
 */
export type ProviderEvent =
  | { type: 'text'; text: string }
  | { type: 'tool_call_start'; index: number; name: string }
  | { type: 'tool_call_delta'; index: number; arguments: string }
  | { type: 'tool_call_end'; index: number }
  | { type: 'usage'; usage: UpstreamUsage }
  | { type: 'finish'; reason: FinishReason };

export interface Provider {
  /** Streams one answer. Throws UpstreamError (or the signal's AbortError) on failure. */
  stream(request: ChatRequest): AsyncIterable<ProviderEvent>;
  close(): Promise<void>;
}

/**
 * `saturated`: every connection to the provider stayed busy past its queue
 * timeout, so the request was never sent.
 */
export type UpstreamErrorKind = 'connect' | 'timeout' | 'status' | 'protocol' | 'saturated';

/** Statuses that say the request itself was at fault, not the model server. */
const REQUEST_FAULT_STATUSES = new Set([400, 404, 413, 422]);

/** How upstreams word "the prompt does not fit", whatever status (or stream error event) they send it with. */
const CONTEXT_TOO_LONG =
  /context[ _-]?(length|window)|maximum context|prompt is too long|input is too long|too many (input |prompt )?tokens|exceeds? the (model'?s )?(maximum|max|context)/i;

/**
 * An upstream failure. The message is for the log; clients only ever see the
 * generic codes (see upstreamFailure in responses/errors.ts), never the upstream's status or body.
 */
export class UpstreamError extends Error {
  override name = 'UpstreamError';

  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    readonly status?: number,
    /** The start of the upstream's error body: logged at debug level only, since upstreams may echo the prompt. */
    readonly detail?: string,
    /** How long the upstream (its `retry-after`) or our own queue asks us to wait, in ms. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }

  /** Worth trying another model: nothing reached the client and the fault may be the upstream's alone. */
  get retryable(): boolean {
    if (this.kind === 'saturated') return true;
    return this.kind !== 'status' || this.status === 429 || (this.status !== undefined && this.status >= 500);
  }

  /**
   * The request caused it (malformed, too large, an unknown model name, a
   * prompt over the window): the model server is fine and its breaker must
   * not hear of it, or one client's bad requests would cut every tenant off.
   */
  get requestFault(): boolean {
    if (this.kind === 'status' && this.status !== undefined && REQUEST_FAULT_STATUSES.has(this.status)) return true;
    if (this.kind !== 'status' && this.kind !== 'protocol') return false;
    return CONTEXT_TOO_LONG.test(`${this.message} ${this.detail ?? ''}`);
  }
}

/**
 * A `retry-after` header value (delay-seconds or an HTTP date) in ms from
 * `now`; undefined when absent or unreadable. Never negative.
 */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (text === undefined || text === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  // Date.parse reads bare numbers such as "-5" as years; an HTTP date always names its day and month.
  if (!/[A-Za-z]/.test(text)) return undefined;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}
