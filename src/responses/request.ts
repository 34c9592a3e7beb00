import { z } from 'zod';
import { badRequest, type ApiError } from '../http/api-error.ts';
import { formatPath } from '../param-path.ts';
import { INVALID_TEXT, storableJson, storableString, textIssueOf, textProblem } from '../http/text.ts';
import type { ResponseFormat } from '../providers/types.ts';
import { hasSubstance, parseInputItem, UnsupportedItem, type InputItem } from './input-items.ts';
import { parseTools, toolChoiceField, toolsField, type ToolsRequest } from './tools-request.ts';

export type { InputItem, InputMessage, InputRole } from './input-items.ts';

/**
 * POST /v1/responses request body. Unknown fields are ignored, so
 * clients can send newer OpenAI fields; every rejection has its own code and param.
 */

const MAX_ITEMS = 2048;

const uuidOrNull = z.uuid().nullish();
/** Ids the server looks up: any well-formed string; one of another shape than ours is simply not found (404). */
const lookupId = storableString().min(1).max(128).nullish();

const textFormat = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({
    type: z.literal('json_schema'),
    name: storableString().min(1).max(64),
    schema: storableJson(z.record(z.string(), z.unknown())),
    strict: z.boolean().nullish(),
    description: storableString().optional(),
  }),
]);

export const createResponseBody = z
  .object({
    model: storableString().max(256).default('auto'),
    // Items are checked one by one (input-items.ts), so each problem names its item and field.
    input: z.union([storableString(), z.array(z.unknown()).max(MAX_ITEMS)]),
    stream: z.boolean().nullish(),
    instructions: storableString().nullish(),
    conversation_id: lookupId,
    conversation: z.union([storableString().min(1).max(128), z.object({ id: storableString().min(1).max(128) })]).nullish(),
    project_id: uuidOrNull,
    previous_response_id: lookupId,
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().min(0).max(1).nullish(),
    max_output_tokens: z.number().int().min(1).nullish(),
    metadata: z
      .record(storableString().max(64), storableString().max(512))
      .refine((m) => Object.keys(m).length <= 16, { error: 'at most 16 pairs' })
      .nullish(),
    store: z.boolean().nullish(),
    user: storableString().max(256).nullish(),
    text: z.object({ format: textFormat.optional() }).nullish(),
    tools: toolsField,
    tool_choice: toolChoiceField,
    parallel_tool_calls: z.boolean().nullish(),
    reasoning: z.object({ effort: storableString().nullish(), summary: storableString().nullish() }).nullish(),
    stream_options: z.object({ include_routing: z.boolean().optional() }).nullish(),
  })
  .meta({ id: 'CreateResponseRequest' });

export interface CreateRequest {
  input: InputItem[];
  stream: boolean;
  instructions: string | null;
  conversationId: string | null;
  projectId: string | null;
  previousResponseId: string | null;
  temperature: number | null;
  topP: number | null;
  maxOutputTokens: number | null;
  metadata: Record<string, string>;
  responseFormat: ResponseFormat | undefined;
  /** What the response echoes of the request's tool fields. */
  tools: unknown[];
  toolChoice: unknown;
  parallelToolCalls: boolean;
  /** The tools as the step loop uses them. */
  toolSet: ToolsRequest;
  includeRouting: boolean;
  reasoningEffort: string | null;
  /** false: the response's content is not kept, only what metering needs (writer.ts). */
  store: boolean;
}

const CODE_BY_FIELD: Record<string, string> = {
  project_id: 'invalid_uuid',
  text: 'invalid_text_format',
};

/**
 * A string-or-list field fails as one union issue; the useful problem is
 * inside the branch that got furthest (the longest path), so descend into it.
 */
function innermost(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== 'invalid_union') return issue;
  const candidates = issue.errors.map((branch) => branch[0]).filter((i): i is z.core.$ZodIssue => i !== undefined);
  // A string with bad text fails both branches at the same depth; the bad text is the useful problem.
  const text = candidates.find((i) => textIssueOf(i) !== null);
  const best = text ?? candidates.sort((a, b) => b.path.length - a.path.length)[0];
  if (best === undefined || (best.path.length === 0 && text === undefined)) return issue;
  return innermost({ ...best, path: [...issue.path, ...best.path] });
}

