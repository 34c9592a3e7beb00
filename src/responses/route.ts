import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf } from '../auth/hook.ts';
import type { Principal } from '../auth/key-auth.ts';
import type { Db } from '../db/client.ts';
import { ApiError, notFound } from '../http/api-error.ts';
import { isForeignKeyViolation } from '../db/errors.ts';
import { toApiError } from '../http/errors.ts';
import { errorResponses } from '../http/schemas.ts';
import { storableString } from '../http/text.ts';
import type { Providers } from '../providers/registry.ts';
import type { ChatMessage } from '../providers/types.ts';
import { hasEnabledModel, type Catalog, type ModelConfig } from '../router/catalog.ts';
import type { RequestFeatures } from '../router/classify.ts';
import type { HealthTable } from '../router/health.ts';
import { pick, type Decision } from '../router/pick.ts';
import { allowedCountries } from '../router/residency.ts';
import { requireFeature } from '../limits/policy.ts';
import { estimateTokens, extendReservation, limitedWindows, rateHeaders, snapshotHeaders } from '../limits/quota.ts';
import { checkRequestRate } from '../limits/rate.ts';
import { windowsAt, type Window } from '../limits/windows.ts';
import type { BuiltinTool, Toolbox } from '../tools/registry.ts';
import type { ImageSources } from '../images/load.ts';
import { addProjectPassages, fileSearchBuiltin, passageBudget, ProjectSources, type ProjectsRuntime } from '../projects/prompt.ts';
import { openCall, type CallBuilder, type CallOutcome } from './attempts.ts';
import { echoOf, ResponseBuilder } from './builder.ts';
import { collect } from './collect.ts';
import { contextFor, outputBudget, prepareContext, type PreparedContext } from './context.ts';
import { partText } from './input-items.ts';
import { runResponse, type NextCall } from './engine.ts';
import { logFinished, noModel, unroutable, upstreamFailure } from './errors.ts';
import type { ResponseEvent } from './events.ts';
import { createResponseBody, parseCreateRequest, type CreateRequest } from './request.ts';
import { responseObjectSchema } from './schemas.ts';
import type { Cancels } from './cancels.ts';
import type { Summariser } from '../conversations/summary.ts';
import type { Recovery } from './recovery.ts';
import { streamsByDefault } from './negotiate.ts';
import { hasTools, noTools, specsOf, toolsFor, type ResponseTools } from './toolset.ts';
import { endWith, SSE_HEADERS, waitForFirst, writeEvents } from './sse.ts';
import { findOwnedResponse, finishRecord, releaseRecord, startRecord } from './store.ts';
import type { ResponseWriter } from './writer.ts';
import { recordFirstToken, recordResponse } from '../observability/metrics.ts';
import { inSpan } from '../observability/tracing.ts';

export interface ResponseRouteOptions {
  db: Db;
  catalog: Catalog;
  providers: Providers;
  health: HealthTable;
  writer: ResponseWriter;
  recovery: Recovery;
  toolbox: Toolbox;
  /** Retrieval over a project's documents, for requests with a project_id. */
  projects: ProjectsRuntime;
  /** Responses running here, for POST /v1/responses/{id}/cancel. */
  cancels: Cancels;
  /** Catches a conversation's summary up when its history overflowed a model's window. */
  summaries: Summariser;
  /** Where `input_image` parts are read from: the blob store, the guarded fetcher, their limits. */
  images: ImageSources;
  /** Aborts when the shutdown grace period is over: streams still running end with `server_shutting_down`. */
  shutdown: AbortSignal;
  /** How long a finished response may wait for its write before the client is told it could not be stored (it stays queued). */
  storeWaitMs: number;
  /** Whether a request without `stream` streams, unless its Accept or client says otherwise (negotiate.ts). */
  streamDefault: boolean;
  /** The clock of quota windows and trials (tests move it). */
  now: () => number;
  /** A comment on a stream silent this long (EUGPT_SSE_KEEPALIVE_MS); 0: never. */
  keepAliveMs: number;
}

const security = [{ apiKey: [] }];

