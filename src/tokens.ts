import { countTokens as count } from 'gpt-tokenizer/encoding/o200k_base';

/**
 * Token counts for history windows and for usage when an upstream reports
 * none. o200k_base (gpt-tokenizer, pure JS) is one real BPE vocabulary used
 * for every model: exact for OpenAI's current models, close for others, and
 * far better than characters / 4.
 */
export function countTokens(text: string): number {
  return text === '' ? 0 : count(text);
}

/** The framing chat templates add around each message (role markers, separators). */
const PER_MESSAGE = 4;

export function countMessageTokens(messages: { content: string }[]): number {
  return messages.reduce((sum, m) => sum + PER_MESSAGE + countTokens(m.content), messages.length > 0 ? 2 : 0);
}