function rejection(issues: z.core.$ZodIssue[]): ApiError {
  // Bad text first: it is the one problem a client must fix whatever else is wrong.
  for (const found of issues) {
    const text = textIssueOf(innermost(found));
    if (text === null) continue;
    const where = formatPath(text.path);
    return badRequest(INVALID_TEXT, textProblem(where, text.key), where || null);
  }
  const issue = innermost(issues[0]!);
  const field = String(issue.path[0] ?? 'body');
  const param = formatPath(issue.path);
  if (field === 'input') {
    if (issue.path.at(-1) === 'role') return badRequest('invalid_role', `${param} must be user, assistant, system or developer`, param);
    if (issue.path.length > 3 && issue.path[2] === 'content') {
      return badRequest('invalid_content_type', `${param}: content parts are {type:"input_text", text}, {type:"input_file", file_id} or {type:"input_image", image_url or file_id}`, param);
    }
    if (issue.path.length >= 3 && issue.path[2] === 'call_id') return badRequest('invalid_call_id', `${param}: ${issue.message}`, param);
    return badRequest('invalid_input', `${param}: input is a non-empty string or a non-empty list of items (${issue.message})`, param);
  }
  const code = CODE_BY_FIELD[field] ?? `invalid_${field}`;
  const message = code === 'invalid_uuid' ? `${param} must be a UUID` : `${param}: ${issue.message}`;
  return badRequest(code, message, param);
}

/** Every item of an input list, or the first problem as a 400. */
export function itemsOf(raw: unknown[]): InputItem[] {
  const items: InputItem[] = [];
  for (const [i, value] of raw.entries()) {
    const item = parseInputItem(value, i);
    if (item instanceof UnsupportedItem) throw badRequest(item.code, item.message, item.param);
    if (Array.isArray(item)) throw rejection(item);
    items.push(item);
  }
  return items;
}

/** Validates and normalises a request body, or throws the first problem as a 400. */
export function parseCreateRequest(body: unknown, streamDefault = true): CreateRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw badRequest('invalid_json', 'the request body must be a JSON object');
  }
  const raw = (body as { input?: unknown }).input;
  if (raw === undefined || raw === null) throw badRequest('input_required', 'input is required', 'input');
  const parsed = createResponseBody.safeParse(body);
  if (!parsed.success) throw rejection(parsed.error.issues);
  const b = parsed.data;

  const input = typeof b.input === 'string' ? [{ type: 'message' as const, role: 'user' as const, content: [{ type: 'input_text' as const, text: b.input }] }] : itemsOf(b.input);
  if (!hasSubstance(input)) throw badRequest('input_required', 'input must contain some text', 'input');
  const conversation = typeof b.conversation === 'string' ? b.conversation : (b.conversation?.id ?? null);
  if (conversation !== null && b.conversation_id !== undefined && b.conversation_id !== null && conversation !== b.conversation_id) {
    throw badRequest('conversation_mismatch', 'conversation and conversation_id name different conversations', 'conversation');
  }

  const format = b.text?.format;
  const toolSet = parseTools(b.tools, b.tool_choice, b.parallel_tool_calls);
  return {
    input,
    stream: b.stream ?? streamDefault,
    instructions: b.instructions ?? null,
    conversationId: b.conversation_id ?? conversation,
    projectId: b.project_id ?? null,
    previousResponseId: b.previous_response_id ?? null,
    temperature: b.temperature ?? null,
    topP: b.top_p ?? null,
    maxOutputTokens: b.max_output_tokens ?? null,
    metadata: b.metadata ?? {},
    responseFormat:
      format === undefined || format.type === 'text'
        ? undefined
        : format.type === 'json_object'
          ? { type: 'json_object' }
          : { type: 'json_schema', name: format.name, schema: format.schema, strict: format.strict ?? undefined, description: format.description },
    tools: toolSet.echo,
    toolChoice: b.tool_choice ?? 'auto',
    parallelToolCalls: toolSet.parallel,
    toolSet,
    includeRouting: b.stream_options?.include_routing === true,
    reasoningEffort: b.reasoning?.effort ?? null,
    store: b.store ?? true,
  };
}
