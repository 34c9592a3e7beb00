import { randomUUID } from 'node:crypto';
import { and, asc, desc, eq, sql, type SQL } from 'drizzle-orm';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { blobUploads, files } from '../db/schema.ts';
import { ApiError, badRequest, forbidden } from '../http/api-error.ts';
import { isUuid } from '../http/ids.ts';
import { storableString } from '../http/text.ts';
import { BlobTooLarge, type BlobStores } from './blobs.ts';
import { detectType } from './detect.ts';
import { beginUpload, endUpload, NO_INSTANCE } from './orphans.ts';
import { fileObject, PURPOSES, sanitizeFilename, storageUsed, type FileObject } from './store.ts';

/**
 * What the public Files API and the admin API share: receiving an upload
 * (limits, quota, type detection, the file row, extraction) and listing a
 * user's files.
 */

export interface UploadOptions {
  db: Db;
  blobs: BlobStores;
  /** This instance, for the row that marks an upload under way. */
  instanceId: string;
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

/** Room for the multipart framing and the purpose field around a file of the largest size. */
const MULTIPART_OVERHEAD = 64 * 1024;
/** The first bytes kept for type detection: enough for the Office formats' zip directory entries to be seen. */
const HEAD_BYTES = 256 * 1024;

const tooLarge = (max: number) => new ApiError(413, 'invalid_request_error', 'file_too_large', `the file is larger than ${max} bytes`, 'file');
const quotaExceeded = (quota: number) =>
  forbidden('storage_quota_exceeded', `the organisation's files would take more than its ${quota} bytes of storage; delete some first`);

/** The multipart parser's limits: one file of at most `maxBytes`, a few small fields. */
export const multipartLimits = (maxBytes: number) => ({ fileSize: maxBytes, files: 1, fields: 10, fieldSize: 1024, parts: 12 });

/** A route's `onRequest`: a body announced larger than any acceptable file is refused before a byte of it is read. */
export const refuseOversized = (maxBytes: number) => async (req: FastifyRequest) => {
  const length = Number(req.headers['content-length']);
  if (Number.isFinite(length) && length > maxBytes + MULTIPART_OVERHEAD) throw tooLarge(maxBytes);
};

/** Reads a multipart upload (`file` and `purpose`) into the blob store and writes the file row for `owner`. */
export async function receiveUpload(req: FastifyRequest, owner: { userId: string; organizationId: string }, opts: UploadOptions): Promise<FileObject> {
  const { db } = opts;
  const blobs = opts.blobs.current;
  if (!req.isMultipart()) throw badRequest('invalid_content_type', 'upload a file as multipart/form-data with the fields file and purpose');
  const used = await storageUsed(db, owner.organizationId);
  const room = opts.orgStorageBytes - used;
  if (room <= 0) throw quotaExceeded(opts.orgStorageBytes);

  const id = randomUUID();
  const key = `files/${id}`;
  let purpose: string | undefined;
  let stored: { bytes: number; sha256: string; filename: string; mime: string } | undefined;
  let begun = false;
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
      // Recorded before the first byte: if this process dies mid-upload, the sweep finds what it wrote.
      await beginUpload(db, key, blobs.kind, opts.instanceId);
      begun = true;
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
    const values = {
      id,
      userId: owner.userId,
      organizationId: owner.organizationId,
      filename: stored.filename,
      purpose,
      bytes: stored.bytes,
      mimeType: stored.mime,
      sha256: stored.sha256,
      storage: blobs.kind,
      storageKey: key,
    };
    // The file row and the end of the upload's row in one transaction: the blob always has one of them.
    const row = await db.transaction(async (tx) => {
      const [inserted] = await tx.insert(files).values(values).returning();
      await endUpload(tx, key);
      return inserted!;
    });
    await opts.onUploaded(id, opts.readyWaitMs);
    const [now] = await db.select().from(files).where(eq(files.id, id));
    return fileObject(now ?? row);
  } catch (err) {
    if (begun) await abandon(opts, id, key, req);
    // The multipart parser's own size limit (the same as ours) may stop the file before the store does.
    if ((err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge(opts.maxBytes);
    throw err;
  }
}

/** No file row means nobody will ever read or delete the blob: it goes now, or (when that fails) at the next sweep. */
async function abandon(opts: UploadOptions, id: string, key: string, req: FastifyRequest): Promise<void> {
  const { db } = opts;
  try {
    const [exists] = await db.select({ id: files.id }).from(files).where(eq(files.id, id));
    if (exists !== undefined) return;
    await opts.blobs.current.discard(key);
    await endUpload(db, key);
  } catch (err) {
    req.log.warn({ key, error: (err as Error).message }, 'could not remove the blob of a failed upload; the orphan sweep will');
    // Due at the next sweep rather than after this instance stops.
    await db
      .update(blobUploads)
      .set({ instanceId: NO_INSTANCE })
      .where(eq(blobUploads.key, key))
      .catch(() => undefined);
  }
}

export const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(10_000).default(10_000).describe('Page size, 1 to 10000'),
  order: z.enum(['asc', 'desc']).default('desc').describe('By creation time; desc: the newest first'),
  after: storableString().max(128).optional().describe('Id of the last file of the previous page'),
  purpose: storableString().max(64).optional().describe('Only files of this purpose'),
});

/** A page of a user's files, as OpenAI's list object. */
export async function listFiles(db: Db, userId: string, query: z.infer<typeof listQuery>) {
  const { limit, order, after, purpose } = query;
  const mine = and(eq(files.userId, userId), purpose === undefined ? undefined : eq(files.purpose, purpose));
  let cursor: SQL | undefined;
  if (after !== undefined) {
    const [anchor] = isUuid(after) ? await db.select({ id: files.id }).from(files).where(and(eq(files.id, after), eq(files.userId, userId))) : [];
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
}
