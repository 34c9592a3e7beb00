import type { Annotation, OutputItem, OutputText, ResponseObject } from './object.ts';

/** The SSE payloads of a streamed response (README and docs/tools.md); `sequence_number` is set by the engine. */

type Seq = { sequence_number: number };
type Part = { item_id: string; output_index: number; content_index: number };
type At = { item_id: string; output_index: number };

export type ResponseEvent =
  | ({ type: 'response.created'; response: ResponseObject } & Seq)
  | ({ type: 'response.in_progress'; response: ResponseObject } & Seq)
  | ({ type: 'response.completed'; response: ResponseObject; final_text: string } & Seq)
  | ({ type: 'response.output_item.added'; output_index: number; item: OutputItem } & Seq)
  | ({ type: 'response.output_item.done'; output_index: number; item: OutputItem } & Seq)
  | ({ type: 'response.content_part.added'; part: OutputText } & Part & Seq)
  | ({ type: 'response.content_part.done'; part: OutputText } & Part & Seq)
  | ({ type: 'response.output_text.delta'; delta: string; logprobs: unknown[] } & Part & Seq)
  | ({ type: 'response.output_text.annotation.added'; annotation_index: number; annotation: Annotation } & Part & Seq)
  | ({ type: 'response.output_text.done'; text: string; logprobs: unknown[] } & Part & Seq)
  | ({ type: 'response.function_call_arguments.delta'; delta: string } & At & Seq)
  | ({ type: 'response.function_call_arguments.done'; arguments: string; name: string } & At & Seq)
  | ({ type: 'response.routing.completed'; model_id: string; category: string; reason: string } & Seq)
  | ({
      type: 'error';
      code: string;
      message: string;
      param: null;
      error: { type: string; code: string; message: string; param: null };
    } & Seq);

/** The last event of a stream: after it the connection closes. */
export const isTerminal = (e: ResponseEvent) => e.type === 'response.completed' || e.type === 'error';
