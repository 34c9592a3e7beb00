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

export function countMessageTokens(messages: { content: string }[]): number {
  return messages.reduce((sum, m) => sum + PER_MESSAGE + countTokens(m.content), messages.length > 0 ? 2 : 0);
}
