import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Database } from '../db/client.ts';
import { ApiError, type ErrorBody } from './api-error.ts';

const PING_TIMEOUT_MS = 2_000;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const checks = z.record(z.string(), z.string()).describe('Each dependency and its state');

/** `/healthz`: the process is alive. `/readyz`: it can serve (database reachable), else 503 saying why. */
export const healthRoutes: FastifyPluginAsyncZod<{ database: Database }> = async (app, { database }) => {
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
        summary: 'Readiness: the database answers',
        response: {
          200: z.object({ status: z.literal('ready'), checks }),
          503: z.object({ error: z.any(), detail: z.string(), checks }),
        },
      },
    },
    async (req, reply) => {
      try {
        await withTimeout(database.ping(), PING_TIMEOUT_MS);
        return { status: 'ready' as const, checks: { database: 'ok' } };
      } catch (err) {
        req.log.warn({ err }, 'readiness check failed: database');
        const body: ErrorBody = new ApiError(503, 'server_error', 'not_ready', 'the database is not reachable').toBody();
        return reply.status(503).send({ ...body, checks: { database: 'unreachable' } });
      }
    },
  );
};
