import { randomBytes } from 'node:crypto';

/** The response object and its parts, exactly as the API returns them. */

export interface OutputText {
  type: 'output_text';
  text: string;
  annotations: unknown[];
  logprobs: unknown[];
}

export type ItemStatus = 'in_progress' | 'completed' | 'incomplete';

export interface MessageItem {
  id: string;
  type: 'message';
  role: 'assistant';
  status: ItemStatus;
  content: OutputText[];
}

export interface Usage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

export type ResponseStatus = 'in_progress' | 'completed' | 'failed' | 'incomplete';

export interface ResponseObject {
  id: string;
  object: 'response';
  created_at: number;
  completed_at: number | null;
  status: ResponseStatus;
  model: string;
  output: MessageItem[];
  output_text: string;
  usage: Usage | null;
  conversation_id: string;
  conversation: { id: string };
  project_id: string | null;
  instructions: string | null;
  metadata: Record<string, string>;
  error: { code: string; message: string } | null;
  incomplete_details: { reason: string } | null;
  previous_response_id: string | null;
  tools: unknown[];
  tool_choice: unknown;
  parallel_tool_calls: boolean;
  temperature: number | null;
  top_p: number | null;
  max_output_tokens: number | null;
}

export const emptyPart = (): OutputText => ({ type: 'output_text', text: '', annotations: [], logprobs: [] });

export const messageId = () => `msg_${randomBytes(16).toString('hex')}`;

export function usageOf(input: number, output: number, cached = 0, reasoning = 0): Usage {
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: cached },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: reasoning },
    total_tokens: input + output,
  };
}

/** Every text part of every message item, in order: the response's `output_text`. */
export function outputTextOf(items: MessageItem[]): string {
  return items.flatMap((item) => item.content.map((part) => part.text)).join('');
}
