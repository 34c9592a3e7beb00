import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { errorResponses } from '../http/schemas.ts';
import { getPlan, listPlans, planInput, planName, putPlan } from '../tenancy/plans.ts';
import { planView, showPlan } from './views.ts';

const security = [{ adminToken: [] }];

/**
 * Plans: token limits, features and trial length. The config file's plans are
 * written at every start, so a plan named there is changed there.
 */
export const planRoutes: FastifyPluginAsyncZod<{ db: Db }> = async (app, { db }) => {
  app.get(
    '/plans',
    { schema: { tags: ['admin'], summary: 'List plans', security, response: { 200: z.object({ object: z.literal('list'), data: z.array(planView) }), ...errorResponses(401) } } },
    async () => ({ object: 'list' as const, data: (await listPlans(db)).map(showPlan) }),
  );

  app.get(
    '/plans/:name',
    {
      schema: { tags: ['admin'], summary: 'Get a plan', security, params: z.object({ name: planName }), response: { 200: planView, ...errorResponses(400, 401, 404) } },
    },
    async (req) => showPlan(await getPlan(db, req.params.name)),
  );

  app.put(
    '/plans/:name',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create or replace a plan (limits left out: none; features left out: on)',
        security,
        params: z.object({ name: planName }),
        body: planInput,
        response: { 200: planView, ...errorResponses(400, 401) },
      },
    },
    async (req) => showPlan(await putPlan(db, req.params.name, req.body)),
  );
};
