import { and, asc, desc, eq, gt, lt, sql } from 'drizzle-orm';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf } from '../auth/hook.ts';
import type { Db } from '../db/client.ts';
import { conversationItems, responses } from '../db/schema.ts';
import { ApiError } from '../http/api-error.ts';
import { errorResponses } from '../http/schemas.ts';
import { storableString } from '../http/text.ts';
import type { Cancels } from './cancels.ts';
import type { ResponseObject } from './object.ts';
import { responseObjectSchema } from './schemas.ts';
import { findOwnedResponse } from './store.ts';

/**
 * The routes around a stored response, in OpenAI's shapes so the official
 * SDK's methods work unchanged: delete, its input items, cancel. Another
 * user's response is the same 404 as a missing one; so is an id of another
 * shape than ours.
 */

export interface ItemRouteOptions {
  db: Db;
  cancels: Cancels;
  /** How long a cancel waits for the response to end and be stored before it answers with what it has. */
  cancelWaitMs: number;
}

const security = [{ apiKey: [] }];
const idParam = z.object({ id: storableString().min(1).max(128) });

const inputItem = z
  .object({
    id: z.string(),
    type: z.enum(['message', 'function_call', 'function_call_output']),
    status: z.literal('completed'),
    role: z.string().optional(),
    content: z
      .array(z.object({ type: z.string(), text: z.string().optional(), file_id: z.string().optional(), filename: z.string().optional() }))
      .optional()
      .describe('Text parts ({type, text}) and files ({type: "input_file", file_id, filename})'),
    call_id: z.string().optional(),
    name: z.string().optional(),
    arguments: z.string().optional(),
    output: z.string().optional(),
  })
  .meta({ id: 'InputItem' });

const inputItemList = z.object({
  object: z.literal('list'),
  data: z.array(inputItem),
  first_id: z.string().nullable(),
  last_id: z.string().nullable(),
  has_more: z.boolean(),
});

interface ItemRow {
  id: number;
  itemId: string | null;
  position: number;
  role: string;
  type: string;
  content: unknown;
}

/** Items stored before item ids existed are named by their row. */
const idOf = (row: ItemRow) => row.itemId ?? `item_${row.id}`;

function itemOf(row: ItemRow): z.infer<typeof inputItem> {
  const id = idOf(row);
  if (row.type === 'function_call') {
    const c = row.content as { call_id: string; name: string; arguments: string };
    return { id, type: 'function_call', status: 'completed', call_id: c.call_id, name: c.name, arguments: c.arguments };
  }
  if (row.type === 'function_call_output') {
    const c = row.content as { call_id: string; output: string };
    return { id, type: 'function_call_output', status: 'completed', call_id: c.call_id, output: c.output };
  }
  const parts = row.content as { type: string; text?: string; file_id?: string; filename?: string }[];
  const content = parts.map((p) => (p.type === 'input_file' ? { type: p.type, file_id: p.file_id, filename: p.filename } : { type: p.type, text: p.text ?? '' }));
  return { id, type: 'message', status: 'completed', role: row.role, content };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const responseItemRoutes: FastifyPluginAsyncZod<ItemRouteOptions> = async (app, opts) => {
  const { db, cancels } = opts;

  app.delete(
    '/responses/:id',
    {
      schema: {
        tags: ['responses'],
        summary: 'Delete a stored response and its items from its conversation (its owner only)',
        security,
        params: idParam,
        response: {
          200: z.object({ id: z.string(), object: z.literal('response'), deleted: z.literal(true) }),
          ...errorResponses(401, 404, 409),
        },
      },
    },
    async (req) => {
      const { userId } = principalOf(req);
      const { id } = req.params;
      const found = await findOwnedResponse(db, id, userId);
      if (found.body.status === 'in_progress') {
        throw new ApiError(409, 'invalid_request_error', 'response_in_progress', 'the response is still being produced; cancel it first');
      }
      await db.transaction(async (tx) => {
        await tx.delete(conversationItems).where(eq(conversationItems.responseId, id));
        await tx.delete(responses).where(and(eq(responses.id, id), eq(responses.userId, userId)));
      });
      return { id, object: 'response' as const, deleted: true as const };
    },
  );

  app.get(
    '/responses/:id/input_items',
    {
      schema: {
        tags: ['responses'],
        summary: 'The input items of a stored response, paginated (its owner only)',
        security,
        params: idParam,
        querystring: z.object({
          limit: z.coerce.number().int().min(1).max(100).default(20).describe('Page size, 1 to 100'),
          order: z.enum(['asc', 'desc']).default('desc').describe('desc: the last input item first'),
          after: storableString().max(128).optional().describe('Id of the last item of the previous page'),
        }),
        response: { 200: inputItemList, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      const { userId } = principalOf(req);
      const { id } = req.params;
      const { limit, order, after } = req.query;
      await findOwnedResponse(db, id, userId);
      const ofResponse = and(eq(conversationItems.responseId, id), eq(conversationItems.origin, 'input'));
      let cursor;
      if (after !== undefined) {
        const rowId = /^item_(\d{1,18})$/.exec(after)?.[1];
        const [anchor] = await db
          .select({ position: conversationItems.position })
          .from(conversationItems)
          .where(and(ofResponse, rowId === undefined ? eq(conversationItems.itemId, after) : eq(conversationItems.id, Number(rowId))));
        if (anchor === undefined) throw new ApiError(400, 'invalid_request_error', 'invalid_after', `after: ${after} is not an input item of this response`, 'after');
        cursor = order === 'asc' ? gt(conversationItems.position, anchor.position) : lt(conversationItems.position, anchor.position);
      }
      const rows = await db
        .select({
          id: conversationItems.id,
          itemId: conversationItems.itemId,
          position: conversationItems.position,
          role: conversationItems.role,
          type: conversationItems.type,
          content: conversationItems.content,
        })
        .from(conversationItems)
        .where(and(ofResponse, cursor))
        .orderBy(order === 'asc' ? asc(conversationItems.position) : desc(conversationItems.position))
        .limit(limit + 1);
      const data = rows.slice(0, limit).map(itemOf);
      return { object: 'list' as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: rows.length > limit };
    },
  );

  app.post(
    '/responses/:id/cancel',
    {
      schema: {
        tags: ['responses'],
        summary: 'Cancel a response in progress: it ends incomplete (reason cancelled) with what it made; a finished one is returned as it is',
        security,
        params: idParam,
        response: { 200: responseObjectSchema, ...errorResponses(401, 404) },
      },
    },
    async (req): Promise<ResponseObject> => {
      const { userId } = principalOf(req);
      const { id } = req.params;
      const found = await findOwnedResponse(db, id, userId);
      if (found.body.status !== 'in_progress') return found.body;
      const local = cancels.cancelHere(id);
      if (!local) {
        // Running on another instance (or about to be recovered): its instance reads the request from the row.
        await db.execute(sql`
          update responses set pending = coalesce(pending, '{}'::jsonb) || '{"cancel": true}'::jsonb
          where id = ${id} and user_id = ${userId} and status = 'in_progress'`);
      }
      const deadline = Date.now() + opts.cancelWaitMs;
      for (let wait = 10; ; wait = Math.min(200, wait * 2)) {
        const now = await findOwnedResponse(db, id, userId);
        if (now.body.status !== 'in_progress' || Date.now() >= deadline) return now.body;
        await sleep(wait);
      }
    },
  );
};
