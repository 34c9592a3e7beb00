import { eq } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { keyset, toPage, type Page, type PageQuery } from '../db/page.ts';
import { organizations, plans, users } from '../db/schema.ts';
import type { Plan } from './plans.ts';
import { conflict, notFound } from '../http/api-error.ts';
import { isUniqueViolation } from '../db/errors.ts';

export type Organization = typeof organizations.$inferSelect;
export type User = typeof users.$inferSelect;
export type Role = User['role'];

/** The plan named, or none for `default` when it is not defined (no limits, every feature). */
async function planFor(db: Db, name: string): Promise<Plan | null> {
  const [row] = await db.select().from(plans).where(eq(plans.name, name));
  if (row === undefined && name !== 'default') throw notFound('plan_not_found', `plan ${name} not found`);
  return row ?? null;
}

const DAY_MS = 86_400_000;

/** Creates an organisation; a plan with a trial starts the trial now. */
export async function createOrganization(db: Db, input: { name: string; plan?: string | undefined }, now: number): Promise<Organization> {
  const plan = await planFor(db, input.plan ?? 'default');
  const trialEndsAt = plan === null || plan.trialDays === null ? null : new Date(now + plan.trialDays * DAY_MS);
  const [row] = await db
    .insert(organizations)
    .values({ name: input.name, plan: input.plan ?? 'default', trialEndsAt })
    .returning();
  return row!;
}

export interface OrganizationChanges {
  name?: string | undefined;
  plan?: string | undefined;
  status?: 'active' | 'suspended' | undefined;
  apiAccess?: boolean | undefined;
  dailyTokenLimit?: number | null | undefined;
  monthlyTokenLimit?: number | null | undefined;
  trialEndsAt?: Date | null | undefined;
  residency?: string | null | undefined;
  retentionDays?: number | null | undefined;
}

/** Changes an organisation's name, plan, status, policy, limits or trial end; unnamed fields stay. */
export async function updateOrganization(db: Db, id: string, changes: OrganizationChanges): Promise<Organization> {
  if (changes.plan !== undefined) await planFor(db, changes.plan);
  const set = Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined));
  if (Object.keys(set).length === 0) return getOrganization(db, id);
  const [row] = await db.update(organizations).set(set).where(eq(organizations.id, id)).returning();
  if (row === undefined) throw notFound('organization_not_found', `organization ${id} not found`);
  return row;
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

