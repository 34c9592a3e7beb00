import { z } from 'zod';

/** The `tools` section of the config file: which built-in tools run and within which bounds. See docs/tools.md. */

const ms = (def: number) => z.number().int().min(100).max(600_000).default(def);

export const webSearchSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    /**
     * searxng: a self-hosted SearXNG's JSON API (needs `base_url`); brave: the
     * Brave Search API (needs `api_key_env`; the plan feature
     * `advanced_web_search`); duckduckgo: its HTML endpoint, no key.
     */
    backend: z.enum(['searxng', 'brave', 'duckduckgo']).default('duckduckgo'),
    /** The backend's root URL; each backend has its public default except SearXNG. */
    base_url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
    /** Name of the environment variable holding the backend's API key (Brave). */
    api_key_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
    /** Results returned when the model does not ask for a number; it may ask for at most 10. */
    max_results: z.number().int().min(1).max(10).default(5),
    timeout_ms: ms(10_000),
  })
  .prefault({});

export const webFetchSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    timeout_ms: ms(15_000),
    /** Bytes read of a page at most; the rest is never downloaded. */
    max_bytes: z.number().int().min(1024).max(50 * 1024 * 1024).default(2 * 1024 * 1024),
    /** Characters of markdown returned at most. */
    max_chars: z.number().int().min(500).max(200_000).default(20_000),
    max_redirects: z.number().int().min(0).max(10).default(5),
    /**
     * Hosts (names, addresses or CIDRs) that may be fetched although they are
     * private, loopback or link-local: an intranet wiki, or a test server.
     */
    allowed_private_hosts: z.array(z.string().min(1)).default([]),
    user_agent: z.string().min(1).default('eugpt-web-fetch/1.0 (+https://github.com/eugpt/eugpt)'),
  })
  .prefault({});

export const calculatorSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    timeout_ms: ms(2_000),
  })
  .prefault({});

export const currentDatetimeSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** The time zone used when the model names none. */
    default_timezone: z.string().min(1).default('UTC'),
  })
  .prefault({});

export const toolsSchema = z
  .strictObject({
    /** Model calls per response at most; the last one runs without tools, so the model must answer. */
    max_steps: z.number().int().min(1).max(32).default(8),
    /** Characters of one tool result given to the model and stored at most. */
    max_output_chars: z.number().int().min(500).max(200_000).default(24_000),
    web_search: webSearchSchema,
    web_fetch: webFetchSchema,
    calculator: calculatorSchema,
    current_datetime: currentDatetimeSchema,
  })
  .prefault({});

export type ToolsConfig = z.infer<typeof toolsSchema>;
export type WebSearchConfig = z.infer<typeof webSearchSchema>;
export type WebFetchConfig = z.infer<typeof webFetchSchema>;
export type CalculatorConfig = z.infer<typeof calculatorSchema>;
export type CurrentDatetimeConfig = z.infer<typeof currentDatetimeSchema>;
