import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { createApiKey, listApiKeys, revokeApiKey } from '../auth/key-admin.ts';
import type { KeyAuth } from '../auth/key-auth.ts';
import type { Db } from '../db/client.ts';
import { errorResponses, listOf, pageQuery, uuidParam } from '../http/schemas.ts';
import { storableString } from '../http/text.ts';
import { getUser } from '../tenancy/organizations.ts';
import { apiKeyView, createdApiKeyView, showApiKey } from './views.ts';

const security = [{ adminToken: [] }];

export const keyRoutes: FastifyPluginAsyncZod<{ db: Db; keyAuth: KeyAuth }> = async (app, { db, keyAuth }) => {
  app.post(
    '/api-keys',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create an API key for a user (the secret is returned once)',
        security,
        body: z.object({ user_id: uuidParam, label: storableString().trim().min(1, { error: 'must not be blank' }).max(100) }),
        response: { 201: createdApiKeyView, ...errorResponses(400, 401, 404) },
      },
    },
    async (req, reply) => {
      const { row, key } = await createApiKey(db, { userId: req.body.user_id, label: req.body.label });
      req.log.info({ key_id: row.id, user_id: row.userId }, 'API key created');
      return reply.status(201).header('cache-control', 'no-store').send({ ...showApiKey(row), key });
    },
  );

  app.get(
    '/api-keys',
    {
      schema: {
        tags: ['admin'],
        summary: "List a user's API keys (never the secrets)",
        security,
        querystring: z.object({ user_id: uuidParam, ...pageQuery }),
        response: { 200: listOf(apiKeyView), ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      await getUser(db, req.query.user_id);
      const page = await listApiKeys(db, req.query.user_id, req.query);
      return { object: 'list' as const, data: page.data.map(showApiKey), has_more: page.hasMore };
    },
  );

  app.post(
    '/api-keys/:id/revoke',
    {
      schema: {
        tags: ['admin'],
        summary: 'Revoke an API key; every instance refuses it within seconds',
        security,
        params: z.object({ id: uuidParam }),
        response: { 200: apiKeyView, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      const row = await revokeApiKey(db, req.params.id);
      keyAuth.forget([row.id]);
      req.log.info({ key_id: row.id }, 'API key revoked');
      return showApiKey(row);
    },
  );
};
