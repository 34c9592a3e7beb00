import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf } from '../auth/hook.ts';
import type { Db } from '../db/client.ts';
import { ApiError } from '../http/api-error.ts';
import { errorResponses, uuidParam } from '../http/schemas.ts';
import type { Providers } from '../providers/registry.ts';
import { UpstreamError } from '../providers/types.ts';
import { defaultModel, type Catalog } from '../router/catalog.ts';
import { ResponseBuilder } from './builder.ts';
import { collect } from './collect.ts';
import { buildContext } from './context.ts';
import { runResponse } from './engine.ts';
import { noModel, upstreamFailure } from './errors.ts';
import type { ResponseEvent } from './events.ts';
import { parseCreateRequest, createResponseBody, type CreateRequest } from './request.ts';
import { responseObjectSchema } from './schemas.ts';
import { SSE_HEADERS, writeEvents } from './sse.ts';
import { findOwnedResponse, saveResponse } from './store.ts';

export interface ResponseRouteOptions {
  db: Db;
  catalog: Catalog;
  providers: Providers;
  /** Overrides the SSE keep-alive interval (tests). */
  keepAliveMs?: number;
}

const security = [{ apiKey: [] }];

function logUpstreamError(req: FastifyRequest, err: unknown, model: string) {
  if (err instanceof UpstreamError) {
    req.log.warn({ model, kind: err.kind, upstream_status: err.status, error: err.message }, 'upstream failed');
    if (err.detail !== undefined) req.log.debug({ model, upstream_body: err.detail }, 'upstream error body');
  } else {
    req.log.error({ err, model }, 'response failed');
  }
}

/** The stored failure that stands in for a terminal event when the response could not be saved. */
function storageFailed(seq: number): ResponseEvent {
  const error = { type: 'server_error', code: 'internal_error', message: 'the response could not be stored', param: null };
  return { type: 'error', sequence_number: seq, code: error.code, message: error.message, param: null, error };
}

export const responseRoutes: FastifyPluginAsyncZod<ResponseRouteOptions> = async (app, opts) => {
  const { db, catalog, providers } = opts;

  async function create(req: FastifyRequest, reply: FastifyReply, request: CreateRequest) {
    const principal = principalOf(req);
    const model = defaultModel(catalog);
    if (model === undefined) throw noModel();
    const context = await buildContext(db, principal, request, model);

    // A client that goes away aborts the upstream call at once (SPEC.md).
    const controller = new AbortController();
    reply.raw.on('close', () => {
      if (!reply.raw.writableEnded) controller.abort(new Error('client disconnected'));
    });

    const builder = new ResponseBuilder(randomUUID(), Date.now(), model.id, context.conversationId, {
      instructions: request.instructions,
      metadata: request.metadata,
      previousResponseId: request.previousResponseId,
      projectId: request.projectId,
      toolChoice: request.toolChoice,
      parallelToolCalls: request.parallelToolCalls,
      temperature: request.temperature,
      topP: request.topP,
      maxOutputTokens: request.maxOutputTokens,
    });
    let saving: Promise<void> | undefined;
    const save = () =>
      (saving ??= saveResponse(db, { builder, principal, context, projectId: request.projectId, instructions: request.instructions }));
    const finish = () => {
      req.log.info(
        {
          response_id: builder.id,
          model: model.id,
          status: builder.status,
          input_tokens: builder.usage?.inputTokens,
          output_tokens: builder.usage?.outputTokens,
          first_token_ms: builder.firstTokenAt === null ? null : builder.firstTokenAt - builder.createdAt,
          duration_ms: Date.now() - builder.createdAt,
        },
        'response finished',
      );
    };

    const engine = runResponse({
      builder,
      provider: providers.get(model.provider),
      chat: {
        model: model.upstream_model,
        messages: context.messages,
        maxOutputTokens: context.maxOutputTokens,
        temperature: request.temperature ?? undefined,
        topP: request.topP ?? undefined,
        responseFormat: request.responseFormat,
      },
      signal: controller.signal,
      promptTokens: context.promptTokens,
      now: Date.now,
      onUpstreamError: (err) => logUpstreamError(req, err, model.id),
    });

    // The commit point: nothing is sent until the upstream's first event.
    let first: IteratorResult<ResponseEvent>;
    try {
      first = await engine.next();
    } catch (err) {
      await save().catch((e: unknown) => req.log.error({ err: e }, 'could not store a failed response'));
      finish();
      if (controller.signal.aborted) return reply.hijack();
      logUpstreamError(req, err, model.id);
      throw upstreamFailure(err);
    }
    const events = (async function* () {
      if (!first.done) yield first.value;
      yield* engine;
    })();

    reply.header('x-eugpt-model', model.id);
    if (request.stream) {
      reply.hijack();
      reply.raw.writeHead(200, { ...(reply.getHeaders() as Record<string, string>), ...SSE_HEADERS });
      await writeEvents(reply.raw, events, {
        keepAliveMs: opts.keepAliveMs,
        beforeTerminal: async (event) => {
          try {
            await save();
            return event;
          } catch (err) {
            req.log.error({ err }, 'could not store the response');
            return storageFailed(event.sequence_number);
          }
        },
      });
      await save().catch(() => undefined); // an aborted stream has no terminal event; already logged otherwise
      finish();
      return reply;
    }

    let doc;
    try {
      doc = await collect(events);
    } finally {
      await save().catch((err: unknown) => {
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
    async (req, reply) => create(req, reply, parseCreateRequest(req.body)),
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
