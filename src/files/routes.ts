import multipart from '@fastify/multipart';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf } from '../auth/hook.ts';
import { errorResponses } from '../http/schemas.ts';
import { storableString } from '../http/text.ts';
import { requireFeature } from '../limits/policy.ts';
import { removeFile } from './orphans.ts';
import { contentDisposition, fileObject, findOwnedFile } from './store.ts';
import { listFiles, listQuery, multipartLimits, receiveUpload, refuseOversized, type UploadOptions } from './upload.ts';

/**
 * OpenAI's Files API, so the official SDK's `files.*` methods work unchanged:
 * upload (multipart, `file` and `purpose`), list, retrieve, content, delete.
 * Only a file's owner sees it; another user's file is the same 404 as a
 * missing one.
 */

export type FileRouteOptions = UploadOptions;

const security = [{ apiKey: [] }];
const idParam = z.object({ id: storableString().min(1).max(128) });

export const fileObjectSchema = z
  .object({
    id: z.string(),
    object: z.literal('file'),
    bytes: z.number().int(),
    created_at: z.number().int().describe('Unix seconds'),
    filename: z.string(),
    purpose: z.string(),
    status: z.enum(['uploaded', 'processed', 'error']).describe('uploaded: its text is being extracted; processed: ready for input_file; error: see status_details'),
    status_details: z.string().nullable(),
    expires_at: z.number().int().nullable(),
  })
  .meta({ id: 'File' });

export const fileList = z.object({
  object: z.literal('list'),
  data: z.array(fileObjectSchema),
  first_id: z.string().nullable(),
  last_id: z.string().nullable(),
  has_more: z.boolean(),
});

export const fileRoutes: FastifyPluginAsyncZod<FileRouteOptions> = async (app, opts) => {
  const { db, blobs } = opts;
  // Only here: the rest of the API takes JSON. The file's own limit is enforced while it streams in.
  await app.register(multipart, { limits: multipartLimits(opts.maxBytes) });

  app.post(
    '/files',
    {
      schema: {
        tags: ['files'],
        summary: 'Upload a file (multipart/form-data with `file` and `purpose`); its text is extracted for input_file',
        description:
          'The answer says `processed` when the text was extracted within a short wait, otherwise `uploaded`: poll GET /v1/files/{id} until `processed` or `error`.',
        consumes: ['multipart/form-data'],
        security,
        response: { 200: fileObjectSchema, ...errorResponses(400, 401, 403, 413) },
      },
      onRequest: refuseOversized(opts.maxBytes),
    },
    async (req) => {
      const principal = principalOf(req);
      requireFeature(principal, 'file_upload', 'file uploads');
      return receiveUpload(req, { userId: principal.userId, organizationId: principal.organizationId }, opts);
    },
  );

  app.get(
    '/files',
    {
      schema: {
        tags: ['files'],
        summary: "The caller's files, paginated",
        security,
        querystring: listQuery,
        response: { 200: fileList, ...errorResponses(400, 401) },
      },
    },
    async (req) => listFiles(db, principalOf(req).userId, req.query),
  );

  app.get(
    '/files/:id',
    {
      schema: { tags: ['files'], summary: 'One of your files', security, params: idParam, response: { 200: fileObjectSchema, ...errorResponses(401, 404) } },
    },
    async (req) => fileObject(await findOwnedFile(db, req.params.id, principalOf(req).userId)),
  );

  app.get(
    '/files/:id/content',
    {
      schema: {
        tags: ['files'],
        summary: 'The bytes of one of your files, as uploaded',
        security,
        params: idParam,
        response: { 200: z.any().describe('The file, with the type found in its bytes'), ...errorResponses(401, 404) },
      },
    },
    async (req, reply) => {
      const row = await findOwnedFile(db, req.params.id, principalOf(req).userId);
      reply
        .header('content-type', row.mimeType ?? 'application/octet-stream')
        .header('content-length', String(row.bytes))
        .header('content-disposition', contentDisposition(row.filename))
        // The bytes are the uploader's: a browser must not run an uploaded HTML page as this site's.
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', "default-src 'none'; sandbox");
      return reply.send(blobs.of(row.storage).get(row.storageKey));
    },
  );

  app.delete(
    '/files/:id',
    {
      schema: {
        tags: ['files'],
        summary: 'Delete one of your files and its bytes',
        security,
        params: idParam,
        response: { 200: z.object({ id: z.string(), object: z.literal('file'), deleted: z.literal(true) }), ...errorResponses(401, 404) },
      },
    },
    async (req) => {
      const row = await findOwnedFile(db, req.params.id, principalOf(req).userId);
      await removeFile(db, blobs, row, req.log);
      return { id: row.id, object: 'file' as const, deleted: true as const };
    },
  );
};
