import { countTokens as count } from 'gpt-tokenizer/encoding/o200k_base';

/**
 * Token counts for history windows and for usage when an upstream reports
 * none. o200k_base (gpt-tokenizer, pure JS) is one real BPE vocabulary used
 * for every model: exact for OpenAI's current models, close for others, and
 * far better than characters / 4.
 */
export function countTokens(text: string): number {
  if (text === '') return 0;
  if (!LONG_RUN.test(text)) return count(text);
  // BPE merges within one pre-tokenized word in time quadratic in its length: 64 KB of one "word" took
  // seconds of the event loop. Long runs are counted in slices; the count moves by a token or so per slice.
  let total = 0;
  let last = 0;
  for (const run of text.matchAll(LONG_RUNS)) {
    if (run.index > last) total += count(text.slice(last, run.index));
    for (let i = 0; i < run[0].length; i += SLICE) total += count(run[0].slice(i, i + SLICE));
    last = run.index + run[0].length;
  }
  if (last < text.length) total += count(text.slice(last));
  return total;
}

/** Runs of non-space longer than this are counted in slices of this length. */
const SLICE = 256;
const LONG_RUN = /\S{257}/;
const LONG_RUNS = /\S{257,}/g;

/** The framing chat templates add around each message (role markers, separators). */
const PER_MESSAGE = 4;

/**
 * What one image is counted as, before any upstream says: a fixed estimate
 * by detail, near what the large vision models charge (a low-detail image is
 * a thumbnail; a high-detail one is tiled up to about 1600 tokens). Prompts,
 * history windows and token reservations all use it, so limits stay honest.
 */
export const IMAGE_TOKENS = { low: 85, high: 1600, auto: 1600 } as const;

/** Tokens of a message's content: text, or text and images. */
export function countContentTokens(content: string | readonly ({ type: 'text'; text: string } | { type: 'image'; detail: keyof typeof IMAGE_TOKENS })[]): number {
  if (typeof content === 'string') return countTokens(content);
  return content.reduce((sum, p) => sum + (p.type === 'text' ? countTokens(p.text) : IMAGE_TOKENS[p.detail]), 0);
}

export function countMessageTokens(messages: { content: Parameters<typeof countContentTokens>[0] }[]): number {
  return messages.reduce((sum, m) => sum + PER_MESSAGE + countContentTokens(m.content), messages.length > 0 ? 2 : 0);
}
