import { randomUUID } from 'node:crypto';
import type { SourceView } from '../projects/sources.ts';

/** The response object and its parts, exactly as the API returns them (README, "API"; tool items in docs/tools.md). */

/** A span of an answer that cites a web page a tool returned; indexes count code points of the part's text. */
export interface UrlCitation {
  type: 'url_citation';
  url: string;
  title: string;
  start_index: number;
  end_index: number;
}

/** A sentence of the answer found word for word in an input file; `index` is the code point offset where the quote ends. */
export interface FileCitation {
  type: 'file_citation';
  file_id: string;
  filename: string;
  index: number;
}

export type Annotation = UrlCitation | FileCitation;

export interface OutputText {
  type: 'output_text';
  text: string;
  annotations: Annotation[];
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

/**
 * A tool call the model made. A server tool's call carries its result in
 * `output` (a JSON string) and ends `completed` or `failed`.
 */
export interface FunctionCallItem {
  id: string;
  type: 'function_call';
  call_id: string;
  name: string;
  /** The arguments as the model wrote them, a JSON string. */
  arguments: string;
  status: ItemStatus | 'failed';
  output?: string;
}

export type OutputItem = MessageItem | FunctionCallItem;

/** The summary of one tool call that a finished response lists in `tool_calls`. */
export interface ToolCallSummary {
  id: string;
  call_id: string;
  name: string;
  arguments: string;
  status: FunctionCallItem['status'];
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
  output: OutputItem[];
  output_text: string;
  tool_calls: ToolCallSummary[];
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
  /** With a `project_id` only: the passages of the project's documents the model was given (docs/retrieval.md). */
  sources?: SourceView[];
}

export const emptyPart = (): OutputText => ({ type: 'output_text', text: '', annotations: [], logprobs: [] });

/**
 * 32 random hex digits. randomUUID draws from a cached pool of entropy, where
 * randomBytes calls into the kernel each time: a few ids per response made
 * that a visible share of a request's CPU.
 */
const hex = () => randomUUID().replaceAll('-', '');
export const messageId = () => `msg_${hex()}`;
export const functionCallId = () => `fc_${hex()}`;
export const callId = () => `call_${hex()}`;
export const functionCallOutputId = () => `fco_${hex()}`;

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
export function outputTextOf(items: OutputItem[]): string {
  let text = '';
  for (const item of items) if (item.type === 'message') for (const part of item.content) text += part.text;
  return text;
}

export function toolCallsOf(items: OutputItem[]): ToolCallSummary[] {
  return items
    .filter((item): item is FunctionCallItem => item.type === 'function_call')
    .map(({ id, call_id, name, arguments: args, status }) => ({ id, call_id, name, arguments: args, status }));
}

/** A copy of an item deep enough that later changes to the original do not reach it. */
export function copyItem<T extends OutputItem>(item: T): T {
  if (item.type === 'function_call') return { ...item };
  return { ...item, content: item.content.map((p) => ({ ...p, annotations: p.annotations.map((a) => ({ ...a })), logprobs: [...p.logprobs] })) };
}
