import { z } from 'zod';

/** The API's error envelope (`{ error: { type, code, message, param }, detail }`), for the OpenAPI document. */
export const errorBody = z
  .object({
    error: z.object({
      type: z.string(),
      code: z.string(),
      message: z.string(),
      param: z.string().nullable(),
    }),
    detail: z.string(),
  })
  .meta({ id: 'Error' });

/** Response schemas of the given error statuses, all in the envelope. */
export function errorResponses<const S extends number>(...statuses: S[]): Record<S, typeof errorBody> {
  return Object.fromEntries(statuses.map((s) => [s, errorBody])) as Record<S, typeof errorBody>;
}

export const uuidParam = z.uuid({ error: 'must be a UUID' });

export const pageQuery = {
  limit: z.coerce.number().int().min(1).max(1000).default(100).describe('Page size, 1 to 1000'),
  after: uuidParam.optional().describe('Id of the last item of the previous page'),
};

export function listOf<T extends z.ZodType>(item: T) {
  return z.object({ object: z.literal('list'), data: z.array(item), has_more: z.boolean() });
}
