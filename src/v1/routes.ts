import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf, requireApiKey } from '../auth/hook.ts';
import { assertPolicy } from '../limits/policy.ts';
import { usageRoutes } from '../limits/usage-route.ts';
import type { KeyAuth } from '../auth/key-auth.ts';
import { conversationRoutes } from '../conversations/routes.ts';
import { fileRoutes, type FileRouteOptions } from '../files/routes.ts';
import { errorResponses } from '../http/schemas.ts';
import { projectFileRoutes } from '../projects/routes.ts';
import { responseItemRoutes } from '../responses/item-routes.ts';
import { responseRoutes, type ResponseRouteOptions } from '../responses/route.ts';

const model = z.object({
  id: z.string(),
  object: z.literal('model'),
  created: z.number().int().describe('Unix seconds'),
  owned_by: z.string(),
  capabilities: z.array(z.string()).describe('What requests the model can take: tools, vision, json'),
  country: z.string().nullable().describe('Where the model runs (ISO 3166-1 alpha-2), if the operator said'),
});

/** Unix seconds at start: `auto` has no creation date of its own. */
const STARTED = Math.floor(Date.now() / 1000);

/** The public API. Every route here requires an API key. */
export const v1Routes: FastifyPluginAsyncZod<{ keyAuth: KeyAuth; cancelWaitMs: number; files: FileRouteOptions; onProjectFileAdded: () => void } & ResponseRouteOptions> = async (app, opts) => {
  requireApiKey(app, opts.keyAuth);
  // Suspension, API-access policy and trial end refuse every /v1 request.
  app.addHook('onRequest', async (req) => assertPolicy(principalOf(req), opts.now()));
  const catalogModels = opts.catalog.models
    .filter((m) => m.enabled)
    .map((m) => ({ id: m.id, object: 'model' as const, created: STARTED, owned_by: m.provider, capabilities: m.capabilities, country: m.country ?? null }));
  const anyCapability = [...new Set(catalogModels.flatMap((m) => m.capabilities))].sort();

  app.get(
    '/models',
    {
      schema: {
        tags: ['models'],
        summary: 'List the models a request can be routed to',
        security: [{ apiKey: [] }],
        response: { 200: z.object({ object: z.literal('list'), data: z.array(model) }), ...errorResponses(401) },
      },
    },
    async () => ({
      object: 'list' as const,
      data: [{ id: 'auto', object: 'model' as const, created: STARTED, owned_by: 'eugpt', capabilities: anyCapability, country: null }, ...catalogModels],
    }),
  );

  const { db, catalog, providers, health, writer, recovery, toolbox, projects, cancels, summaries, images, shutdown, storeWaitMs, streamDefault, now, keepAliveMs } = opts;
  await app.register(responseRoutes, { db, catalog, providers, health, writer, recovery, toolbox, projects, cancels, summaries, images, shutdown, storeWaitMs, streamDefault, now, keepAliveMs });
  await app.register(responseItemRoutes, { db, cancels, cancelWaitMs: opts.cancelWaitMs });
  await app.register(conversationRoutes, { db });
  await app.register(usageRoutes, { db: opts.db, now: opts.now });
  await app.register(fileRoutes, opts.files);
  await app.register(projectFileRoutes, { db, onAdded: opts.onProjectFileAdded });
};
