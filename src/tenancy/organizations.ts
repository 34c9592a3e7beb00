import { eq } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { keyset, toPage, type Page, type PageQuery } from '../db/page.ts';
import { organizations, users } from '../db/schema.ts';
import { conflict, notFound } from '../http/api-error.ts';
import { isUniqueViolation } from '../db/errors.ts';

export type Organization = typeof organizations.$inferSelect;
export type User = typeof users.$inferSelect;
export type Role = User['role'];

export async function createOrganization(db: Db, input: { name: string; plan?: string | undefined }): Promise<Organization> {
  const [row] = await db
    .insert(organizations)
    .values({ name: input.name, ...(input.plan === undefined ? {} : { plan: input.plan }) })
    .returning();
  return row!;
}

export async function getOrganization(db: Db, id: string): Promise<Organization> {
  const [row] = await db.select().from(organizations).where(eq(organizations.id, id));
  if (row === undefined) throw notFound('organization_not_found', `organization ${id} not found`);
  return row;
}

export async function listOrganizations(db: Db, page: PageQuery): Promise<Page<Organization>> {
  const q = keyset('organizations', organizations.createdAt, organizations.id, page);
  const rows = await db.select().from(organizations).where(q.where).orderBy(...q.orderBy).limit(q.limit);
  return toPage(rows, page.limit);
}

/**
 * Locks an organisation row for the rest of a transaction, so that it cannot
 * vanish between this check and the insert that refers to it; 404 if missing.
 */
export async function lockOrganization(tx: Db, id: string): Promise<void> {
  const [org] = await tx.select({ id: organizations.id }).from(organizations).where(eq(organizations.id, id)).for('share');
  if (org === undefined) throw notFound('organization_not_found', `organization ${id} not found`);
}

export async function createUser(
  db: Db,
  input: { organizationId: string; email: string; role?: Role | undefined },
): Promise<User> {
  return db.transaction(async (tx) => {
    await lockOrganization(tx, input.organizationId);
    try {
      const [row] = await tx
        .insert(users)
        .values({ organizationId: input.organizationId, email: input.email.toLowerCase(), role: input.role ?? 'member' })
        .returning();
      return row!;
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict('email_taken', `a user with email ${input.email} already exists`, 'email');
      throw err;
    }
  });
}

export async function getUser(db: Db, id: string): Promise<User> {
  const [row] = await db.select().from(users).where(eq(users.id, id));
  if (row === undefined) throw notFound('user_not_found', `user ${id} not found`);
  return row;
}

export async function listUsers(db: Db, organizationId: string | undefined, page: PageQuery): Promise<Page<User>> {
  const filter = organizationId === undefined ? undefined : eq(users.organizationId, organizationId);
  const q = keyset('users', users.createdAt, users.id, page, filter);
  const rows = await db.select().from(users).where(q.where).orderBy(...q.orderBy).limit(q.limit);
  return toPage(rows, page.limit);
}

