import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf } from '../auth/hook.ts';
import type { Principal } from '../auth/key-auth.ts';
import type { Db } from '../db/client.ts';
import { ApiError } from '../http/api-error.ts';
import { errorResponses, uuidParam } from '../http/schemas.ts';
import type { Providers } from '../providers/registry.ts';
import { hasEnabledModel, type Catalog } from '../router/catalog.ts';
import type { RequestFeatures } from '../router/classify.ts';
import type { HealthTable } from '../router/health.ts';
import { pick, type Decision } from '../router/pick.ts';
import { requireFeature } from '../limits/policy.ts';
import { estimateTokens, rateHeaders, release, reserve, snapshotHeaders } from '../limits/quota.ts';
import { checkRequestRate } from '../limits/rate.ts';
import { windowsAt, type Window } from '../limits/windows.ts';
import { startWithFailover, type Attempt } from './attempts.ts';
import { collect } from './collect.ts';
import { outputBudget, prepareContext, type PreparedContext } from './context.ts';
import { logFinished, noModel, unroutable, upstreamFailure } from './errors.ts';
import type { ResponseEvent } from './events.ts';
import { createResponseBody, parseCreateRequest, type CreateRequest } from './request.ts';
import { responseObjectSchema } from './schemas.ts';
import { SSE_HEADERS, writeEvents } from './sse.ts';
import { findOwnedResponse, saveResponse } from './store.ts';

export interface ResponseRouteOptions {
  db: Db;
  catalog: Catalog;
  providers: Providers;
  health: HealthTable;
  /** The clock of quota windows and trials (tests move it). */
  now: () => number;
  /** Overrides the SSE keep-alive interval (tests). */
  keepAliveMs?: number | undefined;
}

const security = [{ apiKey: [] }];

/** The stored failure that stands in for a terminal event when the response could not be saved. */
function storageFailed(seq: number): ResponseEvent {
  const error = { type: 'server_error', code: 'internal_error', message: 'the response could not be stored', param: null };
  return { type: 'error', sequence_number: seq, code: error.code, message: error.message, param: null, error };
}

/** The router's view of a request: cheap signals only (issue 4). */
function featuresOf(request: CreateRequest, prepared: PreparedContext): RequestFeatures {
  return {
    promptTokens: prepared.fixedTokens + prepared.historyTokens,
    requiredTokens: prepared.fixedTokens,
    inputText: request.input.flatMap((m) => (m.role === 'user' ? m.content.map((p) => p.text) : [])).join('\n'),
    retrieval: request.projectId !== null,
    reasoningEffort: request.reasoningEffort,
    needs: request.responseFormat === undefined ? [] : ['json'],
    maxOutputTokens: request.maxOutputTokens,
  };
}

/**
 * The tokens a request may use, reserved before any upstream call: the prompt
 * (history trimmed to the largest window it may be sent to) and the largest
 * output budget among the models it may be sent to.
 */
function estimateFor(request: CreateRequest, prepared: PreparedContext, decision: Decision, catalog: Catalog): number {
  const models = [decision.model, ...decision.fallbacks].slice(0, catalog.router.failover.max_attempts);
  const output = Math.max(...models.map((m) => outputBudget(request, m)));
  const window = Math.max(...models.map((m) => m.context_window - outputBudget(request, m)));
  return estimateTokens(Math.min(prepared.fixedTokens + prepared.historyTokens, window), output);
}

/** The longest a request can hold its reservation: every attempt's deadline and the longest upstream call, and a minute. */
const reservationTtl = (catalog: Catalog) =>
  catalog.router.failover.deadline_ms + Math.max(0, ...catalog.providers.map((p) => p.timeouts.total_ms)) + 60_000;

/** How an attempt that reached the client counts for its model's health. */
function healthOutcome(attempt: Attempt) {
  const b = attempt.builder;
  if (b.status === 'failed') return { type: 'failure' as const, timeout: false };
  if (b.incompleteReason === 'client_disconnected') return { type: 'neutral' as const };
  return { type: 'success' as const, latencyMs: (b.firstTokenAt ?? b.completedAt ?? Date.now()) - attempt.startedAt };
}

