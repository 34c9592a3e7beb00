import { randomUUID } from 'node:crypto';
import multipart from '@fastify/multipart';
import { and, asc, desc, eq, sql, type SQL } from 'drizzle-orm';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf } from '../auth/hook.ts';
import type { Db } from '../db/client.ts';
import { files } from '../db/schema.ts';
import { ApiError, badRequest, forbidden } from '../http/api-error.ts';
import { isUuid } from '../http/ids.ts';
import { errorResponses } from '../http/schemas.ts';
import { storableString } from '../http/text.ts';
import { requireFeature } from '../limits/policy.ts';
import { BlobTooLarge, type BlobStore } from './blobs.ts';
import { detectType } from './detect.ts';
import { contentDisposition, fileObject, findOwnedFile, PURPOSES, sanitizeFilename, storageUsed } from './store.ts';

/**
 * OpenAI's Files API, so the official SDK's `files.*` methods work unchanged:
 * upload (multipart, `file` and `purpose`), list, retrieve, content, delete.
 * Only a file's owner sees it; another user's file is the same 404 as a
 * missing one.
 */

export interface FileRouteOptions {
  db: Db;
  blobs: BlobStore;
  maxBytes: number;
  orgStorageBytes: number;
  /**
   * Called once a file is stored: starts its text extraction, and resolves
   * when it ended here or when `waitMs` passed, whichever comes first.
   */
  onUploaded: (id: string, waitMs: number) => Promise<void>;
  /** How long an upload waits for its extraction before answering `uploaded`. */
  readyWaitMs: number;
}

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

const fileList = z.object({
  object: z.literal('list'),
  data: z.array(fileObjectSchema),
  first_id: z.string().nullable(),
  last_id: z.string().nullable(),
  has_more: z.boolean(),
});

/** Room for the multipart framing and the purpose field around a file of the largest size. */
const MULTIPART_OVERHEAD = 64 * 1024;
/** The first bytes kept for type detection: enough for the Office formats' zip directory entries to be seen. */
const HEAD_BYTES = 256 * 1024;

const tooLarge = (max: number) => new ApiError(413, 'invalid_request_error', 'file_too_large', `the file is larger than ${max} bytes`, 'file');
const quotaExceeded = (quota: number) =>
  forbidden('storage_quota_exceeded', `the organisation's files would take more than its ${quota} bytes of storage; delete some first`);

