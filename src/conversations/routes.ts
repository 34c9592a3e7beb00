import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf } from '../auth/hook.ts';
import type { Db } from '../db/client.ts';
import { ApiError } from '../http/api-error.ts';
import { errorResponses } from '../http/schemas.ts';
import { storableString } from '../http/text.ts';
import { resolveItems } from '../responses/context.ts';
import type { ResolvedItem } from '../responses/input-items.ts';
import { itemsOf } from '../responses/request.ts';
import { itemListSchema, itemSchema } from './items.ts';
import { addItems, conversationOf, createConversation, deleteConversation, deleteItem, findItem, listConversations, listItems, updateConversation } from './manage.ts';
import { findOwnedConversation } from './store.ts';

/**
 * The conversations API in OpenAI's shapes, so the official SDK's
 * `conversations.*` methods work unchanged, and a list of one's
 * conversations (ours: OpenAI has none). Another user's conversation, and
 * an id of another shape than ours, is the same 404 as a missing one.
 */

const security = [{ apiKey: [] }];
/** OpenAI takes at most 20 items per call. */
const MAX_ITEMS = 20;

const metadataField = z
  .record(storableString().max(64), storableString().max(512))
  .refine((m) => Object.keys(m).length <= 16, { error: 'at most 16 pairs' })
  .nullish();
const titleField = storableString().max(256).nullish().describe('eugpt: the title shown in conversation lists');
const itemsField = z.array(z.unknown()).max(MAX_ITEMS);

const conversationSchema = z
  .object({
    id: z.string(),
    object: z.literal('conversation'),
    created_at: z.number().int().describe('Unix seconds'),
    metadata: z.record(z.string(), z.string()),
    title: z.string().nullable().describe('eugpt: the first words of the first question, or the title set by update'),
    updated_at: z.number().int().describe('eugpt: Unix seconds of the last item added'),
  })
  .meta({ id: 'Conversation' });

const idParam = z.object({ id: storableString().min(1).max(128) });
const itemParams = z.object({ id: storableString().min(1).max(128), item_id: storableString().min(1).max(128) });

/**
 * Items in OpenAI's input item shapes, checked as a response's input is;
 * a problem is named after `items`, the field the client sent.
 */
