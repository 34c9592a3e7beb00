import { and, asc, eq, gt, inArray, ne } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import {
  apiKeys,
  blobChunks,
  conversationItems,
  conversationSummaries,
  conversations,
  files,
  organizations,
  projectMembers,
  responses,
  usageTotals,
  users,
} from '../db/schema.ts';
import type { BlobStores } from '../files/blobs.ts';
import { deleteBlobs, markForDeletion, type Logger } from '../files/orphans.ts';
import { ApiError, notFound } from '../http/api-error.ts';

/**
 * A person's data (GDPR articles 15, 17 and 20): everything stored about a
 * user as one JSON document, and its erasure. The export is written as it is
 * read, page by page, so a user with years of conversations never sits in
 * memory whole. Erasure deletes content and keys and keeps the usage totals,
 * which hold only token counts under a random id.
 */

const PAGE = 200;

/** JSON text of a value, for the streamed document. */
const j = (v: unknown) => JSON.stringify(v);

async function* pagesOf<T extends { id: string }>(fetch: (after: string | null) => Promise<T[]>): AsyncGenerator<T> {
  let after: string | null = null;
  for (;;) {
    const rows = await fetch(after);
    for (const row of rows) yield row;
    if (rows.length < PAGE) return;
    after = rows.at(-1)!.id;
  }
}

/** Writes `name: [items…]` with each item's JSON from `each`. */
async function* list<T>(name: string, rows: AsyncIterable<T>, each: (row: T) => AsyncIterable<string> | string, first = false): AsyncGenerator<string> {
  yield `${first ? '' : ','}${j(name)}:[`;
  let n = 0;
  for await (const row of rows) {
    if (n++ > 0) yield ',';
    const out = each(row);
    if (typeof out === 'string') yield out;
    else yield* out;
  }
  yield ']';
}

/** A blob's bytes as one base64 string, encoded piece by piece (a remainder carried so the pieces join). */
async function* base64Of(stream: AsyncIterable<Buffer>): AsyncGenerator<string> {
  let carry = Buffer.alloc(0);
  for await (const piece of stream) {
    const bytes = Buffer.concat([carry, piece]);
    const whole = bytes.length - (bytes.length % 3);
    yield bytes.subarray(0, whole).toString('base64');
    carry = bytes.subarray(whole);
  }
  if (carry.length > 0) yield carry.toString('base64');
}

