import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { rowsOf } from '../db/client.ts';
import type { BlobStores } from '../files/blobs.ts';
import { deleteBlobs, NO_INSTANCE, type Logger } from '../files/orphans.ts';

/**
 * Retention: an organisation keeps conversations, responses and files for
 * its `retention_days` (or its plan's); older ones are deleted by a job any
 * instance runs. Each round deletes one batch in one short statement, taking
 * rows no other instance holds (`skip locked`), so the job never holds long
 * locks and instances share the work. Usage totals stay: they hold no content.
 */

/** The retention of each row's organisation, in days, null for none. */
const retentionOf = (org: string) => sql.raw(`coalesce(${org}.retention_days, (select p.retention_days from plans p where p.name = ${org}.plan))`);

export interface Purged {
  responses: number;
  conversations: number;
  files: number;
}

/** Deletes one batch of responses (with their conversation items) and one of conversations past retention. */
export async function purgeBatch(db: Db, batch = 500, stores?: BlobStores, log?: Logger): Promise<Purged> {
  const responses = rowsOf<{ id: string }>(
    await db.execute(sql`
      with doomed as (
        select r.id from responses r join organizations o on o.id = r.organization_id
        where r.status <> 'in_progress' and ${retentionOf('o')} is not null
          and r.created_at < now() - make_interval(days => ${retentionOf('o')})
        limit ${batch}
        for update of r skip locked),
      items as (delete from conversation_items where response_id in (select id from doomed))
      delete from responses where id in (select id from doomed) returning id`),
  ).length;
  const conversations = rowsOf<{ id: string }>(
    await db.execute(sql`
      with doomed as (
        select c.id from conversations c join organizations o on o.id = c.organization_id
        where ${retentionOf('o')} is not null
          and c.updated_at < now() - make_interval(days => ${retentionOf('o')})
          and not exists (select 1 from responses r where r.conversation_id = c.id and r.status = 'in_progress')
        limit ${batch}
        for update of c skip locked)
      delete from conversations where id in (select id from doomed) returning id`),
  ).length;
  // A file's bytes go with it: chunks in the database in the same statement; an object in S3 gets a deletion
  // row there (blob_uploads), and is deleted once the statement committed, or by the orphan sweep.
  const gone = rowsOf<{ id: string; storage: 'database' | 's3'; storage_key: string }>(
    await db.execute(sql`
      with doomed as (
        select f.id, f.storage, f.storage_key from files f join organizations o on o.id = f.organization_id
        where ${retentionOf('o')} is not null
          and f.created_at < now() - make_interval(days => ${retentionOf('o')})
        limit ${batch}
        for update of f skip locked),
      blobs as (delete from blob_chunks where key in (select storage_key from doomed where storage = 'database')),
      pending as (
        insert into blob_uploads (key, storage, instance_id)
        select storage_key, storage, ${NO_INSTANCE}::uuid from doomed where storage <> 'database'
        on conflict (key) do update set instance_id = excluded.instance_id)
      delete from files where id in (select id from doomed) returning id, storage, storage_key`),
  );
  const objects = gone.filter((f) => f.storage !== 'database').map((f) => ({ key: f.storage_key, storage: f.storage }));
  if (stores !== undefined && log !== undefined) await deleteBlobs(db, stores, objects, log);
  const purgedFiles = gone.length;
  return { responses, conversations, files: purgedFiles };
}

/** Runs batches until nothing is left or `maxBatches` ran; returns the totals. */
export async function purgeExpired(db: Db, batch = 500, maxBatches = 20, stores?: BlobStores, log?: Logger): Promise<Purged> {
  const total: Purged = { responses: 0, conversations: 0, files: 0 };
  for (let i = 0; i < maxBatches; i++) {
    const round = await purgeBatch(db, batch, stores, log);
    total.responses += round.responses;
    total.conversations += round.conversations;
    total.files += round.files;
    if (round.responses < batch && round.conversations < batch && round.files < batch) break;
  }
  return total;
}