async function parseItems(db: Db, userId: string, raw: unknown[]): Promise<ResolvedItem[]> {
  let items;
  try {
    items = itemsOf(raw);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    const rename = (s: string) => s.replace(/^input\b/, 'items').replaceAll(/\binput\[/g, 'items[');
    throw new ApiError(err.status, err.type, err.code, rename(err.message), err.param === null ? 'items' : rename(err.param));
  }
  return resolveItems(db, userId, items);
}

export const conversationRoutes: FastifyPluginAsyncZod<{ db: Db }> = async (app, { db }) => {
  app.post(
    '/conversations',
    {
      schema: {
        tags: ['conversations'],
        summary: 'Create a conversation, with up to 20 first items',
        security,
        body: z.object({ items: itemsField.nullish(), metadata: metadataField, title: titleField }).nullish(),
        response: { 200: conversationSchema, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      const principal = principalOf(req);
      const body = req.body ?? {};
      const items = await parseItems(db, principal.userId, body.items ?? []);
      const row = await createConversation(db, principal, { metadata: body.metadata ?? {}, title: body.title ?? null }, items);
      return conversationOf(row);
    },
  );

  app.get(
    '/conversations',
    {
      schema: {
        tags: ['conversations'],
        summary: 'eugpt: list your conversations, most recently active first',
        security,
        querystring: z.object({
          limit: z.coerce.number().int().min(1).max(100).default(20).describe('Page size, 1 to 100'),
          after: storableString().max(128).optional().describe('Id of the last conversation of the previous page'),
          include_hidden: z
            .enum(['true', 'false'])
            .default('false')
            .transform((v) => v === 'true')
            .describe('Also list the conversations made for stateless requests'),
        }),
        response: {
          200: z.object({ object: z.literal('list'), data: z.array(conversationSchema), first_id: z.string().nullable(), last_id: z.string().nullable(), has_more: z.boolean() }),
          ...errorResponses(400, 401),
        },
      },
    },
    async (req) => {
      const { limit, after, include_hidden } = req.query;
      return listConversations(db, principalOf(req).userId, { limit, after, includeHidden: include_hidden });
    },
  );

  app.get(
    '/conversations/:id',
    {
      schema: { tags: ['conversations'], summary: 'Retrieve a conversation', security, params: idParam, response: { 200: conversationSchema, ...errorResponses(401, 404) } },
    },
    async (req) => conversationOf(await findOwnedConversation(db, req.params.id, principalOf(req).userId)),
  );

  app.post(
    '/conversations/:id',
    {
      schema: {
        tags: ['conversations'],
        summary: 'Update a conversation: its metadata (replaced whole) and, as an eugpt extension, its title',
        security,
        params: idParam,
        body: z.object({ metadata: metadataField, title: titleField }),
        response: { 200: conversationSchema, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => conversationOf(await updateConversation(db, req.params.id, principalOf(req).userId, req.body)),
  );

  app.delete(
    '/conversations/:id',
    {
      schema: {
        tags: ['conversations'],
        summary: "Delete a conversation, its items and its responses' content (their usage stays counted)",
        security,
        params: idParam,
        response: {
          200: z.object({ id: z.string(), object: z.literal('conversation.deleted'), deleted: z.literal(true) }),
          ...errorResponses(401, 404, 409),
        },
      },
    },
    async (req) => {
      await deleteConversation(db, req.params.id, principalOf(req).userId);
      return { id: req.params.id, object: 'conversation.deleted' as const, deleted: true as const };
    },
  );

  app.get(
    '/conversations/:id/items',
    {
      schema: {
        tags: ['conversations'],
        summary: "A conversation's items, paginated (its instructions are not an item)",
        security,
        params: idParam,
        querystring: z.object({
          limit: z.coerce.number().int().min(1).max(100).default(20).describe('Page size, 1 to 100'),
          order: z.enum(['asc', 'desc']).default('desc').describe('desc: the newest item first'),
          after: storableString().max(128).optional().describe('Id of the last item of the previous page'),
        }),
        response: { 200: itemListSchema, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      const conversation = await findOwnedConversation(db, req.params.id, principalOf(req).userId);
      return listItems(db, conversation.id, req.query);
    },
  );

  app.post(
    '/conversations/:id/items',
    {
      schema: {
        tags: ['conversations'],
        summary: 'Add up to 20 items at the end of a conversation',
        security,
        params: idParam,
        body: z.object({ items: itemsField.min(1) }),
        response: { 200: itemListSchema, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      const { userId } = principalOf(req);
      const conversation = await findOwnedConversation(db, req.params.id, userId);
      const items = await parseItems(db, userId, req.body.items);
      const data = await addItems(db, userId, conversation.id, items);
      return { object: 'list' as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: false };
    },
  );

  app.get(
    '/conversations/:id/items/:item_id',
    {
      schema: { tags: ['conversations'], summary: 'One item of a conversation', security, params: itemParams, response: { 200: itemSchema, ...errorResponses(401, 404) } },
    },
    async (req) => {
      const conversation = await findOwnedConversation(db, req.params.id, principalOf(req).userId);
      return findItem(db, conversation.id, req.params.item_id);
    },
  );

  app.delete(
    '/conversations/:id/items/:item_id',
    {
      schema: {
        tags: ['conversations'],
        summary: 'Delete one item of a conversation; answers with the conversation',
        security,
        params: itemParams,
        response: { 200: conversationSchema, ...errorResponses(401, 404) },
      },
    },
    async (req) => {
      const { userId } = principalOf(req);
      const conversation = await findOwnedConversation(db, req.params.id, userId);
      await deleteItem(db, conversation.id, req.params.item_id);
      return conversationOf(conversation);
    },
  );
};
