import { z } from 'zod';
import type { ApiKey } from '../auth/key-admin.ts';
import type { Organization, User } from '../tenancy/organizations.ts';
import { featuresOf, type Plan } from '../tenancy/plans.ts';
import type { Project, ProjectMember } from '../tenancy/projects.ts';

/** The admin API's resource shapes: snake_case, ISO 8601 timestamps. */

const timestamp = z.string().describe('ISO 8601');

export const organizationView = z
  .object({
    id: z.uuid(),
    object: z.literal('organization'),
    name: z.string(),
    plan: z.string(),
    status: z.enum(['active', 'suspended']),
    api_access: z.boolean(),
    daily_token_limit: z.number().int().nullable().describe("Overrides the plan's; null: the plan's"),
    monthly_token_limit: z.number().int().nullable().describe("Overrides the plan's; null: the plan's"),
    trial_ends_at: timestamp.nullable(),
    residency: z.string().nullable().describe('Where requests may be answered: eu, or country codes joined by commas; null: anywhere'),
    retention_days: z.number().int().nullable().describe("Days content is kept; null: the plan's"),
    created_at: timestamp,
  })
  .meta({ id: 'Organization' });

export const planView = z
  .object({
    object: z.literal('plan'),
    name: z.string(),
    daily_tokens: z.number().int().nullable(),
    monthly_tokens: z.number().int().nullable(),
    user_daily_tokens: z.number().int().nullable(),
    user_monthly_tokens: z.number().int().nullable(),
    requests_per_minute: z.number().int().nullable(),
    trial_days: z.number().int().nullable(),
    retention_days: z.number().int().nullable().describe('Days content is kept; null: until deleted'),
    features: z.record(z.string(), z.boolean()),
    updated_at: timestamp,
  })
  .meta({ id: 'Plan' });

export const userView = z
  .object({
    id: z.uuid(),
    object: z.literal('user'),
    organization_id: z.uuid(),
    email: z.string(),
    role: z.enum(['owner', 'admin', 'member']),
    created_at: timestamp,
  })
  .meta({ id: 'User' });

export const apiKeyView = z
  .object({
    id: z.uuid(),
    object: z.literal('api_key'),
    user_id: z.uuid(),
    label: z.string(),
    prefix: z.string().describe('The first characters of the key, for recognising it'),
    created_at: timestamp,
    last_used_at: timestamp.nullable().describe('Recorded in batches: may lag real use by up to a minute'),
    revoked_at: timestamp.nullable(),
  })
  .meta({ id: 'ApiKey' });

export const createdApiKeyView = apiKeyView
  .extend({ key: z.string().describe('The secret. Shown only in this answer: store it now.') })
  .meta({ id: 'CreatedApiKey' });

export const projectView = z
  .object({
    id: z.uuid(),
    object: z.literal('project'),
    organization_id: z.uuid(),
    name: z.string(),
    created_at: timestamp,
  })
  .meta({ id: 'Project' });

export const projectMemberView = z
  .object({
    object: z.literal('project_member'),
    project_id: z.uuid(),
    user_id: z.uuid(),
    created_at: timestamp,
  })
  .meta({ id: 'ProjectMember' });

const iso = (d: Date | null) => (d === null ? null : d.toISOString());

export const showOrganization = (o: Organization): z.infer<typeof organizationView> => ({
  id: o.id,
  object: 'organization',
  name: o.name,
  plan: o.plan,
  status: o.status,
  api_access: o.apiAccess,
  daily_token_limit: o.dailyTokenLimit,
  monthly_token_limit: o.monthlyTokenLimit,
  trial_ends_at: iso(o.trialEndsAt),
  residency: o.residency,
  retention_days: o.retentionDays,
  created_at: o.createdAt.toISOString(),
});

export const showPlan = (p: Plan): z.infer<typeof planView> => ({
  object: 'plan',
  name: p.name,
  daily_tokens: p.dailyTokens,
  monthly_tokens: p.monthlyTokens,
  user_daily_tokens: p.userDailyTokens,
  user_monthly_tokens: p.userMonthlyTokens,
  requests_per_minute: p.requestsPerMinute,
  trial_days: p.trialDays,
  retention_days: p.retentionDays,
  features: featuresOf(p.features),
  updated_at: p.updatedAt.toISOString(),
});

export const showUser = (u: User): z.infer<typeof userView> => ({
  id: u.id,
  object: 'user',
  organization_id: u.organizationId,
  email: u.email,
  role: u.role,
  created_at: u.createdAt.toISOString(),
});

export const showApiKey = (k: ApiKey): z.infer<typeof apiKeyView> => ({
  id: k.id,
  object: 'api_key',
  user_id: k.userId,
  label: k.label,
  prefix: k.prefix,
  created_at: k.createdAt.toISOString(),
  last_used_at: iso(k.lastUsedAt),
  revoked_at: iso(k.revokedAt),
});

export const showProject = (p: Project): z.infer<typeof projectView> => ({
  id: p.id,
  object: 'project',
  organization_id: p.organizationId,
  name: p.name,
  created_at: p.createdAt.toISOString(),
});

export const showProjectMember = (m: ProjectMember): z.infer<typeof projectMemberView> => ({
  object: 'project_member',
  project_id: m.projectId,
  user_id: m.userId,
  created_at: m.createdAt.toISOString(),
});
