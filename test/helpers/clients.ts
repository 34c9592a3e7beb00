import { startHarness, type Harness } from './harness.ts';

/**
 * Shared set-up of the client suites: each starts one server whose one model
 * can call tools and answer in JSON, and drives a published client library
 * against it, configured with nothing but the base URL and an API key.
 */

/** One server with a fake upstream model that can call tools. */
export function startClientServer(): Promise<Harness> {
  return startHarness({ model: { capabilities: ['json', 'tools'] } });
}

/** Forgets what earlier tests queued and saw, so each test reads its own model calls from index 0. */
export function resetUpstream(h: Harness): void {
  h.upstream.queue.length = 0;
  h.upstream.requests.length = 0;
  h.upstream.fallback = {};
}

/** A chat message as the fake upstream received it. */
export interface SentMessage {
  role: string;
  content: unknown;
  tool_calls?: { id: string; type: string; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}

/** The messages of the `i`-th model call. */
export function sentMessages(h: Harness, i: number): SentMessage[] {
  const seen = h.upstream.requests[i];
  if (seen === undefined) throw new Error(`the model was called ${h.upstream.requests.length} times, not ${i + 1}`);
  return seen.body.messages;
}

/** A message's text, whether the server sent it as a string or as a list of text parts. */
export function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p: { text?: unknown }) => (typeof p.text === 'string' ? p.text : '')).join('');
  return '';
}

/** The role and text of each message the `i`-th model call got, for conversations of plain text. */
export const sentTranscript = (h: Harness, i: number): { role: string; text: string }[] =>
  sentMessages(h, i).map((m) => ({ role: m.role, text: textOf(m.content) }));

/** The names of the tools the `i`-th model call was offered. */
export const offeredTools = (h: Harness, i: number): string[] =>
  ((h.upstream.requests[i]?.body.tools ?? []) as { function: { name: string } }[]).map((t) => t.function.name);

/** A promise a test resolves by hand: holds a scripted upstream stream open until the test lets it go on. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** The weather tool every suite offers, as JSON Schema for the clients that take it raw. */
export const WEATHER_PARAMETERS = {
  type: 'object',
  properties: { city: { type: 'string', description: 'The city' } },
  required: ['city'],
  additionalProperties: false,
} as const;
