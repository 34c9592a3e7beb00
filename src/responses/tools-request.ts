import { z } from 'zod';
import { badRequest } from '../http/api-error.ts';
import { storableJson, storableString } from '../http/text.ts';
import { TOOL_NAMES, type ToolName } from '../tools/types.ts';

/**
 * The `tools`, `tool_choice` and `parallel_tool_calls` of a request
 * (docs/tools.md). Without `tools`, every built-in tool the deployment and the
 * plan allow is offered, as the product promises; a request that names tools
 * is offered just those. Function tools are the client's own: when the model calls one, the
 * response ends with the call for the client to run.
 */

export interface FunctionTool {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
  strict: boolean | undefined;
}

/** `required`: some tool at the first step; a name: that tool at the first step. */
export type RequestToolChoice = 'auto' | 'none' | 'required' | { name: string };

export interface ToolsRequest {
  /** The built-ins offered: null means every one enabled. */
  builtins: ToolName[] | null;
  functions: FunctionTool[];
  choice: RequestToolChoice;
  parallel: boolean;
  /** What the response echoes in `tools`. */
  echo: unknown[];
  /** The client named tools or asked for one: the plan must include tools. */
  asked: boolean;
}

/** Names OpenAI's clients use for a hosted search, read as ours. */
const ALIASES: Record<string, ToolName> = { web_search_preview: 'web_search', web_search_2025_08_26: 'web_search' };

const builtinOf = (type: string): ToolName | undefined =>
  (TOOL_NAMES as readonly string[]).includes(type) ? (type as ToolName) : ALIASES[type];

const functionName = storableString().regex(/^[A-Za-z0-9_-]{1,64}$/, { error: 'must be 1-64 letters, digits, underscores or dashes' });

const functionBody = z.object({
  name: functionName,
  description: storableString().max(4096).nullish(),
  parameters: storableJson(z.record(z.string(), z.unknown())).nullish(),
  strict: z.boolean().nullish(),
});

/** The Chat Completions shape `{type, function: {name, …}}`; the Responses shape is `functionBody` itself. */
const nestedFunction = z.object({ function: functionBody }).transform((t) => t.function);

export const toolsField = storableJson(z.array(z.object({ type: storableString() }).loose()).max(128)).nullish();
export const toolChoiceField = storableJson(z.unknown()).optional();

const EMPTY_PARAMETERS = { type: 'object', properties: {} };

export function parseTools(rawTools: { type: string }[] | null | undefined, rawChoice: unknown, parallel: boolean | null | undefined): ToolsRequest {
  const builtins: ToolName[] = [];
  const functions: FunctionTool[] = [];
  (rawTools ?? []).forEach((tool, i) => {
    const param = `tools[${i}]`;
    const builtin = builtinOf(tool.type);
    if (builtin !== undefined) {
      if (!builtins.includes(builtin)) builtins.push(builtin);
      return;
    }
    if (tool.type !== 'function') {
      throw badRequest('unsupported_tool', `${param}: tool type "${tool.type}" is not supported; use function tools or the built-ins ${TOOL_NAMES.join(', ')}`, `${param}.type`);
    }
    const parsed = 'function' in tool ? nestedFunction.safeParse(tool) : functionBody.safeParse(tool);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const where = [param, ...issue.path.map(String)].join('.');
      throw badRequest('invalid_tools', `${where}: ${issue.message}`, where);
    }
    const f = parsed.data;
    if (builtinOf(f.name) !== undefined || functions.some((g) => g.name === f.name)) {
      throw badRequest('invalid_tools', `${param}: the tool name "${f.name}" is used twice or is a built-in tool's`, `${param}.name`);
    }
    functions.push({ name: f.name, description: f.description ?? '', parameters: f.parameters ?? EMPTY_PARAMETERS, strict: f.strict ?? undefined });
  });
  const choice = parseChoice(rawChoice, builtins, functions);
  return {
    // A request that names tools gets just those: an agent framework that sent its own functions must not
    // receive calls of tools it does not know.
    builtins: rawTools === null || rawTools === undefined || rawTools.length === 0 ? null : builtins,
    functions,
    choice,
    parallel: parallel ?? true,
    echo: [...builtins.map((type) => ({ type })), ...functions.map((f) => ({ type: 'function', ...f, strict: f.strict ?? null }))],
    asked: (rawTools?.length ?? 0) > 0 || (choice !== 'auto' && choice !== 'none'),
  };
}

function parseChoice(raw: unknown, builtins: ToolName[], functions: FunctionTool[]): RequestToolChoice {
  if (raw === undefined || raw === null) return 'auto';
  if (raw === 'auto' || raw === 'none' || raw === 'required') return raw;
  const bad = () => badRequest('invalid_tool_choice', 'tool_choice is "auto", "none", "required", {type:"function", name} or {type:<built-in tool>}', 'tool_choice');
  if (typeof raw !== 'object' || Array.isArray(raw)) throw bad();
  const c = raw as { type?: unknown; name?: unknown; function?: { name?: unknown } };
  const type = typeof c.type === 'string' ? c.type : undefined;
  const builtin = type === undefined ? undefined : builtinOf(type);
  if (builtin !== undefined) return { name: builtin };
  const name = typeof c.name === 'string' ? c.name : typeof c.function?.name === 'string' ? c.function.name : undefined;
  if (type !== 'function' || name === undefined) throw bad();
  const known = functions.some((f) => f.name === name) || (builtinOf(name) !== undefined && (builtins.length === 0 || builtins.includes(builtinOf(name)!)));
  if (!known) throw badRequest('invalid_tool_choice', `tool_choice names "${name}", which is not among the request's tools`, 'tool_choice.name');
  return { name: builtinOf(name) ?? name };
}
