import { z } from 'zod';
import type { Tool } from '../tools/types.ts';
import type { Retriever } from './retrieve.ts';
import { type ProjectSources } from './sources.ts';

/**
 * `file_search`: the model searches the project's documents with its own
 * query. Made for each response that has a `project_id`, so it reads that
 * project's corpus only; the passages it returns join the response's
 * numbered sources, and the answer cites them like the prompt's.
 */

export interface FileSearchOptions {
  retriever: Retriever;
  projectId: string;
  sources: ProjectSources;
  /** Passages per call at most, and the tokens they may take together. */
  maxResults: number;
  budgetTokens: number;
  timeoutMs: number;
}

const input = z.object({
  query: z.string().trim().min(1).max(1000).describe('What to look for, in words likely to appear in the documents'),
  max_results: z.number().int().min(1).max(20).optional().describe('How many passages at most'),
});

export function createFileSearchTool(opts: FileSearchOptions): Tool<z.infer<typeof input>> {
  return {
    name: 'file_search',
    description:
      "Search the documents of the user's project. Returns numbered passages with their file and page; cite the ones you use by their number in brackets, e.g. [3].",
    input,
    timeoutMs: opts.timeoutMs,
    async run(args, context) {
      const limit = Math.min(args.max_results ?? opts.maxResults, opts.maxResults);
      const found = await opts.retriever.search(opts.projectId, args.query, { limit, budgetTokens: opts.budgetTokens }, context.signal);
      const numbered = opts.sources.add(found);
      return {
        result: {
          query: args.query,
          results: numbered.map((p) => ({ index: p.index, file: p.filename, page: p.page, section: p.heading, text: p.text })),
        },
      };
    },
  };
}
