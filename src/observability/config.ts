import { z } from 'zod';

/**
 * Settings of metrics and traces. Metrics use our own variables; traces use
 * the standard OpenTelemetry ones, so a collector set up for other services
 * works here unchanged.
 */

const port = z
  .string()
  .regex(/^\d+$/, { error: 'must be a whole number' })
  .transform(Number)
  .pipe(z.number().int().min(0).max(65535));

const url = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });

export const observabilityEnv = {
  EUGPT_METRICS_TOKEN: z
    .string()
    .min(16, { error: 'must be at least 16 characters (use e.g. `openssl rand -hex 32`)' })
    .optional(),
  EUGPT_METRICS_PORT: port.optional(),
  EUGPT_METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  OTEL_SDK_DISABLED: z.enum(['true', 'false'], { error: 'must be true or false' }).optional(),
  OTEL_TRACES_EXPORTER: z.enum(['otlp', 'none'], { error: 'must be otlp or none (the only exporters this server has)' }).optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: url.optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: url.optional(),
  OTEL_SERVICE_NAME: z.string().min(1).max(256).default('eugpt'),
};

type ObservabilityEnv = z.output<z.ZodObject<typeof observabilityEnv>>;

export interface MetricsConfig {
  /** Bearer token of `GET /metrics` on the main port; absent: not served there. */
  token: string | undefined;
  /** A port of its own, without a token; absent: none. */
  port: number | undefined;
  host: string;
}

export interface TracingConfig {
  /** Where spans are sent (OTLP over HTTP, JSON); absent: tracing is off. */
  url: string | undefined;
  serviceName: string;
}

export interface ObservabilityConfig {
  metrics: MetricsConfig;
  tracing: TracingConfig;
}

/** The traces endpoint: the signal's own variable as it is, or the general one with `/v1/traces` added. */
function tracesUrl(e: ObservabilityEnv): string | undefined {
  if (e.OTEL_SDK_DISABLED === 'true' || e.OTEL_TRACES_EXPORTER === 'none') return undefined;
  if (e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT !== undefined) return e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (e.OTEL_EXPORTER_OTLP_ENDPOINT === undefined) return undefined;
  return `${e.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces`;
}

export function observabilityFrom(e: ObservabilityEnv): ObservabilityConfig {
  return {
    metrics: { token: e.EUGPT_METRICS_TOKEN, port: e.EUGPT_METRICS_PORT, host: e.EUGPT_METRICS_HOST },
    tracing: { url: tracesUrl(e), serviceName: e.OTEL_SERVICE_NAME },
  };
}
