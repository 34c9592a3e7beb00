import { z } from 'zod';

/**
 * Providers and models, from the `EUGPT_CONFIG` file. A model is what clients
 * see in `model`; its provider is the upstream server that runs it.
 */

const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/, {
  error: 'must be 1-100 letters, digits, dots, dashes, colons or underscores',
});
const ms = (def: number) => z.number().int().min(1).max(3_600_000).default(def);

export const timeoutsSchema = z
  .strictObject({
    /** TCP/TLS connect. */
    connect_ms: ms(10_000),
    /** From sending the request to the first streamed event (prompt processing included). */
    first_byte_ms: ms(120_000),
    /** The longest silence between two streamed chunks. */
    idle_ms: ms(60_000),
    /** The whole upstream call. */
    total_ms: ms(600_000),
  })
  .prefault({});

export const providerSchema = z.strictObject({
  id,
  type: z.enum(['openai-compatible', 'anthropic']),
  base_url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
  /** Name of the environment variable that holds the API key; the key itself never sits in the file. */
  api_key_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
  headers: z.record(z.string(), z.string()).default({}),
  timeouts: timeoutsSchema,
  /**
   * Upstream connections per provider, which is also how many answers it can
   * stream at once: a streamed answer holds its connection to the end.
   */
  max_connections: z.number().int().min(1).max(10_000).default(512),
  /** How long a request may wait for a free connection before it is refused as `upstream_saturated`. */
  queue_timeout_ms: z.number().int().min(1).max(600_000).default(5_000),
  /** Requests in flight to this provider at most; past it the router uses another model. */
  max_concurrency: z.number().int().min(1).max(100_000).optional(),
});

export const CAPABILITIES = ['tools', 'vision', 'json'] as const;
export type Capability = (typeof CAPABILITIES)[number];

export const modelSchema = z.strictObject({
  id,
  provider: id,
  upstream_model: z.string().min(1),
  categories: z.array(z.string().min(1)).min(1).default(['general']),
  context_window: z.number().int().min(256).default(8192),
  max_output_tokens: z.number().int().min(1).default(4096),
  price: z.strictObject({ input: z.number().min(0), output: z.number().min(0) }).default({ input: 0, output: 0 }),
  capabilities: z.array(z.enum(CAPABILITIES)).default([]),
  enabled: z.boolean().default(true),
  /** Where the model runs, as an ISO 3166-1 alpha-2 code (DE, FR…): organisations with a residency policy only use models it allows. */
  country: z
    .string()
    .regex(/^[A-Z]{2}$/, { error: 'must be a two-letter country code in capitals, such as DE' })
    .optional(),
  /** Preference among otherwise equal models (higher wins). */
  weight: z.number().min(0).max(1000).default(1),
});

const positive = (def: number, max: number) => z.number().int().min(1).max(max).default(def);

/** Router settings; every threshold of classify() and the breaker/failover bounds. */
export const routerSchema = z
  .strictObject({
    /** Prompt (input + history) up to this many tokens, with no other signal, is `fast`. */
    fast_max_tokens: positive(100, 1_000_000),
    /** Prompt above this many tokens is `long-context`. */
    long_context_tokens: positive(24_000, 10_000_000),
    /** Reasoning cues needed to call a request `reasoning`. */
    reasoning_min_cues: positive(2, 100),
    /** Output tokens assumed when comparing costs. */
    expected_output_tokens: positive(500, 1_000_000),
    breaker: z
      .strictObject({
        failures: positive(3, 1000),
        cooldown_ms: z.number().int().min(1_000).max(600_000).default(30_000),
        max_cooldown_ms: z.number().int().min(1_000).max(3_600_000).default(120_000),
        /** How long a model rests after an upstream 429 that sent no usable `retry-after`. */
        rate_limit_cooldown_ms: z.number().int().min(0).max(3_600_000).default(5_000),
        /** The longest rest an upstream's `retry-after` can impose. */
        max_rate_limit_cooldown_ms: z.number().int().min(0).max(3_600_000).default(60_000),
      })
      .prefault({}),
    failover: z
      .strictObject({
        max_attempts: positive(3, 20),
        /** Overall time for all attempts before the first token. */
        deadline_ms: positive(60_000, 3_600_000),
      })
      .prefault({}),
  })
  .prefault({});

export type RouterSettings = z.infer<typeof routerSchema>;

export const catalogSchema = {
  providers: z.array(providerSchema).default([]),
  models: z.array(modelSchema).default([]),
  router: routerSchema,
};

export type ProviderConfig = z.infer<typeof providerSchema> & { apiKey: string | undefined };
export type ModelConfig = z.infer<typeof modelSchema>;

export interface Catalog {
  providers: ProviderConfig[];
  models: ModelConfig[];
  router: RouterSettings;
}

/** Cross-entry checks, each message naming the entry at fault. */
export function checkCatalog(catalog: { providers: z.infer<typeof providerSchema>[]; models: ModelConfig[]; router?: RouterSettings }): string[] {
  const problems: string[] = [];
  const providerIds = new Set<string>();
  catalog.providers.forEach((p, i) => {
    if (providerIds.has(p.id)) problems.push(`providers[${i}] (${p.id}): duplicate provider id`);
    providerIds.add(p.id);
  });
  const modelIds = new Set<string>();
  catalog.models.forEach((m, i) => {
    if (m.id === 'auto') problems.push(`models[${i}]: "auto" is reserved for the router`);
    if (modelIds.has(m.id)) problems.push(`models[${i}] (${m.id}): duplicate model id`);
    modelIds.add(m.id);
    if (!providerIds.has(m.provider)) problems.push(`models[${i}] (${m.id}): provider "${m.provider}" is not defined under providers`);
    if (m.max_output_tokens >= m.context_window) {
      problems.push(`models[${i}] (${m.id}): max_output_tokens must be smaller than context_window`);
    }
  });
  const r = catalog.router;
  if (r !== undefined && r.breaker.max_cooldown_ms < r.breaker.cooldown_ms) {
    problems.push('router.breaker: max_cooldown_ms must be at least cooldown_ms');
  }
  if (r !== undefined && r.breaker.max_rate_limit_cooldown_ms < r.breaker.rate_limit_cooldown_ms) {
    problems.push('router.breaker: max_rate_limit_cooldown_ms must be at least rate_limit_cooldown_ms');
  }
  return problems;
}

/** Whether any model can answer; the router picks among the enabled ones. */
export function hasEnabledModel(catalog: Catalog): boolean {
  return catalog.models.some((m) => m.enabled);
}
