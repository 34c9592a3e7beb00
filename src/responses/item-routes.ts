import { and, asc, desc, eq, gt, lt, sql } from 'drizzle-orm';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { dropSummaryFrom } from '../conversations/summary.ts';
import { principalOf } from '../auth/hook.ts';
import { byItemId, itemColumns, itemListSchema, pageOf } from '../conversations/items.ts';
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
        const gone = await tx
          .delete(conversationItems)
          .where(eq(conversationItems.responseId, id))
          .returning({ conversationId: conversationItems.conversationId, position: conversationItems.position });
        await tx.delete(responses).where(and(eq(responses.id, id), eq(responses.userId, userId)));
        // A summary that covers the deleted turns would keep what they said.
        const first = gone.reduce((min, g) => Math.min(min, g.position), Infinity);
        if (gone[0] !== undefined) await dropSummaryFrom(tx, gone[0].conversationId, first);
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
        response: { 200: itemListSchema, ...errorResponses(400, 401, 404) },
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
        const [anchor] = await db
          .select({ position: conversationItems.position })
          .from(conversationItems)
          .where(and(ofResponse, byItemId(after)));
        if (anchor === undefined) throw new ApiError(400, 'invalid_request_error', 'invalid_after', `after: ${after} is not an input item of this response`, 'after');
        cursor = order === 'asc' ? gt(conversationItems.position, anchor.position) : lt(conversationItems.position, anchor.position);
      }
      const rows = await db
        .select(itemColumns)
        .from(conversationItems)
        .where(and(ofResponse, cursor))
        .orderBy(order === 'asc' ? asc(conversationItems.position) : desc(conversationItems.position))
        .limit(limit + 1);
      return pageOf(rows, limit);
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
