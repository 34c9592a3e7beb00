import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { recordHttp, routeLabel } from './metrics.ts';
import { tracer } from './tracing.ts';

/**
 * Every request is counted and timed when its answer ends (a whole stream
 * for SSE, or when the client leaves), labelled by its route template. With
 * tracing on, it also gets a server span (a child of the caller's
 * `traceparent` when it sends one), made the active context of its handler
 * so that the spans below it (admission, model and tool calls, storage) hang
 * from it.
 */

const contexts = new WeakMap<FastifyRequest, Context>();

export function observeRequests(app: FastifyInstance, opts: { tracing: boolean }): void {
  app.addHook('onRequest', (req, reply, done) => {
    const route = routeLabel(req.routeOptions.url);
    let span: Span | undefined;
    if (opts.tracing) {
      const parent = propagation.extract(ROOT_CONTEXT, req.headers);
      const attributes = { 'http.request.method': req.method, 'http.route': route };
      span = tracer.startSpan(`${req.method} ${route}`, { kind: SpanKind.SERVER, attributes }, parent);
      contexts.set(req, trace.setSpan(parent, span));
    }
    reply.raw.once('close', () => {
      const status = reply.raw.headersSent ? reply.raw.statusCode : 499;
      recordHttp(route, req.method, status, reply.elapsedTime / 1000);
      if (span === undefined) return;
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    });
    done();
  });
  if (!opts.tracing) return;
  // Handlers run inside their request's span: the async context carries it into every call they make.
  app.addHook('onRoute', (route) => {
    const handler = route.handler;
    route.handler = function (this: FastifyInstance, req, reply) {
      const ctx = contexts.get(req);
      return ctx === undefined ? handler.call(this, req, reply) : context.with(ctx, () => handler.call(this, req, reply));
    };
  });
}
