import multipart from '@fastify/multipart';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { fileList, fileObjectSchema } from '../files/routes.ts';
import { removeFile } from '../files/orphans.ts';
import { findOwnedFile } from '../files/store.ts';
import { listFiles, listQuery, multipartLimits, receiveUpload, refuseOversized, type UploadOptions } from '../files/upload.ts';
import { errorResponses, uuidParam } from '../http/schemas.ts';
import { getUser } from '../tenancy/organizations.ts';

/**
 * A user's files for operators (and `eugpt file`): upload on the user's
 * behalf, list, delete. The same code as /v1/files, so the same size limit,
 * organisation quota, type detection and text extraction apply; the plan's
 * `file_upload` feature does not, since the operator is not the user.
 */

const security = [{ adminToken: [] }];
const userParam = z.object({ id: uuidParam });

export const adminFileRoutes: FastifyPluginAsyncZod<UploadOptions> = async (app, opts) => {
  const { db, blobs } = opts;
  await app.register(multipart, { limits: multipartLimits(opts.maxBytes) });

  app.post(
    '/users/:id/files',
    {
      schema: {
        tags: ['admin'],
        summary: "Upload a file for a user (multipart/form-data with `file` and `purpose`), within the organisation's quota",
        consumes: ['multipart/form-data'],
        security,
        params: userParam,
        response: { 201: fileObjectSchema, ...errorResponses(400, 401, 403, 404, 413) },
      },
      onRequest: refuseOversized(opts.maxBytes),
    },
    async (req, reply) => {
      const user = await getUser(db, req.params.id);
      const file = await receiveUpload(req, { userId: user.id, organizationId: user.organizationId }, opts);
      return reply.status(201).send(file);
    },
  );

  app.get(
    '/users/:id/files',
    {
      schema: {
        tags: ['admin'],
        summary: "A user's files, paginated as /v1/files",
        security,
        params: userParam,
        querystring: listQuery,
        response: { 200: fileList, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      const user = await getUser(db, req.params.id);
      return listFiles(db, user.id, req.query);
    },
  );

  app.delete(
    '/users/:id/files/:file_id',
    {
      schema: {
        tags: ['admin'],
        summary: "Delete one of a user's files and its bytes",
        security,
        params: z.object({ id: uuidParam, file_id: z.string().min(1).max(128) }),
        response: { 200: z.object({ id: z.string(), object: z.literal('file'), deleted: z.literal(true) }), ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      const user = await getUser(db, req.params.id);
      // Another user's file is the same 404 as a missing one.
      const row = await findOwnedFile(db, req.params.file_id, user.id);
      await removeFile(db, blobs, row, req.log);
      return { id: row.id, object: 'file' as const, deleted: true as const };
    },
  );
};
