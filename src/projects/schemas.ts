import { z } from 'zod';

/** A file of a project as both APIs show it, with the state of its retrieval index. */
export const projectFileSchema = z
  .object({
    object: z.literal('project.file'),
    project_id: z.uuid(),
    file_id: z.uuid(),
    filename: z.string(),
    bytes: z.number().int(),
    added_by: z.uuid().nullable().describe('The member who added it; null once that user was erased, or when an operator added it'),
    created_at: z.number().int().describe('Unix seconds'),
    index: z.object({
      status: z.enum(['pending', 'indexed', 'error']).describe('pending: waiting for its text or being indexed; indexed: retrievable; error: see details'),
      details: z.string().nullable(),
      language: z.string().nullable().describe('The text-search configuration chosen for its language (german, simple…)'),
      chunks: z.number().int(),
      embedding_model: z.string().nullable().describe('The embeddings model of its chunks; null when indexed for full-text search only'),
      indexed_at: z.number().int().nullable().describe('Unix seconds'),
    }),
  })
  .meta({ id: 'ProjectFile' });

export const projectFileList = z.object({
  object: z.literal('list'),
  data: z.array(projectFileSchema),
  first_id: z.string().nullable(),
  last_id: z.string().nullable(),
  has_more: z.boolean(),
});

export const projectFileDeleted = z.object({ object: z.literal('project.file'), project_id: z.uuid(), file_id: z.string(), deleted: z.literal(true) });

export const projectFilePage = {
  limit: z.coerce.number().int().min(1).max(1000).default(100).describe('Page size, 1 to 1000'),
  after: z.string().max(128).optional().describe('file_id of the last file of the previous page'),
};

/** The list body both APIs answer with. */
export function listBody<T extends { file_id: string }>(page: { data: T[]; hasMore: boolean }) {
  return { object: 'list' as const, data: page.data, first_id: page.data[0]?.file_id ?? null, last_id: page.data.at(-1)?.file_id ?? null, has_more: page.hasMore };
}
