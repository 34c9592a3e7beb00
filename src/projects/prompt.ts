import type { ModelConfig } from '../router/catalog.ts';
import type { PreparedContext } from '../responses/context.ts';
import { parametersOf } from '../tools/run.ts';
import type { BuiltinTool } from '../tools/registry.ts';
import { countMessageTokens } from '../tokens.ts';
import type { ResolvedRetrievalConfig } from './config.ts';
import { createFileSearchTool } from './file-search.ts';
import type { Retriever } from './retrieve.ts';
import { passagesMessage, ProjectSources } from './sources.ts';

/** What /v1/responses needs of retrieval: the retriever and its settings. */
export interface ProjectsRuntime {
  retriever: Retriever;
  config: ResolvedRetrievalConfig;
}

/** The tokens a response's passages may take: a share of the smallest window it may be sent to, and never past the cap. */
export function passageBudget(config: ResolvedRetrievalConfig, models: ModelConfig[]): number {
  const smallest = Math.min(...models.map((m) => m.context_window));
  return Math.max(0, Math.min(config.max_context_tokens, Math.floor(smallest * config.context_share)));
}

/** The file_search tool of one response, over its project. */
export function fileSearchBuiltin(rt: ProjectsRuntime, projectId: string, sources: ProjectSources, budgetTokens: number): BuiltinTool {
  const tool = createFileSearchTool({ retriever: rt.retriever, projectId, sources, maxResults: rt.config.top_k, budgetTokens, timeoutMs: 30_000 });
  return { tool: tool, parameters: parametersOf(tool), paid: false };
}

/**
 * Retrieves the passages of the project most related to the request's own
 * words and puts them into its prompt as a system message after the
 * instructions; the prepared token counts grow with it, so history and the
 * router's window checks account for them.
 */
export async function addProjectPassages(
  rt: ProjectsRuntime,
  prepared: PreparedContext,
  projectId: string,
  sources: ProjectSources,
  budgetTokens: number,
  withSearch: boolean,
): Promise<void> {
  const found = await rt.retriever.search(projectId, prepared.query, { limit: rt.config.top_k, budgetTokens });
  const message = { role: 'system' as const, content: passagesMessage(sources.add(found), withSearch) };
  prepared.head.push(message);
  prepared.fixedTokens += countMessageTokens([message]);
}

export { ProjectSources };
