import { and, eq, sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/client.ts';
import { blobUploads, files } from '../db/schema.ts';
import type { BlobStore, BlobStores } from './blobs.ts';
import type { FileRow } from './store.ts';

/**
 * Blobs that no file row points at: uploads under way, and deletions not yet
 * done. Each has a row in `blob_uploads`:
 * - an upload's row is written before its first byte and removed in the
 *   transaction that writes the file row (or once a failed put cleaned up);
 * - a deletion's row is written in the transaction that removes the file
 *   row(s), with no instance (`NO_INSTANCE`), and removed once the blob is
 *   gone.
 * The sweep deletes the blobs of rows whose instance stopped beating (a
 * crash mid-upload), of rows older than `maxAgeMs`, and of every deletion
 * row (a delete that failed, or a process that died before doing it), then
 * the rows. Deleting a blob twice does no harm, so instances need no lock.
 */

/** The instance of a deletion row: none, so any sweep takes it. */
export const NO_INSTANCE = '00000000-0000-0000-0000-000000000000';

export interface Logger {
  warn(obj: object, msg: string): void;
}

type Kind = BlobStore['kind'];

/** Before the first byte of a blob is written. */
export async function beginUpload(db: Db, key: string, storage: Kind, instanceId: string): Promise<void> {
  await db.insert(blobUploads).values({ key, storage, instanceId });
}

/** The blob now belongs to a file row (in the same transaction), or was cleaned up. */
export async function endUpload(db: Db, key: string): Promise<void> {
  await db.delete(blobUploads).where(eq(blobUploads.key, key));
}

/** In the transaction that removes file rows: their blobs are to be deleted, by this instance right after the commit, or by a sweep. */
export async function markForDeletion(tx: Db, blobs: { key: string; storage: Kind }[]): Promise<void> {
  if (blobs.length === 0) return;
  await tx
    .insert(blobUploads)
    .values(blobs.map((b) => ({ key: b.key, storage: b.storage, instanceId: NO_INSTANCE })))
    .onConflictDoUpdate({ target: blobUploads.key, set: { instanceId: NO_INSTANCE } });
}

/**
 * Deletes blobs whose rows are gone (after the commit), and their deletion
 * rows; a delete that fails is logged with its key and left to the sweep.
 * Answers how many were deleted.
 */
export async function deleteBlobs(db: Db, stores: BlobStores, blobs: { key: string; storage: Kind }[], log: Logger): Promise<number> {
  let done = 0;
  for (const b of blobs) {
    try {
      if (!stores.has(b.storage)) throw new Error(`the ${b.storage} blob store is not configured`);
      await stores.of(b.storage).delete(b.key);
      await db.delete(blobUploads).where(and(eq(blobUploads.key, b.key), eq(blobUploads.instanceId, NO_INSTANCE)));
      done++;
    } catch (err) {
      log.warn({ key: b.key, storage: b.storage, error: (err as Error).message }, 'could not delete a blob; the orphan sweep will try again');
    }
  }
  return done;
}

/** Deletes one file of `userId`: its row (with a deletion row for its blob) in one transaction, then the blob. */
export async function removeFile(db: Db, stores: BlobStores, row: FileRow, log: Logger): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.delete(files).where(and(eq(files.id, row.id), eq(files.userId, row.userId)));
    await markForDeletion(tx, [{ key: row.storageKey, storage: row.storage }]);
  });
  await deleteBlobs(db, stores, [{ key: row.storageKey, storage: row.storage }], log);
}

export interface SweepOptions {
  /** An instance whose heartbeat is older than this is gone. */
  staleMs: number;
  /** An upload row older than this is abandoned, whatever its instance. */
  maxAgeMs: number;
  /** Rows looked at per run. */
  batch?: number;
}

/** One run of the sweep: answers how many blobs were deleted. Stores that are not configured here are left to instances that have them. */
export async function sweepOrphans(db: Db, stores: BlobStores, opts: SweepOptions, log: Logger): Promise<number> {
  const kinds = stores.kinds;
  const due = rowsOf<{ key: string; storage: Kind }>(
    await db.execute(sql`
      select b.key, b.storage from blob_uploads b
      where b.storage in (${sql.join(
        kinds.map((k) => sql`${k}`),
        sql`, `,
      )})
        and (b.instance_id = ${NO_INSTANCE}::uuid
          or b.started_at < now() - make_interval(secs => ${opts.maxAgeMs / 1000})
          or not exists (select 1 from instances i where i.id = b.instance_id
                         and i.heartbeat_at > now() - make_interval(secs => ${opts.staleMs / 1000})))
      order by b.started_at
      limit ${opts.batch ?? 100}`),
  );
  let done = 0;
  for (const b of due) {
    try {
      await stores.of(b.storage).discard(b.key);
      await db.delete(blobUploads).where(eq(blobUploads.key, b.key));
      done++;
    } catch (err) {
      log.warn({ key: b.key, storage: b.storage, error: (err as Error).message }, 'could not delete an orphaned blob; the next sweep will try again');
    }
  }
  return done;
}
