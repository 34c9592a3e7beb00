import type { ProjectSources } from '../projects/sources.ts';
import type { UpstreamUsage } from '../providers/types.ts';
import type { ResponseEvent } from './events.ts';
import type { CreateRequest } from './request.ts';
import { copyItem, outputTextOf, toolCallsOf, usageOf, type OutputItem, type ResponseObject, type ResponseStatus } from './object.ts';

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
  tools: unknown[];
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
    tools: request.tools,
  };
}

/**
 * The state of one response as it is produced. Its output is changed only by
 * `apply`, the one reducer of the response's events, so the streamed events,
 * the collected document and the stored row cannot disagree. Status, usage
 * and error are set by the engine when the response ends.
 */
export class ResponseBuilder {
  status: ResponseStatus = 'in_progress';
  readonly output: OutputItem[] = [];
  usage: UpstreamUsage | null = null;
  error: { code: string; message: string } | null = null;
  incompleteReason: string | null = null;
  completedAt: number | null = null;
  firstTokenAt: number | null = null;
  /** Grows with every event applied: tells checkpoints whether anything changed. */
  revision = 0;
  /** The step of the loop each tool call was made in: history keeps the steps apart. */
  readonly stepOf = new Map<string, number>();
  /** Prompt tokens of the model call under way (0 between calls), for recovery after a crash. */
  inFlightPromptTokens = 0;
  /** A response with a `project_id`: the passages it was given, listed in `sources`. */
  projectSources: ProjectSources | undefined;

  constructor(
    readonly id: string,
    readonly createdAt: number,
    public model: string,
    readonly conversationId: string,
    readonly echo: ResponseEcho,
  ) {}

  /** Folds one event into the output (the same steps as a client's accumulator). */
  apply(event: ResponseEvent): void {
    this.revision++;
    switch (event.type) {
      case 'response.output_item.added':
        this.output.push(copyItem(event.item));
        break;
      case 'response.output_item.done':
        this.output[event.output_index] = copyItem(event.item);
        break;
      case 'response.content_part.added':
      case 'response.content_part.done': {
        const item = this.output[event.output_index];
        if (item?.type === 'message') item.content[event.content_index] = { ...event.part, annotations: [...event.part.annotations] };
        break;
      }
      case 'response.output_text.delta': {
        const item = this.output[event.output_index];
        const part = item?.type === 'message' ? item.content[event.content_index] : undefined;
        if (part !== undefined) part.text += event.delta;
        break;
      }
      case 'response.output_text.annotation.added': {
        const item = this.output[event.output_index];
        const part = item?.type === 'message' ? item.content[event.content_index] : undefined;
        if (part !== undefined) part.annotations[event.annotation_index] = { ...event.annotation };
        break;
      }
      case 'response.function_call_arguments.delta': {
        const item = this.output[event.output_index];
        if (item?.type === 'function_call') item.arguments += event.delta;
        break;
      }
      case 'response.function_call_arguments.done': {
        const item = this.output[event.output_index];
        if (item?.type === 'function_call') item.arguments = event.arguments;
        break;
      }
      default:
        break;
    }
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

  /** Adds a model call's usage to the response's. */
  addUsage(u: UpstreamUsage): void {
    const t = this.usage;
    this.usage =
      t === null
        ? { ...u }
        : {
            inputTokens: t.inputTokens + u.inputTokens,
            outputTokens: t.outputTokens + u.outputTokens,
            cachedTokens: t.cachedTokens + u.cachedTokens,
            reasoningTokens: t.reasoningTokens + u.reasoningTokens,
          };
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
      output: this.output.map(copyItem),
      output_text: this.outputText,
      tool_calls: toolCallsOf(this.output),
      usage: this.status === 'in_progress' || u === null ? null : usageOf(u.inputTokens, u.outputTokens, u.cachedTokens, u.reasoningTokens),
      conversation_id: this.conversationId,
      conversation: { id: this.conversationId },
      project_id: this.echo.projectId,
      instructions: this.echo.instructions,
      metadata: { ...this.echo.metadata },
      error: this.error === null ? null : { ...this.error },
      incomplete_details: this.incompleteReason === null ? null : { reason: this.incompleteReason },
      previous_response_id: this.echo.previousResponseId,
      tools: this.echo.tools,
      tool_choice: this.echo.toolChoice,
      parallel_tool_calls: this.echo.parallelToolCalls,
      temperature: this.echo.temperature,
      top_p: this.echo.topP,
      max_output_tokens: this.echo.maxOutputTokens,
      ...(this.projectSources === undefined ? {} : { sources: this.projectSources.list() }),
    };
  }
}