export const fileRoutes: FastifyPluginAsyncZod<FileRouteOptions> = async (app, opts) => {
  const { db, blobs } = opts;
  // Only here: the rest of the API takes JSON. The file's own limit is enforced while it streams in.
  await app.register(multipart, { limits: { fileSize: opts.maxBytes, files: 1, fields: 10, fieldSize: 1024, parts: 12 } });

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
      // A body announced larger than any acceptable file is refused before a byte of it is read.
      onRequest: async (req) => {
        const length = Number(req.headers['content-length']);
        if (Number.isFinite(length) && length > opts.maxBytes + MULTIPART_OVERHEAD) throw tooLarge(opts.maxBytes);
      },
    },
    async (req) => {
      const principal = principalOf(req);
      requireFeature(principal, 'file_upload', 'file uploads');
      if (!req.isMultipart()) throw badRequest('invalid_content_type', 'upload a file as multipart/form-data with the fields file and purpose');
      const used = await storageUsed(db, principal.organizationId);
      const room = opts.orgStorageBytes - used;
      if (room <= 0) throw quotaExceeded(opts.orgStorageBytes);

      const id = randomUUID();
      const key = `files/${id}`;
      let purpose: string | undefined;
      let stored: { bytes: number; sha256: string; filename: string; mime: string } | undefined;
      try {
        for await (const part of req.parts()) {
          if (part.type === 'field') {
            if (part.fieldname === 'purpose') purpose = String(part.value);
            continue;
          }
          if (part.fieldname !== 'file' || stored !== undefined) {
            // Another file field: drained, not stored.
            part.file.resume();
            continue;
          }
          const head: Buffer[] = [];
          let headBytes = 0;
          const body = (async function* () {
            for await (const piece of part.file as AsyncIterable<Buffer>) {
              if (headBytes < HEAD_BYTES) {
                head.push(piece);
                headBytes += piece.length;
              }
              yield piece;
            }
          })();
          const limit = Math.min(opts.maxBytes, room);
          const written = await blobs.put(key, body, { maxBytes: limit }).catch((err: unknown) => {
            if (err instanceof BlobTooLarge || (err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') {
              throw limit < opts.maxBytes ? quotaExceeded(opts.orgStorageBytes) : tooLarge(opts.maxBytes);
            }
            throw err;
          });
          // Counted before anything else can fail, so that a failure below removes the blob.
          stored = { ...written, filename: sanitizeFilename(part.filename), mime: 'application/octet-stream' };
          stored.mime = await detectType(Buffer.concat(head).subarray(0, HEAD_BYTES));
        }
        if (stored === undefined) throw badRequest('missing_file', 'the form has no file field', 'file');
        if (purpose === undefined) throw badRequest('missing_purpose', `the form has no purpose field; use one of ${PURPOSES.join(', ')}`, 'purpose');
        if (!(PURPOSES as readonly string[]).includes(purpose)) {
          throw badRequest('invalid_purpose', `purpose must be one of ${PURPOSES.join(', ')}`, 'purpose');
        }
        if (stored.bytes === 0) throw badRequest('empty_file', 'the file is empty', 'file');
        const [row] = await db
          .insert(files)
          .values({
            id,
            userId: principal.userId,
            organizationId: principal.organizationId,
            filename: stored.filename,
            purpose,
            bytes: stored.bytes,
            mimeType: stored.mime,
            sha256: stored.sha256,
            storage: blobs.kind,
            storageKey: key,
          })
          .returning();
        await opts.onUploaded(id, opts.readyWaitMs);
        const [now] = await db.select().from(files).where(eq(files.id, id));
        return fileObject(now ?? row!);
      } catch (err) {
        // No file row means nobody will ever read or delete the blob: it goes now.
        const [exists] = await db.select({ id: files.id }).from(files).where(eq(files.id, id));
        if (exists === undefined) await blobs.delete(key).catch(() => undefined);
        // The multipart parser's own size limit (the same as ours) may stop the file before the store does.
        if ((err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge(opts.maxBytes);
        throw err;
      }
    },
  );

  app.get(
    '/files',
    {
      schema: {
        tags: ['files'],
        summary: "The caller's files, paginated",
        security,
        querystring: z.object({
          limit: z.coerce.number().int().min(1).max(10_000).default(10_000).describe('Page size, 1 to 10000'),
          order: z.enum(['asc', 'desc']).default('desc').describe('By creation time; desc: the newest first'),
          after: storableString().max(128).optional().describe('Id of the last file of the previous page'),
          purpose: storableString().max(64).optional().describe('Only files of this purpose'),
        }),
        response: { 200: fileList, ...errorResponses(400, 401) },
      },
    },
    async (req) => {
      const { userId } = principalOf(req);
      const { limit, order, after, purpose } = req.query;
      const mine = and(eq(files.userId, userId), purpose === undefined ? undefined : eq(files.purpose, purpose));
      let cursor: SQL | undefined;
      if (after !== undefined) {
        const [anchor] = isUuid(after)
          ? await db.select({ id: files.id }).from(files).where(and(eq(files.id, after), eq(files.userId, userId)))
          : [];
        if (anchor === undefined) throw badRequest('invalid_after', `after: ${after} is not one of your files`, 'after');
        // Compared in the database: created_at has microseconds, which a JavaScript Date would round away.
        const anchorRow = sql`(select a.created_at, a.id from files a where a.id = ${anchor.id})`;
        cursor = order === 'asc' ? sql`(${files.createdAt}, ${files.id}) > ${anchorRow}` : sql`(${files.createdAt}, ${files.id}) < ${anchorRow}`;
      }
      const by = order === 'asc' ? asc : desc;
      const rows = await db
        .select()
        .from(files)
        .where(and(mine, cursor))
        .orderBy(by(files.createdAt), by(files.id))
        .limit(limit + 1);
      const data = rows.slice(0, limit).map(fileObject);
      return { object: 'list' as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: rows.length > limit };
    },
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
      return reply.send(blobs.get(row.storageKey));
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
      const { userId } = principalOf(req);
      const row = await findOwnedFile(db, req.params.id, userId);
      // The row first: once it is gone nothing refers to the blob, and a failure below leaves only unreachable chunks.
      await db.delete(files).where(and(eq(files.id, row.id), eq(files.userId, userId)));
      await blobs.delete(row.storageKey);
      return { id: row.id, object: 'file' as const, deleted: true as const };
    },
  );
};
