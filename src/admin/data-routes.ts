import { Readable } from 'node:stream';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { KeyAuth } from '../auth/key-auth.ts';
import type { Db } from '../db/client.ts';
import { eraseOrganization, eraseUser, exportUser } from '../data/subject.ts';
import { organizations, users } from '../db/schema.ts';
import { badRequest, notFound } from '../http/api-error.ts';
import { errorResponses, uuidParam } from '../http/schemas.ts';
import { asc, eq } from 'drizzle-orm';

/**
 * A person's data on request (GDPR articles 15, 17, 20): export and erasure
 * of a user or a whole organisation. Both are POSTs so the audit trail
 * records who took whose data, and erasure needs `{"confirm": true}`: it
 * cannot be undone.
 */

const security = [{ adminToken: [] }];
const confirm = z.object({ confirm: z.boolean().optional() });
const erased = z.object({
  object: z.enum(['user.erased', 'organization.erased']),
  id: z.uuid(),
  conversations: z.number().int(),
  responses: z.number().int(),
  files: z.number().int(),
  api_keys: z.number().int(),
  users: z.number().int().optional(),
});

/** Fastify sends a stream as it is, unserialised; the 200 schema above documents what the stream holds. */
const streamed = (stream: Readable) => stream as unknown as Record<string, unknown>;

const mustConfirm = (body: { confirm?: boolean | undefined }) => {
  if (body.confirm !== true) throw badRequest('confirmation_required', 'erasure cannot be undone: send {"confirm": true}', 'confirm');
};

export const dataRoutes: FastifyPluginAsyncZod<{ db: Db; keyAuth: KeyAuth; now: () => number }> = async (app, opts) => {
  const { db, keyAuth } = opts;

  app.post(
    '/users/:id/export',
    {
      schema: {
        tags: ['admin'],
        summary: 'Everything stored about a user, as one JSON document: conversations with items, responses, files with content, keys (metadata), usage',
        security,
        params: z.object({ id: uuidParam }),
        response: { 200: z.record(z.string(), z.unknown()).describe('Streamed as it is read'), ...errorResponses(400, 401, 404) },
      },
    },
    async (req, reply) => {
      const pieces = exportUser(db, req.params.id, new Date(opts.now()));
      // The first piece proves the user exists, so a missing one is a plain 404 before anything is sent.
      const first = await pieces.next();
      const stream = Readable.from(
        (async function* () {
          if (!first.done) yield first.value;
          yield* pieces;
        })(),
      );
      return reply
        .type('application/json; charset=utf-8')
        .header('content-disposition', `attachment; filename="user-${req.params.id}.json"`)
        .send(streamed(stream));
    },
  );

  app.post(
    '/organizations/:id/export',
    {
      schema: {
        tags: ['admin'],
        summary: "Everything stored about an organisation's users, one user export after another",
        security,
        params: z.object({ id: uuidParam }),
        response: { 200: z.record(z.string(), z.unknown()).describe('Streamed as it is read'), ...errorResponses(400, 401, 404) },
      },
    },
    async (req, reply) => {
      const [org] = await db.select().from(organizations).where(eq(organizations.id, req.params.id));
      if (org === undefined) throw notFound('organization_not_found', `organization ${req.params.id} not found`);
      const members = await db.select({ id: users.id }).from(users).where(eq(users.organizationId, org.id)).orderBy(asc(users.id));
      const now = new Date(opts.now());
      const stream = Readable.from(
        (async function* () {
          yield `{"object":"organization_export","exported_at":${JSON.stringify(now.toISOString())},"organization":${JSON.stringify({ id: org.id, name: org.name, plan: org.plan, created_at: org.createdAt })},"users":[`;
          for (const [i, m] of members.entries()) {
            if (i > 0) yield ',';
            yield* exportUser(db, m.id, now);
          }
          yield ']}';
        })(),
      );
      return reply
        .type('application/json; charset=utf-8')
        .header('content-disposition', `attachment; filename="organization-${org.id}.json"`)
        .send(streamed(stream));
    },
  );

  app.post(
    '/users/:id/erase',
    {
      schema: {
        tags: ['admin'],
        summary: "Erase a user's content, files, keys and account; anonymous usage totals stay. Needs {\"confirm\": true}",
        security,
        params: z.object({ id: uuidParam }),
        body: confirm,
        response: { 200: erased, ...errorResponses(400, 401, 404, 409) },
      },
    },
    async (req) => {
      mustConfirm(req.body);
      const [user] = await db.select({ organizationId: users.organizationId }).from(users).where(eq(users.id, req.params.id));
      const gone = await eraseUser(db, req.params.id);
      // Its keys are gone from the database; this instance forgets them at once, others within the cache's TTL.
      if (user !== undefined) keyAuth.forgetOrganization(user.organizationId);
      req.log.warn({ user_id: req.params.id, ...gone }, 'user erased');
      return { object: 'user.erased' as const, id: req.params.id, ...gone };
    },
  );

  app.post(
    '/organizations/:id/erase',
    {
      schema: {
        tags: ['admin'],
        summary: 'Erase an organisation with all its users and their data; its anonymous usage totals stay. Needs {"confirm": true}',
        security,
        params: z.object({ id: uuidParam }),
        body: confirm,
        response: { 200: erased, ...errorResponses(400, 401, 404, 409) },
      },
    },
    async (req) => {
      mustConfirm(req.body);
      const gone = await eraseOrganization(db, req.params.id);
      keyAuth.forgetOrganization(req.params.id);
      req.log.warn({ organization_id: req.params.id, ...gone }, 'organisation erased');
      return { object: 'organization.erased' as const, id: req.params.id, ...gone };
    },
  );
};