/** Everything stored about one user, as JSON text in pieces. */
export async function* exportUser(db: Db, stores: BlobStores, userId: string, now: Date): AsyncGenerator<string> {
  const [user] = await db.select().from(users).where(eq(users.id, userId));
  if (user === undefined) throw notFound('user_not_found', `user ${userId} not found`);
  yield `{"object":"user_export","exported_at":${j(now.toISOString())},"user":${j({
    id: user.id,
    organization_id: user.organizationId,
    email: user.email,
    role: user.role,
    created_at: user.createdAt,
  })}`;

  const keys = await db
    .select({ id: apiKeys.id, label: apiKeys.label, prefix: apiKeys.prefix, created_at: apiKeys.createdAt, last_used_at: apiKeys.lastUsedAt, revoked_at: apiKeys.revokedAt })
    .from(apiKeys)
    .where(eq(apiKeys.userId, userId));
  yield `,"api_keys":${j(keys)}`;
  const memberships = await db.select({ project_id: projectMembers.projectId, since: projectMembers.createdAt }).from(projectMembers).where(eq(projectMembers.userId, userId));
  yield `,"project_memberships":${j(memberships)}`;

  const ownConversations = pagesOf((after) =>
    db
      .select()
      .from(conversations)
      .where(and(eq(conversations.userId, userId), after === null ? undefined : gt(conversations.id, after)))
      .orderBy(asc(conversations.id))
      .limit(PAGE),
  );
  yield* list('conversations', ownConversations, async function* (c) {
    yield `{"id":${j(c.id)},"title":${j(c.title)},"metadata":${j(c.metadata)},"hidden":${j(c.hidden)},"created_at":${j(c.createdAt)},"updated_at":${j(c.updatedAt)},"items":[`;
    let last = -1;
    let n = 0;
    for (;;) {
      const items = await db
        .select({ position: conversationItems.position, role: conversationItems.role, type: conversationItems.type, item_id: conversationItems.itemId, content: conversationItems.content, created_at: conversationItems.createdAt })
        .from(conversationItems)
        .where(and(eq(conversationItems.conversationId, c.id), gt(conversationItems.position, last)))
        .orderBy(asc(conversationItems.position))
        .limit(PAGE);
      for (const item of items) yield `${n++ > 0 ? ',' : ''}${j(item)}`;
      if (items.length < PAGE) break;
      last = items.at(-1)!.position;
    }
    // The running summary of older turns is content about the user too.
    const [summary] = await db
      .select({ text: conversationSummaries.text, through_position: conversationSummaries.throughPosition, model: conversationSummaries.model, updated_at: conversationSummaries.updatedAt })
      .from(conversationSummaries)
      .where(eq(conversationSummaries.conversationId, c.id));
    yield `],"summary":${j(summary ?? null)}}`;
  });

  const ownResponses = pagesOf((after) =>
    db
      .select({
        id: responses.id,
        conversation_id: responses.conversationId,
        status: responses.status,
        model: responses.model,
        input_tokens: responses.inputTokens,
        output_tokens: responses.outputTokens,
        created_at: responses.createdAt,
        body: responses.body,
      })
      .from(responses)
      .where(and(eq(responses.userId, userId), after === null ? undefined : gt(responses.id, after)))
      .orderBy(asc(responses.id))
      .limit(PAGE),
  );
  yield* list('responses', ownResponses, (r) => j(r));

  const ownFiles = pagesOf((after) =>
    db
      .select()
      .from(files)
      .where(and(eq(files.userId, userId), after === null ? undefined : gt(files.id, after)))
      .orderBy(asc(files.id))
      .limit(PAGE),
  );
  yield* list('files', ownFiles, async function* (f) {
    const meta = { id: f.id, filename: f.filename, purpose: f.purpose, bytes: f.bytes, mime_type: f.mimeType, sha256: f.sha256, status: f.status, created_at: f.createdAt };
    yield `${j(meta).slice(0, -1)},"content_base64":"`;
    // Read from the store the row names: a deployment that moved to S3 still has older files in the database.
    yield* base64Of(stores.of(f.storage).get(f.storageKey));
    yield '"}';
  });

  const usage = await db
    .select({ window: usageTotals.window, window_start: usageTotals.windowStart, input_tokens: usageTotals.inputTokens, output_tokens: usageTotals.outputTokens, total_tokens: usageTotals.totalTokens, requests: usageTotals.requests })
    .from(usageTotals)
    .where(and(eq(usageTotals.subjectType, 'user'), eq(usageTotals.subjectId, userId)))
    .orderBy(asc(usageTotals.windowStart));
  yield `,"usage":${j(usage)}}`;
}

/** Everything stored about an organisation's users, one user's export after another. */
export async function* exportOrganization(db: Db, stores: BlobStores, organizationId: string, now: Date): AsyncGenerator<string> {
  const [org] = await db.select().from(organizations).where(eq(organizations.id, organizationId));
  if (org === undefined) throw notFound('organization_not_found', `organization ${organizationId} not found`);
  const organization = { id: org.id, name: org.name, plan: org.plan, created_at: org.createdAt };
  yield `{"object":"organization_export","exported_at":${j(now.toISOString())},"organization":${j(organization)},"users":[`;
  const members = await db.select({ id: users.id }).from(users).where(eq(users.organizationId, org.id)).orderBy(asc(users.id));
  for (const [i, m] of members.entries()) {
    if (i > 0) yield ',';
    yield* exportUser(db, stores, m.id, now);
  }
  yield ']}';
}

/** Refuses to erase while responses are being produced: their final write would follow the erasure. */
async function assertIdle(db: Db, column: typeof responses.userId | typeof responses.organizationId, id: string): Promise<void> {
  const [busy] = await db
    .select({ id: responses.id })
    .from(responses)
    .where(and(eq(column, id), eq(responses.status, 'in_progress')))
    .limit(1);
  if (busy !== undefined) throw new ApiError(409, 'invalid_request_error', 'responses_in_progress', 'responses are being produced; erase again when they have finished');
}

