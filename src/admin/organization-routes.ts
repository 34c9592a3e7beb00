import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { errorResponses, listOf, pageQuery, uuidParam } from '../http/schemas.ts';
import { storable, storableString } from '../http/text.ts';
import { eq } from 'drizzle-orm';
import type { KeyAuth } from '../auth/key-auth.ts';
import { plans } from '../db/schema.ts';
import { usageReport, usageWindow } from '../limits/usage.ts';
import { windowsAt } from '../limits/windows.ts';
import { createOrganization, createUser, getOrganization, getUser, listOrganizations, listUsers, updateOrganization } from '../tenancy/organizations.ts';
import { planName } from '../tenancy/plans.ts';
import { badRequest } from '../http/api-error.ts';
import { residencyPolicyOf } from '../router/residency.ts';
import { organizationView, showOrganization, showUser, userView } from './views.ts';

const security = [{ adminToken: [] }];
const name = storableString().trim().min(1, { error: 'must not be blank' }).max(200);

const tokenLimit = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable();
const orgUsageWindow = usageWindow(['organization']);

export const organizationRoutes: FastifyPluginAsyncZod<{ db: Db; keyAuth: KeyAuth; now: () => number }> = async (app, { db, keyAuth, now }) => {
  app.post(
    '/organizations',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create an organisation',
        security,
        body: z.object({ name, plan: planName.optional() }),
        response: { 201: organizationView, ...errorResponses(400, 401) },
      },
    },
    async (req, reply) => reply.status(201).send(showOrganization(await createOrganization(db, req.body, now()))),
  );

  app.patch(
    '/organizations/:id',
    {
      schema: {
        tags: ['admin'],
        summary: "Change an organisation's name, plan, status, API-access policy, token limits or trial end",
        security,
        params: z.object({ id: uuidParam }),
        body: z.object({
          name: name.optional(),
          plan: planName.optional(),
          status: z.enum(['active', 'suspended']).optional(),
          api_access: z.boolean().optional(),
          daily_token_limit: tokenLimit.optional().describe("null: back to the plan's"),
          monthly_token_limit: tokenLimit.optional().describe("null: back to the plan's"),
          trial_ends_at: z.iso.datetime({ offset: true }).nullable().optional(),
          residency: z
            .union([z.literal('eu'), z.array(z.string().max(8)).min(1).max(64)])
            .nullable()
            .optional()
            .describe('"eu", a list of country codes (["DE","FR"]), or null for models anywhere'),
          retention_days: z.number().int().min(1).max(36_500).nullable().optional().describe("Days content is kept; null: the plan's"),
        }),
        response: { 200: organizationView, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      const b = req.body;
      const residency = b.residency === undefined ? undefined : residencyPolicyOf(b.residency);
      if (residency instanceof Error) throw badRequest('invalid_residency', `residency: ${residency.message}`, 'residency');
      const row = await updateOrganization(db, req.params.id, {
        residency,
        retentionDays: b.retention_days,
        name: b.name,
        plan: b.plan,
        status: b.status,
        apiAccess: b.api_access,
        dailyTokenLimit: b.daily_token_limit,
        monthlyTokenLimit: b.monthly_token_limit,
        trialEndsAt: b.trial_ends_at === undefined ? undefined : b.trial_ends_at === null ? null : new Date(b.trial_ends_at),
      });
      // This instance applies the change at once; the others within the key cache's TTL.
      keyAuth.forgetOrganization(row.id);
      req.log.info({ organization_id: row.id, changed: Object.keys(b) }, 'organisation changed');
      return showOrganization(row);
    },
  );

  app.get(
    '/organizations/:id/usage',
    {
      schema: {
        tags: ['admin'],
        summary: "An organisation's token usage and limits for the current UTC day and month",
        security,
        params: z.object({ id: uuidParam }),
        response: {
          200: z.object({ object: z.literal('usage'), organization_id: z.uuid(), plan: z.string(), day: orgUsageWindow, month: orgUsageWindow }),
          ...errorResponses(400, 401, 404),
        },
      },
    },
    async (req) => {
      const org = await getOrganization(db, req.params.id);
      const plan = await db.select().from(plans).where(eq(plans.name, org.plan));
      const report = await usageReport(
        db,
        [{ type: 'organization', id: org.id, limits: { day: org.dailyTokenLimit ?? plan[0]?.dailyTokens ?? null, month: org.monthlyTokenLimit ?? plan[0]?.monthlyTokens ?? null } }],
        windowsAt(now()),
      );
      return { object: 'usage' as const, organization_id: org.id, plan: org.plan, ...report };
    },
  );

  app.get(
    '/organizations',
    {
      schema: {
        tags: ['admin'],
        summary: 'List organisations',
        security,
        querystring: z.object(pageQuery),
        response: { 200: listOf(organizationView), ...errorResponses(400, 401) },
      },
    },
    async (req) => {
      const page = await listOrganizations(db, req.query);
      return { object: 'list' as const, data: page.data.map(showOrganization), has_more: page.hasMore };
    },
  );

  app.get(
    '/organizations/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Get an organisation',
        security,
        params: z.object({ id: uuidParam }),
        response: { 200: organizationView, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => showOrganization(await getOrganization(db, req.params.id)),
  );

  app.post(
    '/users',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create a user in an organisation',
        security,
        body: z.object({
          organization_id: uuidParam,
          email: storable(z.email({ error: 'must be an email address' }).max(320)),
          role: z.enum(['owner', 'admin', 'member']).optional(),
        }),
        response: { 201: userView, ...errorResponses(400, 401, 404, 409) },
      },
    },
    async (req, reply) => {
      const { organization_id, email, role } = req.body;
      return reply.status(201).send(showUser(await createUser(db, { organizationId: organization_id, email, role })));
    },
  );

  app.get(
    '/users',
    {
      schema: {
        tags: ['admin'],
        summary: 'List users, optionally of one organisation',
        security,
        querystring: z.object({ organization_id: uuidParam.optional(), ...pageQuery }),
        response: { 200: listOf(userView), ...errorResponses(400, 401) },
      },
    },
    async (req) => {
      const page = await listUsers(db, req.query.organization_id, req.query);
      return { object: 'list' as const, data: page.data.map(showUser), has_more: page.hasMore };
    },
  );

  app.get(
    '/users/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Get a user',
        security,
        params: z.object({ id: uuidParam }),
        response: { 200: userView, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => showUser(await getUser(db, req.params.id)),
  );
};
