import { context, INVALID_SPAN_CONTEXT, propagation, trace, type Attributes, type Context, type Link, type Span, SpanStatusCode } from '@opentelemetry/api';
import type { TracingConfig } from './config.ts';

/**
 * OpenTelemetry traces. The API is always loaded and does nothing until a
 * provider is registered; the SDK and the exporter are loaded only when an
 * endpoint is configured. Spans carry ids, names, counts and outcomes, never
 * a prompt, an answer, a tool's arguments or a key.
 */

export const tracer = trace.getTracer('eugpt');

let enabled = false;

/** Whether spans are being recorded and sent (startTracing ran with an endpoint). */
export const tracingOn = () => enabled;

export interface Tracing {
  /** Sends the spans ended so far. */
  flush(): Promise<void>;
  /** Sends what is left and stops recording. */
  shutdown(): Promise<void>;
}

/**
 * Registers the SDK as the process's tracer provider: spans are batched and
 * sent as OTLP/HTTP JSON to `config.url`; the W3C `traceparent` and baggage
 * headers are read. The sampler comes from OTEL_TRACES_SAMPLER (default:
 * parent-based, always on). Returns null when tracing is off.
 */
export async function startTracing(config: TracingConfig, version = '0.1.0'): Promise<Tracing | null> {
  if (config.url === undefined) return null;
  const [{ NodeTracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { defaultResource, detectResources, envDetector, resourceFromAttributes }, semconv] =
    await Promise.all([
      import('@opentelemetry/sdk-trace-node'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
      import('@opentelemetry/semantic-conventions'),
    ]);
  const resource = defaultResource()
    .merge(detectResources({ detectors: [envDetector] }))
    .merge(resourceFromAttributes({ [semconv.ATTR_SERVICE_NAME]: config.serviceName, [semconv.ATTR_SERVICE_VERSION]: version }));
  const provider = new NodeTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: config.url }))] });
  provider.register();
  enabled = true;
  return {
    flush: () => provider.forceFlush(),
    async shutdown() {
      enabled = false;
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

/** A span under the active one (the request's, through async context). */
export function startSpan(name: string, attributes?: Attributes, links?: Link[], parent: Context = context.active()): Span {
  return tracer.startSpan(name, { attributes, links }, parent);
}

/** Ends a span with an error status named by a short code (never an error's message, which may quote content). */
export function endWithError(span: Span, code: string): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: code });
  span.end();
}

/** Runs `fn` in a span of its own, ended when it settles; a throw marks the span as failed with the error's name. */
export async function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  if (!enabled) return fn(trace.wrapSpanContext(INVALID_SPAN_CONTEXT));
  const span = startSpan(name, attributes);
  try {
    const result = await context.with(trace.setSpan(context.active(), span), () => fn(span));
    span.end();
    return result;
  } catch (err) {
    endWithError(span, errorCode(err));
    throw err;
  }
}

/** An error's code when it is one of ours (a short word), else its class name. */
export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^[\w.-]{1,64}$/.test(code)) return code;
  return err instanceof Error ? err.name : 'error';
}