export interface Erased {
  conversations: number;
  responses: number;
  files: number;
  api_keys: number;
}

/**
 * Erases a user: conversations with their items, responses, files with their
 * bytes, API keys, memberships, and the user row (with the email). Usage
 * totals stay under the user's random id, with nothing left to tie them to a
 * person. One transaction: all of it or nothing. Objects in an object store
 * cannot be part of it: they are deleted right after it commits, and a
 * delete that fails is left to the orphan sweep (files/orphans.ts).
 */
export async function eraseUser(db: Db, userId: string, blobs?: { stores: BlobStores; log: Logger }): Promise<{ erased: Erased; organizationId: string }> {
  const [user] = await db.select({ organizationId: users.organizationId }).from(users).where(eq(users.id, userId));
  if (user === undefined) throw notFound('user_not_found', `user ${userId} not found`);
  await assertIdle(db, responses.userId, userId);
  const { objects, ...erased } = await db.transaction(async (tx) => eraseWhere(tx, [userId]));
  if (blobs !== undefined) await deleteBlobs(db, blobs.stores, objects, blobs.log);
  return { erased, organizationId: user.organizationId };
}

/** Erases every user of an organisation, then the organisation; its usage totals stay. */
export async function eraseOrganization(db: Db, organizationId: string, blobs?: { stores: BlobStores; log: Logger }): Promise<Erased & { users: number }> {
  const [org] = await db.select({ id: organizations.id }).from(organizations).where(eq(organizations.id, organizationId));
  if (org === undefined) throw notFound('organization_not_found', `organization ${organizationId} not found`);
  await assertIdle(db, responses.organizationId, organizationId);
  const { objects, ...erased } = await db.transaction(async (tx) => {
    const members = (await tx.select({ id: users.id }).from(users).where(eq(users.organizationId, organizationId))).map((u) => u.id);
    const gone = await eraseWhere(tx, members);
    await tx.delete(organizations).where(eq(organizations.id, organizationId));
    return { ...gone, users: members.length };
  });
  if (blobs !== undefined) await deleteBlobs(db, blobs.stores, objects, blobs.log);
  return erased;
}

type ObjectRef = { key: string; storage: 'database' | 's3' };

async function eraseWhere(tx: Db, userIds: string[]): Promise<Erased & { objects: ObjectRef[] }> {
  if (userIds.length === 0) return { conversations: 0, responses: 0, files: 0, api_keys: 0, objects: [] };
  const ofUsers = <C extends typeof files.userId | typeof responses.userId | typeof conversations.userId | typeof apiKeys.userId>(c: C) => inArray(c, userIds);
  // Blobs are not tied to their files by a foreign key (the store is generic): they go first, by key.
  await tx.delete(blobChunks).where(inArray(blobChunks.key, tx.select({ key: files.storageKey }).from(files).where(and(ofUsers(files.userId), eq(files.storage, 'database')))));
  // Objects elsewhere get a deletion row in this transaction, so that they go even if the process dies right after it.
  const objects = (await tx.select({ key: files.storageKey, storage: files.storage }).from(files).where(and(ofUsers(files.userId), ne(files.storage, 'database')))) as ObjectRef[];
  await markForDeletion(tx, objects);
  const gone = {
    files: (await tx.delete(files).where(ofUsers(files.userId)).returning({ id: files.id })).length,
    responses: (await tx.delete(responses).where(ofUsers(responses.userId)).returning({ id: responses.id })).length,
    conversations: (await tx.delete(conversations).where(ofUsers(conversations.userId)).returning({ id: conversations.id })).length,
    api_keys: (await tx.delete(apiKeys).where(ofUsers(apiKeys.userId)).returning({ id: apiKeys.id })).length,
  };
  await tx.delete(projectMembers).where(inArray(projectMembers.userId, userIds));
  await tx.delete(users).where(inArray(users.id, userIds));
  return { ...gone, objects };
}
