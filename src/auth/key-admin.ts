import { and, eq, isNull } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { keyset, toPage, type Page, type PageQuery } from '../db/page.ts';
import { apiKeys, users } from '../db/schema.ts';
import { notFound } from '../http/api-error.ts';
import { generateKey, hashKey, visiblePrefix } from './keys.ts';

export type ApiKey = typeof apiKeys.$inferSelect;

/** Creates a key; the returned `key` is the only time the secret exists outside the caller's hands. */
export async function createApiKey(db: Db, input: { userId: string; label: string }): Promise<{ row: ApiKey; key: string }> {
  const key = generateKey();
  return db.transaction(async (tx) => {
    const [user] = await tx.select({ id: users.id }).from(users).where(eq(users.id, input.userId)).for('share');
    if (user === undefined) throw notFound('user_not_found', `user ${input.userId} not found`);
    const [row] = await tx
      .insert(apiKeys)
      .values({ userId: input.userId, label: input.label, prefix: visiblePrefix(key), secretHash: hashKey(key) })
      .returning();
    return { row: row!, key };
  });
}

export async function listApiKeys(db: Db, userId: string, page: PageQuery): Promise<Page<ApiKey>> {
  const q = keyset('api_keys', apiKeys.createdAt, apiKeys.id, page, eq(apiKeys.userId, userId));
  const rows = await db.select().from(apiKeys).where(q.where).orderBy(...q.orderBy).limit(q.limit);
  return toPage(rows, page.limit);
}

/** Revokes a key; revoking it again keeps the first revocation time. */
export async function revokeApiKey(db: Db, id: string): Promise<ApiKey> {
  const [updated] = await db
    .update(apiKeys)
    .set({ revokedAt: new Date() })
    .where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
    .returning();
  if (updated !== undefined) return updated;
  const [existing] = await db.select().from(apiKeys).where(eq(apiKeys.id, id));
  if (existing === undefined) throw notFound('api_key_not_found', `API key ${id} not found`);
  return existing;
}
