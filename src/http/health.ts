import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Database } from '../db/client.ts';
import { hasEnabledModel, type Catalog } from '../router/catalog.ts';
import type { ProviderProbes } from '../providers/probe.ts';
import type { HealthTable } from '../router/health.ts';
import { ApiError, type ErrorBody } from './api-error.ts';

const PING_TIMEOUT_MS = 2_000;

const checks = z.record(z.string(), z.string()).describe('Each dependency and its state');

const routingState = z
  .object({
    state: z.enum(['ok', 'degraded']).describe('degraded: some model is resting (breaker open, or cooling down after a 429); requests still route'),
    open: z.array(z.string()),
    cooling: z.array(z.string()),
  })
  .describe('The router at a glance');

/**
 * `/healthz`: the process is alive. `/readyz`: it can serve (database
 * reachable, a model configured whose server answered its last probe, or has
 * not been probed yet, and the S3 blob store when used), else 503 saying why.
 */
export const healthRoutes: FastifyPluginAsyncZod<{
  database: Database;
  catalog: Catalog;
  health: HealthTable;
  probes: ProviderProbes;
  blobProbe?: { readonly state: string } | undefined;
}> = async (app, { database, catalog, health, probes, blobProbe }) => {
  const configured = hasEnabledModel(catalog);

  app.get(
    '/healthz',
    { schema: { tags: ['health'], summary: 'Liveness', response: { 200: z.object({ status: z.literal('ok') }) } } },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: the database answers, a configured model server is reachable, and the S3 blob store (when used) answered its last probe',
        response: {
          200: z.object({
            status: z.literal('ready'),
            checks,
            routing_state: routingState,
            routing: z.record(z.string(), z.unknown()).describe('Per-model health: breaker state, failures, latency'),
          }),
          503: z.object({ error: z.any(), detail: z.string(), checks, routing_state: routingState, routing: z.record(z.string(), z.unknown()) }),
        },
      },
    },
    async (req, reply) => {
      let dbState = 'ok';
      try {
        // Bounded by the ping itself: its connect and its query each give up after the timeout.
        await database.ping(PING_TIMEOUT_MS);
      } catch (err) {
        // The reason is for the operator; a connection error names no secret (the URL's password is not in it).
        dbState = `unreachable: ${(err as Error).message}`.slice(0, 200);
        req.log.warn({ reason: dbState }, 'readiness check failed: database');
      }
      const reach = probes.summary(catalog);
      const models = !configured ? 'none configured: add providers and models to the EUGPT_CONFIG file' : reach.detail;
      const modelsOk = configured && reach.state !== 'down';
      // Open breakers make routing degraded, never the instance unready: requests still go somewhere (fail open).
      const routing_state = health.routingState();
      // The object store's last probe, never a request made now: readiness stays fast whatever the store does.
      const blobState = blobProbe?.state ?? 'ok';
      const checks = { database: dbState, models, routing: routing_state.state, ...(blobProbe === undefined ? {} : { blob_store: blobState }) };
      const routing = health.report();
      if (dbState === 'ok' && modelsOk && blobState === 'ok') return { status: 'ready' as const, checks, routing_state, routing };
      const why = [
        dbState === 'ok' ? null : 'the database is not reachable',
        modelsOk ? null : configured ? reach.detail : 'no model is configured',
        blobState === 'ok' ? null : 'the S3 blob store is not reachable',
      ];
      const body: ErrorBody = new ApiError(503, 'server_error', 'not_ready', why.filter(Boolean).join('; ')).toBody();
      return reply.status(503).send({ ...body, checks, routing_state, routing });
    },
  );
};
