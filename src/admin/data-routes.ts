import { Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { KeyAuth } from '../auth/key-auth.ts';
import type { Db } from '../db/client.ts';
import type { BlobStores } from '../files/blobs.ts';
import { eraseOrganization, eraseUser, exportOrganization, exportUser } from '../data/subject.ts';
import { badRequest } from '../http/api-error.ts';
import { errorResponses, uuidParam } from '../http/schemas.ts';

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

const mustConfirm = (body: { confirm?: boolean | undefined }) => {
  if (body.confirm !== true) throw badRequest('confirmation_required', 'erasure cannot be undone: send {"confirm": true}', 'confirm');
};

export const dataRoutes: FastifyPluginAsyncZod<{ db: Db; keyAuth: KeyAuth; now: () => number; blobs: BlobStores }> = async (app, opts) => {
  const { db, keyAuth, blobs } = opts;

  const exportSchema = (summary: string) => ({
    tags: ['admin'],
    summary,
    security,
    params: z.object({ id: uuidParam }),
    response: { 200: z.record(z.string(), z.unknown()).describe('Streamed as it is read'), ...errorResponses(400, 401, 404) },
  });

  /** Sends JSON text pieces as they come; the first is awaited, so a missing subject is still a plain 404. */
  const sendPieces = async (reply: FastifyReply, filename: string, pieces: AsyncGenerator<string>) => {
    const first = await pieces.next();
    const stream = Readable.from(
      (async function* () {
        if (!first.done) yield first.value;
        yield* pieces;
      })(),
    );
    // Fastify sends a stream as it is, unserialised; the 200 schema documents what it holds.
    return reply
      .type('application/json; charset=utf-8')
      .header('content-disposition', `attachment; filename="${filename}"`)
      .send(stream);
  };

  app.post(
    '/users/:id/export',
    { schema: exportSchema('Everything stored about a user, as one JSON document: conversations with items, responses, files with content, keys (metadata), usage') },
    async (req, reply) => sendPieces(reply, `user-${req.params.id}.json`, exportUser(db, blobs, req.params.id, new Date(opts.now()))),
  );

  app.post(
    '/organizations/:id/export',
    { schema: exportSchema("Everything stored about an organisation's users, one user export after another") },
    async (req, reply) => sendPieces(reply, `organization-${req.params.id}.json`, exportOrganization(db, blobs, req.params.id, new Date(opts.now()))),
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
      const { erased: gone, organizationId } = await eraseUser(db, req.params.id, { stores: blobs, log: req.log });
      // Its keys are gone from the database; this instance forgets them at once, others within the cache's TTL.
      keyAuth.forgetOrganization(organizationId);
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
      const gone = await eraseOrganization(db, req.params.id, { stores: blobs, log: req.log });
      keyAuth.forgetOrganization(req.params.id);
      req.log.warn({ organization_id: req.params.id, ...gone }, 'organisation erased');
      return { object: 'organization.erased' as const, id: req.params.id, ...gone };
    },
  );
};