export const responseRoutes: FastifyPluginAsyncZod<ResponseRouteOptions> = async (app, opts) => {
  const { db, catalog, health } = opts;

  /** Everything a request must pass before any model is called, ending with its token reservation. */
  async function admit(req: FastifyRequest, principal: Principal, body: unknown, windows: { day: Window; month: Window }, now: number) {
    const request = parseCreateRequest(body);
    await checkRequestRate(db, principal, now);
    if (request.projectId !== null) requireFeature(principal, 'projects', 'projects');
    if (request.toolsRequested) requireFeature(principal, 'tools', 'tools');
    if (!hasEnabledModel(catalog)) throw noModel();
    const prepared = await prepareContext(db, principal, request);
    const decision = pick(featuresOf(request, prepared), catalog, health);
    if (decision.model === null) throw unroutable(decision.why, prepared);
    req.log.info({ model: decision.model.id, category: decision.category, reason: decision.reason }, 'routed');
    const reservation = await reserve(db, principal, estimateFor(request, prepared, decision, catalog), windows, now, reservationTtl(catalog));
    return { request, prepared, decision, reservation };
  }

  async function create(req: FastifyRequest, reply: FastifyReply, body: unknown) {
    const principal = principalOf(req);
    const now = opts.now();
    const windows = windowsAt(now);
    let admitted: Awaited<ReturnType<typeof admit>>;
    try {
      admitted = await admit(req, principal, body, windows, now);
    } catch (err) {
      // Every answer of this route carries the quota headers (SPEC.md), refusals before admission too.
      const hasThem = err instanceof ApiError && 'x-ratelimit-limit-tokens' in err.headers;
      if (!hasThem) reply.headers(await snapshotHeaders(db, principal, windows, now).catch(() => ({})));
      throw err;
    }
    const { request, prepared, decision, reservation } = admitted;
    reply.headers(rateHeaders(reservation.states, now));

    // A client that goes away aborts the upstream call at once (SPEC.md).
    const client = new AbortController();
    reply.raw.on('close', () => {
      if (!reply.raw.writableEnded) client.abort(new Error('client disconnected'));
    });

    const outcome = await startWithFailover({ ...opts, log: req.log }, request, prepared, decision, client.signal).catch(async (err: unknown) => {
      await release(db, reservation).catch((e: unknown) => req.log.error({ err: e }, 'could not release a reservation'));
      throw err;
    });
    const save = (attempt: Attempt) =>
      saveResponse(db, {
        builder: attempt.builder,
        principal,
        context: attempt.context,
        projectId: request.projectId,
        instructions: request.instructions,
        reservation,
      });
    if (outcome.type !== 'started') {
      if (outcome.attempt !== undefined) {
        await save(outcome.attempt).catch((e: unknown) => req.log.error({ err: e }, 'could not store a failed response'));
        logFinished(req, outcome.attempt);
      } else {
        await release(db, reservation).catch((e: unknown) => req.log.error({ err: e }, 'could not release a reservation'));
      }
      if (outcome.type === 'gone') return reply.hijack();
      throw outcome.attempt === undefined ? noModel() : upstreamFailure(outcome.error);
    }

    const { attempt, events } = outcome;
    let saving: Promise<void> | undefined;
    const saveOnce = () => (saving ??= save(attempt));
    const finish = () => {
      health.release(attempt.model.id, attempt.model.provider, healthOutcome(attempt));
      logFinished(req, attempt);
    };

    reply.header('x-eugpt-model', attempt.model.id);
    reply.header('x-eugpt-route-category', decision.category);
    if (request.stream) {
      reply.hijack();
      reply.raw.writeHead(200, { ...(reply.getHeaders() as Record<string, string>), ...SSE_HEADERS });
      try {
        await writeEvents(reply.raw, events, {
          keepAliveMs: opts.keepAliveMs,
          beforeTerminal: async (event) => {
            try {
              await saveOnce();
              return event;
            } catch (err) {
              req.log.error({ err }, 'could not store the response');
              return storageFailed(event.sequence_number);
            }
          },
        });
        await saveOnce().catch(() => undefined); // an aborted stream has no terminal event; a failure was logged above
      } finally {
        finish();
      }
      return reply;
    }

    let doc;
    try {
      doc = await collect(events);
    } finally {
      await saveOnce().catch((err: unknown) => {
        req.log.error({ err }, 'could not store the response');
        throw new ApiError(500, 'server_error', 'internal_error', 'the response could not be stored');
      });
      finish();
    }
    if (doc === null) return reply.hijack();
    return reply.send(doc);
  }

  app.post(
    '/responses',
    {
      schema: {
        tags: ['responses'],
        summary: 'Create a response (SSE by default; one JSON document with stream: false)',
        security,
        body: createResponseBody,
        response: { 200: responseObjectSchema, ...errorResponses(400, 401, 403, 404, 413, 502, 503, 504) },
      },
      // The body is parsed by parseCreateRequest, which gives each rejection its own code.
      validatorCompiler: () => (data: unknown) => ({ value: data }),
    },
    async (req, reply) => create(req, reply, req.body),
  );

  app.get(
    '/responses/:id',
    {
      schema: {
        tags: ['responses'],
        summary: 'Retrieve a stored response (its owner only)',
        security,
        params: z.object({ id: uuidParam }),
        response: { 200: responseObjectSchema, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => (await findOwnedResponse(db, req.params.id, principalOf(req).userId)).body,
  );
};