function terminalError(seq: number, type: string, code: string, message: string): ResponseEvent {
  const error = { type, code, message, param: null };
  return { type: 'error', sequence_number: seq, code, message, param: null, error };
}

const SHUTTING_DOWN = 'the server is shutting down; the partial answer is kept';

/** The error behind an abort at the end of the shutdown grace period. */
class ShutdownAbort extends Error {
  override name = 'ShutdownAbort';
}

/** The error behind an abort by POST /v1/responses/{id}/cancel. */
class CancelAbort extends Error {
  override name = 'CancelAbort';
}

/** The router's view of a request: cheap signals only. */
function featuresOf(request: CreateRequest, prepared: PreparedContext, tools: ResponseTools, allowedCountries: ReadonlySet<string> | null): RequestFeatures {
  return {
    promptTokens: prepared.fixedTokens + prepared.historyTokens,
    // Files' text can give way to excerpts (context.ts): only a part of it is required.
    requiredTokens: prepared.fixedTokens - prepared.shrinkableTokens,
    inputText: request.input.flatMap((m) => (m.type === 'message' && m.role === 'user' ? m.content.map(partText) : [])).join('\n'),
    retrieval: request.projectId !== null,
    reasoningEffort: request.reasoningEffort,
    // Tools the client asked for need a model that can call them; the default catalogue goes only to models that can.
    needs: [
      ...(request.responseFormat === undefined ? [] : (['json'] as const)),
      ...(request.toolSet.asked && hasTools(tools) ? (['tools'] as const) : []),
      // Images in the input only go to a model that can see them.
      ...(prepared.hasImages ? (['vision'] as const) : []),
    ],
    maxOutputTokens: request.maxOutputTokens,
    allowedCountries,
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

/**
 * The router's pick. A conversation whose history holds images prefers a
 * model that can see them; when none fits, another model takes it and reads
 * notes in the images' place.
 */
function pickFor(features: RequestFeatures, prepared: PreparedContext, catalog: Catalog, health: HealthTable) {
  if (prepared.historyImages && !features.needs.includes('vision')) {
    const seeing = pick({ ...features, needs: [...features.needs, 'vision'] }, catalog, health);
    if (seeing.model !== null) return seeing;
  }
  return pick(features, catalog, health);
}

/** Models that can read tool calls in their prompt. */
const toolCapable = (models: ModelConfig[]) => models.filter((m) => m.capabilities.includes('tools'));

/** What became of a finished response's write, as far as its client is concerned. */
type Stored = 'stored' | 'bare' | 'late' | 'failed';

/** A slow write on a working database is waited for up to this many times the store wait. */
const SLOW_WRITE_FACTOR = 6;

/**
 * Waits for the write. After `ms` the client is told `late` (the write goes
 * on) if the database is failing the writes; while it works and the write is
 * only queued behind others (a saturated server), the wait goes on, up to
 * SLOW_WRITE_FACTOR × `ms`: a client is better served by its answer a few
 * seconds late than by an error for a response that is stored moments later.
 */
async function within(promise: Promise<'stored' | 'bare'>, ms: number, failing: () => boolean): Promise<Stored> {
  const settled = promise.catch(() => 'failed' as const);
  const bound = SLOW_WRITE_FACTOR * ms;
  let waited = 0;
  for (let wait = ms; ; wait = Math.min(ms, 1_000, bound - waited)) {
    const how = await settledWithin(settled, wait);
    waited += wait;
    if (how !== 'late' || failing() || waited >= bound) return how;
  }
}

/** `promise`'s value, or `late` if it takes longer than `ms`. */
async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | 'late'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

const LATE = 'the response could not be stored in time: it is kept, and is stored as soon as the database allows';

/** The terminal event that replaces `response.completed` when the response was not stored as it is. */
function notStored(how: Stored, seq: number): ResponseEvent {
  if (how === 'late') return terminalError(seq, 'server_error', 'storage_unavailable', LATE);
  return terminalError(seq, 'server_error', 'storage_failed', 'the response could not be stored');
}

function notStoredError(how: Stored): ApiError {
  if (how === 'late') {
    return new ApiError(503, 'server_error', 'storage_unavailable', LATE, null, {
      'retry-after': '1',
    });
  }
  return new ApiError(500, 'server_error', 'storage_failed', 'the response could not be stored');
}

export const responseRoutes: FastifyPluginAsyncZod<ResponseRouteOptions> = async (app, opts) => {
  const { db, catalog, health, writer, recovery, toolbox } = opts;

  /**
   * Everything a request must pass before any model is called, ending with
   * one write: its token reservation and its in-progress row.
   */
  async function admit(req: FastifyRequest, principal: Principal, body: unknown, windows: { day: Window; month: Window }, now: number) {
    const request = parseCreateRequest(body, streamsByDefault(req.headers, opts.streamDefault));
    await checkRequestRate(db, principal, now);
    if (request.projectId !== null) requireFeature(principal, 'projects', 'projects');
    // A request with a project searches its documents: passages in the prompt, and file_search for the model.
    const sources = request.projectId === null ? undefined : new ProjectSources();
    const extra: BuiltinTool[] =
      sources === undefined
        ? []
        : [fileSearchBuiltin(opts.projects, request.projectId!, sources, passageBudget(opts.projects.config, catalog.models.filter((m) => m.enabled)))];
    let tools = toolsFor(request.toolSet, principal, toolbox, extra);
    if (!hasEnabledModel(catalog)) throw noModel();
    const prepared = await prepareContext(db, principal, request, opts.images);
    const residency = principal.policy.residency;
    const features = featuresOf(request, prepared, tools, allowedCountries(residency));
    const decision = pickFor(features, prepared, catalog, health);
    if (decision.model === null) throw unroutable(catalog, features, residency, prepared);
    // The default catalogue is offered only where the chosen model can call tools.
    if (!request.toolSet.asked && !decision.model.capabilities.includes('tools')) tools = noTools(tools);
    req.log.info({ model: decision.model.id, category: decision.category, reason: decision.reason }, 'routed');
    if (sources !== undefined) {
      const searchable = tools.builtins.some((b) => b.tool.name === 'file_search');
      await addProjectPassages(opts.projects, prepared, request.projectId!, sources, passageBudget(opts.projects.config, [decision.model, ...decision.fallbacks]), searchable);
    }

    const identity = { id: randomUUID(), createdAt: now };
    const limited = limitedWindows(principal, windows);
    const estimate = estimateFor(request, prepared, decision, catalog);
    const ask =
      limited.length === 0
        ? null
        : // A tool loop holds its reservation across its steps.
          { id: randomUUID(), estimate, windows, limited, expiresAt: new Date(now + reservationTtl(catalog) * (hasTools(tools) ? toolbox.maxSteps : 1)), now };
    const builder = new ResponseBuilder(identity.id, identity.createdAt, decision.model.id, prepared.conversationId, echoOf(request));
    builder.projectSources = sources;
    const start = startRecord({
      responseId: identity.id,
      instanceId: recovery.instanceId,
      principal,
      request,
      prepared,
      model: decision.model.id,
      body: builder.snapshot(),
      reservationId: ask?.id ?? null,
      windows,
    });
    const result = await writer.admit(ask, start).catch((err: unknown) => {
      // The conversation (or project) was deleted between the checks above and this write.
      if (isForeignKeyViolation(err) && prepared.existing !== null) throw notFound('conversation_not_found', `conversation ${prepared.existing} not found`);
      if (isForeignKeyViolation(err) && request.projectId !== null) throw notFound('project_not_found', `project ${request.projectId} not found`);
      throw err;
    });
    if (!result.admitted) throw result.refusal;
    return { request, prepared, decision, reservation: { ...result.reservation, windows }, identity, tools, builder };
  }

  async function create(req: FastifyRequest, reply: FastifyReply, body: unknown) {
    const principal = principalOf(req);
    const now = opts.now();
    const windows = windowsAt(now);
    let admitted: Awaited<ReturnType<typeof admit>>;
    try {
      admitted = await inSpan('response.admit', {}, async (span) => {
        const a = await admit(req, principal, body, windows, now);
        span.setAttributes({ 'eugpt.model': a.decision.model.id, 'eugpt.route.category': a.decision.category, 'eugpt.stream': a.request.stream });
        return a;
      });
    } catch (err) {
      // Every answer of this route carries the quota headers, refusals before admission too.
      const hasThem = err instanceof ApiError && 'x-ratelimit-limit-tokens' in err.headers;
      if (!hasThem) reply.headers(await snapshotHeaders(db, principal, windows, now).catch(() => ({})));
      throw err;
    }
    const { request, prepared, decision, reservation, identity, tools, builder } = admitted;
    reply.headers(rateHeaders(reservation.states, now));

    // A client that goes away aborts the upstream call at once; so does the end of the shutdown grace period.
    const client = new AbortController();
    reply.raw.on('close', () => {
      if (!reply.raw.writableEnded) client.abort(new Error('client disconnected'));
    });
    const onShutdown = () => client.abort(new ShutdownAbort(SHUTTING_DOWN));
    if (opts.shutdown.aborted) onShutdown();
    else opts.shutdown.addEventListener('abort', onShutdown, { once: true });
    const stoppedByShutdown = () => client.signal.reason instanceof ShutdownAbort;
    const stoppedByCancel = () => client.signal.reason instanceof CancelAbort;
    opts.cancels.register(identity.id, () => client.abort(new CancelAbort('cancelled')));
    const unregister = () => {
      opts.shutdown.removeEventListener('abort', onShutdown);
      opts.cancels.unregister(identity.id);
    };

    const release = () =>
      writer.release(releaseRecord(identity.id, prepared, reservation)).catch((e: unknown) => req.log.error({ err: e }, 'could not release an admission'));

    // The history this response left out that no summary covers: the summary catches up once the response is stored.
    let overflow: number | undefined;
    /** The upstream request of one step on one model: the prompt that fits it, and what this response added. */
    const callFor =
      (added: { messages: ChatMessage[]; tokens: number }, withTools: boolean, first: boolean): CallBuilder =>
      async (model) => {
        const context = await contextFor(db, prepared, request, model, added.tokens);
        if (context.overflow !== undefined) overflow = Math.min(overflow ?? Infinity, context.overflow);
        if (context.excerpts !== undefined) {
          req.log.info({ model: model.id, kept: context.excerpts.kept, passages: context.excerpts.total }, "files' text did not fit the model: excerpts selected");
        }
        // Tools stay defined on a step that may not call them (the last one): upstreams refuse tool history without them.
        const offer = hasTools(tools) && model.capabilities.includes('tools');
        const choice = withTools ? (first ? tools.firstChoice : undefined) : 'none';
        return {
          model: model.upstream_model,
          messages: [...context.messages, ...added.messages],
          maxOutputTokens: context.maxOutputTokens,
          temperature: request.temperature ?? undefined,
          topP: request.topP ?? undefined,
          responseFormat: request.responseFormat,
          ...(offer ? { tools: specsOf(tools), toolChoice: choice, parallelToolCalls: tools.parallel } : {}),
          promptTokens: context.promptTokens + added.tokens,
        };
      };
    const candidates = [decision.model, ...decision.fallbacks];
    const firstWithTools = hasTools(tools) && toolbox.maxSteps > 1;
    const callDeps = { ...opts, log: req.log };
    // A stream whose model is slow to start sends its headers and comments meanwhile, so proxies keep it open.
    const startSse = () => {
      reply.hijack();
      reply.raw.writeHead(200, { ...(reply.getHeaders() as Record<string, string>), ...SSE_HEADERS });
    };
    const waiting = request.stream ? waitForFirst(reply.raw, opts.keepAliveMs, startSse) : null;
    /** Once the headers are out, an error before the first event is the stream's one event, not an HTTP status. */
    const failStream = async (err: unknown) => {
      if (reply.raw.destroyed || reply.raw.writableEnded) return reply;
      const api = toApiError(err);
      if (api.status >= 500 && !(err instanceof ApiError)) req.log.error({ err }, 'response failed before its first event');
      await endWith(reply.raw, terminalError(0, api.type, api.code, api.message));
      return reply;
    };
    let first: CallOutcome;
    try {
      // Every candidate may take the first call: the router already kept to capable models when tools were asked for.
      first = await openCall(callDeps, candidates, callFor({ messages: [], tokens: 0 }, firstWithTools, true), client.signal);
    } catch (err) {
      waiting?.stop();
      unregister();
      await release();
      if (waiting?.committed === true) return failStream(err);
      throw err;
    }
    waiting?.stop();
    const committed = waiting?.committed === true;

    /** Later steps: the model of the step before first, then the other candidates; a reservation grows for each call. */
    let lastModel = decision.model;
    const next: NextCall = async ({ messages, tokens, withTools }) => {
      const all = [lastModel, ...candidates.filter((m) => m.id !== lastModel.id)];
      // A step in a tool loop goes to models that can read tool calls, when there are any.
      const capable = toolCapable(all);
      const order = capable.length > 0 ? capable : all;
      if (reservation.id !== null) {
        // The prompt as sent: history gives way to the window, so it never counts past the largest one.
        const window = Math.max(...order.map((m) => m.context_window - outputBudget(request, m)));
        const prompt = Math.min(prepared.fixedTokens + prepared.historyTokens + tokens, window);
        const estimate = estimateTokens(prompt, Math.max(...order.map((m) => outputBudget(request, m))));
        if (!(await extendReservation(db, reservation, estimate, opts.now()))) return { type: 'refused', reason: 'token_limit' };
      }
      try {
        const opened = await openCall(callDeps, order, callFor({ messages, tokens }, withTools, false), client.signal);
        if (opened.type === 'started') lastModel = opened.call.model;
        return opened;
      } catch (err) {
        // The tool results no longer fit any window: the response ends with what it has.
        if (err instanceof ApiError && err.code === 'context_length_exceeded') return { type: 'refused', reason: 'max_context_length' };
        throw err;
      }
    };

    /** Gives a response cut by the shutdown or a cancel its own outcome (the engine saw only an abort). */
    const markStopped = () => {
      if (builder.status === 'completed' || builder.status === 'failed') return;
      if (stoppedByCancel()) {
        builder.incompleteReason = 'cancelled';
        return;
      }
      if (!stoppedByShutdown()) return;
      builder.status = 'failed';
      builder.incompleteReason = null;
      builder.error = { code: 'server_shutting_down', message: SHUTTING_DOWN };
    };
    const store = async (): Promise<Stored> => {
      markStopped();
      const saving = inSpan('response.store', { 'eugpt.status': builder.status }, () => writer.finish(finishRecord(builder, prepared, principal, request, reservation)));
      saving.then(
        (how) => {
          // Off the response's path: the summary is for the requests after this one.
          if (how === 'stored' && overflow !== undefined && request.store && prepared.existing !== null) {
            opts.summaries.request(prepared.conversationId, principal, overflow);
          }
        },
        (err: unknown) => req.log.error({ err, response_id: builder.id, usage: builder.usage }, 'could not store the response; its usage is not counted'),
      );
      // Past the shutdown grace period the process has no time to wait out a slow write either.
      return within(saving, opts.storeWaitMs, () => writer.failing || opts.shutdown.aborted);
    };

    if (first.type !== 'started') {
      unregister();
      if (first.type === 'failed' && first.error === undefined) {
        await release(); // no model could even be tried
      } else {
        // An upstream that failed before sending anything produced nothing to count.
        builder.usage = { inputTokens: 0, outputTokens: 0, cachedTokens: 0, reasoningTokens: 0 };
        if (first.type === 'gone') builder.incompleteReason = 'client_disconnected';
        else builder.error = { code: 'upstream_error', message: 'the model server could not answer' };
        builder.finish(first.type === 'gone' ? 'incomplete' : 'failed', opts.now());
        await store();
        logFinished(req, builder);
        recordResponse(builder.model, builder.status, request.stream, reply.elapsedTime / 1000);
      }
      let failure: ApiError;
      if (first.type === 'gone') {
        if (stoppedByCancel()) {
          failure = new ApiError(409, 'invalid_request_error', 'response_cancelled', 'the response was cancelled before the model answered');
        } else if (stoppedByShutdown()) {
          failure = new ApiError(503, 'server_error', 'server_shutting_down', 'the server is shutting down; try again', null, { 'retry-after': '1' });
        } else {
          if (committed) reply.raw.destroy();
          return committed ? reply : reply.hijack();
        }
      } else {
        failure = first.error === undefined ? noModel() : upstreamFailure(first.error);
      }
      if (committed) return failStream(failure);
      throw failure;
    }

    lastModel = first.call.model;
    const events = runResponse({
      files: prepared.files,
      sources: builder.projectSources,
      builder,
      first: first.call,
      next,
      tools,
      maxSteps: toolbox.maxSteps,
      maxToolOutputChars: toolbox.maxOutputChars,
      signal: client.signal,
      clientGone: () => client.signal.aborted,
      routing: request.includeRouting ? { model_id: first.call.model.id, category: decision.category, reason: decision.reason } : undefined,
      now: opts.now,
      log: req.log,
      onFirstDelta: () => recordFirstToken(builder.model, request.stream, reply.elapsedTime / 1000),
    });
    recovery.track(builder, request.store);
    let stored: Promise<Stored> | undefined;
    const storeOnce = () => (stored ??= store());
    const finish = () => {
      unregister();
      recovery.untrack(builder.id);
      logFinished(req, builder);
      recordResponse(builder.model, builder.status, request.stream, reply.elapsedTime / 1000);
    };

    reply.header('x-eugpt-model', first.call.model.id);
    if (first.call.model.country !== undefined) reply.header('x-eugpt-model-country', first.call.model.country);
    reply.header('x-eugpt-route-category', decision.category);
    if (request.stream) {
      if (!committed) startSse();
      try {
        const written = await writeEvents(reply.raw, events, {
          keepAliveMs: opts.keepAliveMs,
          beforeTerminal: async (event) => {
            const how = await storeOnce();
            return how === 'stored' ? event : notStored(how, event.sequence_number);
          },
        });
        if (!written.terminal && stoppedByCancel()) {
          // A cancelled stream ends as an incomplete response, after it is stored.
          const how = await storeOnce();
          const response = builder.snapshot();
          const event: ResponseEvent =
            how === 'stored' ? { type: 'response.completed', sequence_number: written.nextSeq, response, final_text: response.output_text } : notStored(how, written.nextSeq);
          await endWith(reply.raw, event);
        } else if (!written.terminal && stoppedByShutdown()) {
          // The stream was cut by the shutdown: it still ends with a terminal event, after the response is stored.
          const how = await storeOnce();
          const event = how === 'stored' ? terminalError(written.nextSeq, 'server_error', 'server_shutting_down', SHUTTING_DOWN) : notStored(how, written.nextSeq);
          await endWith(reply.raw, event);
        } else {
          await storeOnce(); // a stream the client left has no terminal event; a failure was logged
        }
      } finally {
        // Whatever ended the stream, the response is stored and counted.
        await storeOnce();
        if (!reply.raw.writableEnded && !reply.raw.destroyed) reply.raw.end();
        finish();
      }
      return reply;
    }

    let doc;
    try {
      doc = await collect(events);
    } catch (err) {
      await storeOnce();
      throw err;
    } finally {
      finish();
    }
    const how = await storeOnce();
    if (doc === null && stoppedByCancel()) {
      if (how !== 'stored') throw notStoredError(how);
      return reply.send(builder.snapshot());
    }
    if (doc === null) {
      if (!stoppedByShutdown()) return reply.hijack();
      throw new ApiError(503, 'server_error', 'server_shutting_down', SHUTTING_DOWN, null, { 'retry-after': '1' });
    }
    if (how !== 'stored') throw notStoredError(how);
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
        params: z.object({ id: storableString().min(1).max(128) }),
        response: { 200: responseObjectSchema, ...errorResponses(401, 404) },
      },
    },
    async (req) => (await findOwnedResponse(db, req.params.id, principalOf(req).userId)).body,
  );
};
