import type { Principal } from '../auth/key-auth.ts';
import { badRequest, forbidden } from '../http/api-error.ts';
import type { ToolChoice, ToolSpec } from '../providers/types.ts';
import type { BuiltinTool, Toolbox } from '../tools/registry.ts';
import type { FunctionTool, ToolsRequest } from './tools-request.ts';

/**
 * The tools one response may use: the built-ins the request, the plan and
 * the deployment allow, and the client's own functions. Empty when the
 * request said `tool_choice: "none"`.
 */
export interface ResponseTools {
  builtins: BuiltinTool[];
  functions: FunctionTool[];
  /** For the first model call; later calls use `auto`, or the loop could never end. */
  firstChoice: ToolChoice | undefined;
  parallel: boolean;
}

export const hasTools = (t: ResponseTools) => t.builtins.length + t.functions.length > 0;

/** The same request offered nothing (its model cannot call tools). */
export const noTools = (t: ResponseTools): ResponseTools => ({ ...t, builtins: [], functions: [], firstChoice: undefined });

/** What the model is shown. */
export function specsOf(t: ResponseTools): ToolSpec[] {
  return [
    ...t.builtins.map((b) => ({ name: b.tool.name, description: b.tool.description, parameters: b.parameters })),
    ...t.functions.map((f) => ({ name: f.name, description: f.description, parameters: f.parameters, strict: f.strict })),
  ];
}

/**
 * Decides the tools of a request; `extra` are built-ins made for this request
 * alone (file_search over its project). Tools the client asked for by name must be
 * available (403 when the plan leaves them out, 400 when this server has them
 * switched off); the default catalogue quietly shrinks to what is allowed.
 */
export function toolsFor(request: ToolsRequest, principal: Principal, toolbox: Toolbox, extra: BuiltinTool[] = []): ResponseTools {
  const features = principal.policy.features;
  if (request.asked && !features.tools) throw forbidden('plan_feature_disabled', `the ${principal.policy.plan} plan does not include tools`);
  const none: ResponseTools = { builtins: [], functions: [], firstChoice: undefined, parallel: request.parallel };
  if (request.choice === 'none' || !features.tools) return none;

  let builtins: BuiltinTool[];
  if (request.builtins === null) {
    builtins = [...toolbox.enabled().filter((b) => !b.paid || features.advanced_web_search), ...extra];
  } else {
    builtins = request.builtins.map((name) => {
      const builtin = extra.find((b) => b.tool.name === name) ?? toolbox.get(name);
      if (builtin === undefined && name === 'file_search') {
        throw badRequest('file_search_needs_project', "file_search searches a project's documents: send project_id with it", 'tools');
      }
      if (builtin === undefined) throw badRequest('unsupported_tool', `the ${name} tool is switched off on this server`, 'tools');
      if (builtin.paid && !features.advanced_web_search) {
        throw forbidden('plan_feature_disabled', `the ${principal.policy.plan} plan does not include advanced web search`);
      }
      return builtin;
    });
  }
  const choice = request.choice;
  if (typeof choice === 'object' && !builtins.some((b) => b.tool.name === choice.name) && !request.functions.some((f) => f.name === choice.name)) {
    throw badRequest('invalid_tool_choice', `tool_choice names ${choice.name}, which this request cannot use`, 'tool_choice');
  }
  return { builtins, functions: request.functions, firstChoice: choice === 'auto' ? undefined : choice, parallel: request.parallel };
}
