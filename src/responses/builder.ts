import type { UpstreamUsage } from '../providers/types.ts';
import type { CreateRequest } from './request.ts';
import { emptyPart, messageId, outputTextOf, usageOf, type MessageItem, type ResponseObject, type ResponseStatus } from './object.ts';

export interface ResponseEcho {
  instructions: string | null;
  metadata: Record<string, string>;
  previousResponseId: string | null;
  projectId: string | null;
  toolChoice: unknown;
  parallelToolCalls: boolean;
  temperature: number | null;
  topP: number | null;
  maxOutputTokens: number | null;
}

/** What a response echoes of its request. */
export function echoOf(request: CreateRequest): ResponseEcho {
  return {
    instructions: request.instructions,
    metadata: request.metadata,
    previousResponseId: request.previousResponseId,
    projectId: request.projectId,
    toolChoice: request.toolChoice,
    parallelToolCalls: request.parallelToolCalls,
    temperature: request.temperature,
    topP: request.topP,
    maxOutputTokens: request.maxOutputTokens,
  };
}

/**
 * The state of one response as it is produced: the engine changes it, the
 * lifecycle events carry snapshots of it, and the store persists its end.
 */
export class ResponseBuilder {
  status: ResponseStatus = 'in_progress';
  readonly output: MessageItem[] = [];
  usage: UpstreamUsage | null = null;
  error: { code: string; message: string } | null = null;
  incompleteReason: string | null = null;
  completedAt: number | null = null;
  firstTokenAt: number | null = null;

  constructor(
    readonly id: string,
    readonly createdAt: number,
    readonly model: string,
    readonly conversationId: string,
    readonly echo: ResponseEcho,
  ) {}

  addMessage(): { item: MessageItem; index: number } {
    const item: MessageItem = { id: messageId(), type: 'message', role: 'assistant', status: 'in_progress', content: [emptyPart()] };
    this.output.push(item);
    return { item, index: this.output.length - 1 };
  }

  get outputText(): string {
    return outputTextOf(this.output);
  }

  /** Ends the response; items still in progress take the response's outcome. */
  finish(status: Exclude<ResponseStatus, 'in_progress'>, at: number): void {
    this.status = status;
    this.completedAt = at;
    for (const item of this.output) if (item.status === 'in_progress') item.status = status === 'completed' ? 'completed' : 'incomplete';
  }

  /**
   * The response object as the API shows it; a copy of everything the builder
   * changes later (items, parts, error), so later changes do not reach events
   * already sent. Copied by hand: this runs several times per response, and a
   * generic deep clone was a measurable share of a request's CPU time.
   */
  snapshot(): ResponseObject {
    const u = this.usage;
    return {
      id: this.id,
      object: 'response',
      created_at: this.createdAt,
      completed_at: this.completedAt,
      status: this.status,
      model: this.model,
      output: this.output.map((item) => ({
        ...item,
        content: item.content.map((p) => ({ ...p, annotations: [...p.annotations], logprobs: [...p.logprobs] })),
      })),
      output_text: this.outputText,
      usage: this.status === 'in_progress' || u === null ? null : usageOf(u.inputTokens, u.outputTokens, u.cachedTokens, u.reasoningTokens),
      conversation_id: this.conversationId,
      conversation: { id: this.conversationId },
      project_id: this.echo.projectId,
      instructions: this.echo.instructions,
      metadata: { ...this.echo.metadata },
      error: this.error === null ? null : { ...this.error },
      incomplete_details: this.incompleteReason === null ? null : { reason: this.incompleteReason },
      previous_response_id: this.echo.previousResponseId,
      tools: [],
      tool_choice: this.echo.toolChoice,
      parallel_tool_calls: this.echo.parallelToolCalls,
      temperature: this.echo.temperature,
      top_p: this.echo.topP,
      max_output_tokens: this.echo.maxOutputTokens,
    };
  }
}
