import { asc, eq, sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { plans } from '../db/schema.ts';
import { notFound } from '../http/api-error.ts';

export const FEATURES = ['api_access', 'tools', 'advanced_web_search', 'projects', 'file_upload'] as const;
export type Feature = (typeof FEATURES)[number];

const tokens = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable().default(null);

/** A plan as the config file and the admin API write it. A missing limit is no limit; a missing feature is on. */
export const planInput = z.strictObject({
  daily_tokens: tokens,
  monthly_tokens: tokens,
  user_daily_tokens: tokens,
  user_monthly_tokens: tokens,
  requests_per_minute: z.number().int().min(1).max(1_000_000).nullable().default(null),
  trial_days: z.number().int().min(1).max(3650).nullable().default(null),
  /** Days conversations, responses and files are kept; null: until deleted. */
  retention_days: z.number().int().min(1).max(36_500).nullable().default(null),
  features: z.partialRecord(z.enum(FEATURES), z.boolean()).default({}),
});

export const planName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, { error: 'must be 1-64 letters, digits, dots, dashes or underscores' });

export const planConfigSchema = planInput.extend({ name: planName });
export type PlanInput = z.infer<typeof planInput>;
export type Plan = typeof plans.$inferSelect;

const values = (name: string, p: PlanInput) => ({
  name,
  dailyTokens: p.daily_tokens,
  monthlyTokens: p.monthly_tokens,
  userDailyTokens: p.user_daily_tokens,
  userMonthlyTokens: p.user_monthly_tokens,
  requestsPerMinute: p.requests_per_minute,
  trialDays: p.trial_days,
  retentionDays: p.retention_days,
  features: p.features,
  updatedAt: new Date(),
});

/** Creates or replaces a plan. */
export async function putPlan(db: Db, name: string, p: PlanInput): Promise<Plan> {
  const row = values(name, p);
  const [saved] = await db
    .insert(plans)
    .values(row)
    .onConflictDoUpdate({ target: plans.name, set: { ...row, name: sql`excluded.name` } })
    .returning();
  return saved!;
}

/** The plans of the config file win over what the admin API stored under the same names, at every start. */
export async function syncPlans(db: Db, configured: (PlanInput & { name: string })[]): Promise<void> {
  if (configured.length === 0) return;
  await db.transaction(async (tx) => {
    for (const { name, ...p } of configured) await putPlan(tx, name, p);
  });
}

export async function getPlan(db: Db, name: string): Promise<Plan> {
  const [row] = await db.select().from(plans).where(eq(plans.name, name));
  if (row === undefined) throw notFound('plan_not_found', `plan ${name} not found`);
  return row;
}

export async function listPlans(db: Db): Promise<Plan[]> {
  return db.select().from(plans).orderBy(asc(plans.name));
}

/** A plan's features with the defaults filled in (every feature not named is on). */
export function featuresOf(stored: unknown): Record<Feature, boolean> {
  const given = (stored ?? {}) as Partial<Record<Feature, boolean>>;
  return Object.fromEntries(FEATURES.map((f) => [f, given[f] !== false])) as Record<Feature, boolean>;
}
