/**
 * The one internal language every upstream adapter speaks (DESIGN.md):
 * the engine never sees a provider's wire format.
 */

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

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
  /** Aborts the upstream call: the client went away, or the server is giving up. */
  signal: AbortSignal;
}

export interface UpstreamUsage {
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  reasoningTokens: number;
}

export type FinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls' | 'other';

export type ProviderEvent =
  | { type: 'text'; text: string }
  | { type: 'usage'; usage: UpstreamUsage }
  | { type: 'finish'; reason: FinishReason };

export interface Provider {
  /** Streams one answer. Throws UpstreamError (or the signal's AbortError) on failure. */
  stream(request: ChatRequest): AsyncIterable<ProviderEvent>;
  close(): Promise<void>;
}

export type UpstreamErrorKind = 'connect' | 'timeout' | 'status' | 'protocol';

/**
 * An upstream failure. The message is for the log; clients only ever see the
 * SPEC's generic codes (see toClientError), never the upstream's status or body.
 */
export class UpstreamError extends Error {
  override name = 'UpstreamError';

  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    readonly status?: number,
    /** The start of the upstream's error body: logged at debug level only, since upstreams may echo the prompt. */
    readonly detail?: string,
  ) {
    super(message);
  }

  /** Worth trying another model: nothing reached the client and the fault may be the upstream's alone. */
  get retryable(): boolean {
    return this.kind !== 'status' || this.status === 429 || (this.status !== undefined && this.status >= 500);
  }
}
