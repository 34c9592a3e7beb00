import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf } from '../auth/hook.ts';
import type { Db } from '../db/client.ts';
import { errorResponses } from '../http/schemas.ts';
import { usageReport, usageWindow } from './usage.ts';
import { windowsAt } from './windows.ts';

const window = usageWindow(['user', 'organization']);

/** `GET /v1/usage`: the caller's and its organisation's usage and limits, today and this month (UTC). */
export const usageRoutes: FastifyPluginAsyncZod<{ db: Db; now: () => number }> = async (app, { db, now }) => {
  app.get(
    '/usage',
    {
      schema: {
        tags: ['usage'],
        summary: "Your and your organisation's token usage and limits for the current UTC day and month",
        security: [{ apiKey: [] }],
        response: {
          200: z.object({ object: z.literal('usage'), user_id: z.uuid(), organization_id: z.uuid(), plan: z.string(), day: window, month: window }),
          ...errorResponses(401, 403),
        },
      },
    },
    async (req) => {
      const p = principalOf(req);
      const report = await usageReport(
        db,
        [
          { type: 'user', id: p.userId, limits: { day: p.policy.limits.userDay, month: p.policy.limits.userMonth } },
          { type: 'organization', id: p.organizationId, limits: { day: p.policy.limits.orgDay, month: p.policy.limits.orgMonth } },
        ],
        windowsAt(now()),
      );
      return { object: 'usage' as const, user_id: p.userId, organization_id: p.organizationId, plan: p.policy.plan, ...report };
    },
  );
};
