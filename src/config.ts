import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { DbTimeouts } from './db/client.ts';
import type { S3Settings } from './files/s3-store.ts';
import { formatPath } from './param-path.ts';
import { catalogSchema, checkCatalog, type Catalog } from './router/catalog.ts';
import { planConfigSchema, type PlanInput } from './tenancy/plans.ts';
import { imagesSchema, type ImagesConfig } from './images/config.ts';
import { toolsSchema, type ToolsConfig } from './tools/config.ts';
import type { SummarySettings } from './conversations/summary.ts';
import { observabilityEnv, observabilityFrom, type ObservabilityConfig } from './observability/config.ts';
import { retrievalSchema, type ResolvedRetrievalConfig } from './projects/config.ts';

/**
 * The one place that reads process.env: one config object, parsed once at start.
 * Every setting is validated here; a bad value stops the process with a
 * message that names the setting.
 */

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const boolFromEnv = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'], {
    error: 'must be one of true, false, 1, 0, yes, no, on, off',
  })
  .transform((v) => ['true', '1', 'yes', 'on'].includes(v));

const intFromEnv = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, { error: 'must be a whole number' })
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

/** `true`/`false`, a hop count, or a comma-separated list of addresses/CIDRs (fastify's trustProxy forms). */
const trustProxyFromEnv = z.string().transform((raw, ctx): boolean | number | string[] => {
  const v = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off', ''].includes(v)) return false;
  if (/^\d+$/.test(v)) return Number(v);
  const list = v.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = list.find((s) => !/^[0-9a-f.:]+(\/\d{1,3})?$/.test(s));
  if (bad !== undefined) {
    ctx.addIssue({ code: 'custom', message: `"${bad}" is not an address or CIDR (use true, false, a hop count, or a comma-separated list)` });
    return z.NEVER;
  }
  return list;
});

const envSchema = z.object({
  PORT: intFromEnv(0, 65535).default(8080),
  HOST: z.string().min(1).default('127.0.0.1'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, { error: 'must be a postgres:// or postgresql:// URL' })
    .optional(),
  EUGPT_DATA_DIR: z.string().min(1).default('./data'),
  EUGPT_DB_POOL_MAX: intFromEnv(1, 1000).default(10),
  EUGPT_DB_POOL_MIN: intFromEnv(0, 1000).optional(),
  EUGPT_DB_WAIT_MS: intFromEnv(0, 600_000).default(30_000),
  EUGPT_DB_CONNECT_TIMEOUT_MS: intFromEnv(100, 600_000).default(5_000),
  EUGPT_DB_STATEMENT_TIMEOUT_MS: intFromEnv(100, 3_600_000).default(15_000),
  EUGPT_DB_LOCK_TIMEOUT_MS: intFromEnv(100, 3_600_000).default(5_000),
  EUGPT_DB_IDLE_TX_TIMEOUT_MS: intFromEnv(100, 3_600_000).default(30_000),
  LOG_LEVEL: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
  EUGPT_ADMIN_TOKEN: z
    .string()
    .min(16, { error: 'must be at least 16 characters (use e.g. `openssl rand -hex 32`)' })
    .optional(),
  EUGPT_BODY_LIMIT: intFromEnv(1024, 256 * 1024 * 1024).default(2 * 1024 * 1024),
  EUGPT_TRUST_PROXY: trustProxyFromEnv.default(false),
  EUGPT_SHUTDOWN_GRACE_MS: intFromEnv(0, 600_000).default(10_000),
  EUGPT_STORE_WAIT_MS: intFromEnv(100, 600_000).default(10_000),
  EUGPT_STREAM_DEFAULT: boolFromEnv.default(true),
  EUGPT_SSE_KEEPALIVE_MS: intFromEnv(0, 3_600_000).default(15_000),
  EUGPT_RETENTION_INTERVAL_MS: intFromEnv(1_000, 86_400_000).default(600_000),
  EUGPT_HEARTBEAT_MS: intFromEnv(100, 600_000).default(5_000),
  EUGPT_INSTANCE_STALE_MS: intFromEnv(500, 3_600_000).default(30_000),
  EUGPT_CHECKPOINT_MS: intFromEnv(100, 600_000).default(2_000),
  EUGPT_KEY_CACHE_TTL_MS: intFromEnv(0, 2_000).default(1_000),
  EUGPT_LAST_USED_FLUSH_MS: intFromEnv(100, 3_600_000).default(30_000),
  EUGPT_CONFIG: z.string().min(1).optional(),
  EUGPT_LOG_PRETTY: boolFromEnv.default(false),
  EUGPT_FILE_MAX_BYTES: intFromEnv(1, 2 ** 40).default(50 * 1024 * 1024),
  EUGPT_ORG_STORAGE_BYTES: intFromEnv(0, 2 ** 50).default(1024 * 1024 * 1024),
  EUGPT_EXTRACT_TIMEOUT_MS: intFromEnv(10, 3_600_000).default(60_000),
  EUGPT_EXTRACT_MEMORY_MB: intFromEnv(64, 65_536).default(512),
  EUGPT_BLOB_STORE: z.enum(['database', 's3'], { error: 'must be database or s3' }).default('database'),
  EUGPT_S3_ENDPOINT: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL, e.g. https://s3.fr-par.scw.cloud' }).optional(),
  EUGPT_S3_REGION: z.string().min(1).max(64).default('us-east-1'),
  EUGPT_S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { error: 'must be a bucket name: 3 to 63 lower-case letters, digits, dots and hyphens' })
    .optional(),
  EUGPT_S3_ACCESS_KEY_ID: z.string().min(1).optional(),
  EUGPT_S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  EUGPT_S3_FORCE_PATH_STYLE: boolFromEnv.default(true),
  EUGPT_S3_PREFIX: z
    .string()
    .max(512)
    .regex(/^(?!\/)[\x20-\x7e]+$/, { error: 'must be printable ASCII and must not start with /' })
    .optional(),
  EUGPT_PROBE_INTERVAL_MS: intFromEnv(0, 86_400_000).default(30_000),
  EUGPT_PROBE_TIMEOUT_MS: intFromEnv(100, 60_000).default(5_000),
  // Metrics and traces (observability/config.ts).
  ...observabilityEnv,
});

/** Summaries of long conversations (conversations/summary.ts). */
const conversationsSchema = z
  .strictObject({
    summaries: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** A catalog model id tried first for summaries; otherwise `fast` models, then the cheapest. */
        model: z.string().min(1).optional(),
        max_output_tokens: z.number().int().min(64).max(16_384).default(800),
        max_calls_per_run: z.number().int().min(1).max(32).default(4),
      })
      .prefault({}),
  })
  .prefault({});

/** The optional config file: providers, models, router settings, plans, tools, conversations, images, retrieval. */
const fileSchema = z.strictObject({
  ...catalogSchema,
  plans: z.array(planConfigSchema).default([]),
  tools: toolsSchema,
  conversations: conversationsSchema,
  images: imagesSchema,
  retrieval: retrievalSchema,
});

type FileConfig = z.infer<typeof fileSchema>;

export interface Config {
  port: number;
  host: string;
  /** Absent: the embedded PGlite database in `dataDir`. */
  databaseUrl: string | undefined;
  dataDir: string;
  dbPoolMax: number;
  /** PostgreSQL connections kept open while idle, opened at start: all of them unless set lower (at most dbPoolMax). */
  dbPoolMin: number;
  /** How long start-up waits for PostgreSQL to accept connections. */
  dbWaitMs: number;
  /** Pool wait, statement, lock and idle-in-transaction limits of every PostgreSQL session. */
  dbTimeouts: DbTimeouts;
  logLevel: (typeof LOG_LEVELS)[number];
  logPretty: boolean;
  /** Absent: the admin API answers 401 saying how to enable it. */
  adminToken: string | undefined;
  bodyLimit: number;
  trustProxy: boolean | number | string[];
  shutdownGraceMs: number;
  /** How long a finished response waits for its write before the client is told (the write is still retried). */
  storeWaitMs: number;
  /** Whether a request without `stream` (and without an Accept or client that says otherwise) is streamed. */
  streamDefault: boolean;
  /** A `: keep-alive` comment on a stream silent this long, before the first token too; 0: never. */
  sseKeepAliveMs: number;
  /** How often this instance deletes content past its organisation's retention. */
  retentionIntervalMs: number;
  /** Crash recovery: heartbeat period, when a silent instance counts as dead, how often output is checkpointed. */
  recovery: { heartbeatMs: number; staleMs: number; checkpointMs: number };
  /** How long a key look-up is trusted before the database is asked again; bounds revocation delay. */
  keyCacheTtlMs: number;
  lastUsedFlushMs: number;
  configFile: string | undefined;
  /** Providers (with their API keys read from the environment) and models. */
  catalog: Catalog;
  /** Plans of the config file, written to the database at start. */
  plans: (PlanInput & { name: string })[];
  /** The built-in tools' settings, with the search backend's key read from the environment. */
  tools: ResolvedToolsConfig;
  /** `input_image` parts: their size, fetch and count limits. */
  images: ImagesConfig;
  /** Uploaded files: the largest file, the bytes all files of one organisation may take, and the limits of text extraction. */
  files: FilesConfig;
  /** Summaries of conversations whose history outgrew a model's window. */
  summaries: SummarySettings;
  /** `/metrics` (where and with what token) and OpenTelemetry traces (where to). */
  observability: ObservabilityConfig;
  /** How often each provider's model list is asked for (0: at start only), and how long a probe may take. */
  probes: { intervalMs: number; timeoutMs: number };
  /** Project corpora: chunking, the optional embeddings model (its key read from the environment), prompt budget. */
  retrieval: ResolvedRetrievalConfig;
}

export interface FilesConfig {
  maxBytes: number;
  orgStorageBytes: number;
  extractTimeoutMs: number;
  /** The heap of the process that extracts a document's text. */
  extractMemoryMb: number;
  /** Where new files' bytes go; files already stored stay where their row says. */
  blobStore: { kind: 'database' } | { kind: 's3'; s3: S3Settings };
}

export type ResolvedToolsConfig = ToolsConfig & { web_search: ToolsConfig['web_search'] & { apiKey: string | undefined } };

function describe(prefix: string, error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const where = issue.path.length === 0 ? '(root)' : formatPath(issue.path);
      return `${prefix}${where}: ${issue.message}`;
    })
    .join('\n');
}

function loadFileConfig(path: string | undefined): FileConfig {
  if (path === undefined) return fileSchema.parse({});
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`EUGPT_CONFIG: cannot read ${path}: ${(err as Error).message}`);
  }
  let data: unknown;
  try {
    data = parseYaml(text) ?? {};
  } catch (err) {
    throw new ConfigError(`EUGPT_CONFIG: ${path} is not valid YAML or JSON: ${(err as Error).message}`);
  }
  const parsed = fileSchema.safeParse(data);
  if (!parsed.success) throw new ConfigError(describe(`EUGPT_CONFIG (${path}) `, parsed.error));
  const problems = checkCatalog(parsed.data);
  const names = new Set<string>();
  parsed.data.plans.forEach((p, i) => {
    if (names.has(p.name)) problems.push(`plans[${i}] (${p.name}): duplicate plan name`);
    names.add(p.name);
  });
  if (problems.length > 0) throw new ConfigError(problems.map((p) => `EUGPT_CONFIG (${path}) ${p}`).join('\n'));
  return parsed.data;
}

function catalogFrom(file: FileConfig, env: Record<string, string>, path: string | undefined): Catalog {
  const providers = file.providers.map((p, i) => {
    const apiKey = p.api_key_env === undefined ? undefined : env[p.api_key_env];
    if (p.api_key_env !== undefined && apiKey === undefined) {
      throw new ConfigError(`EUGPT_CONFIG (${path}) providers[${i}] (${p.id}): environment variable ${p.api_key_env} (api_key_env) is not set`);
    }
    return { ...p, apiKey };
  });
  return { providers, models: file.models, router: file.router };
}

function toolsFrom(file: FileConfig, env: Record<string, string>, path: string | undefined): ResolvedToolsConfig {
  const search = file.tools.web_search;
  const where = `EUGPT_CONFIG (${path}) tools.web_search`;
  const apiKey = search.api_key_env === undefined ? undefined : env[search.api_key_env];
  if (search.enabled && search.api_key_env !== undefined && apiKey === undefined) {
    throw new ConfigError(`${where}: environment variable ${search.api_key_env} (api_key_env) is not set`);
  }
  if (search.enabled && search.backend === 'searxng' && search.base_url === undefined) {
    throw new ConfigError(`${where}: the searxng backend needs base_url (the root of your SearXNG, e.g. http://searxng:8080)`);
  }
  if (search.enabled && search.backend === 'brave' && apiKey === undefined) {
    throw new ConfigError(`${where}: the brave backend needs api_key_env (the variable holding a Brave Search API key)`);
  }
  return { ...file.tools, web_search: { ...search, apiKey } };
}

function canLoad(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}

function blobStoreFrom(e: z.infer<typeof envSchema>): FilesConfig['blobStore'] {
  if (e.EUGPT_BLOB_STORE === 'database') return { kind: 'database' };
  if (e.EUGPT_S3_BUCKET === undefined) throw new ConfigError('EUGPT_S3_BUCKET: must be set when EUGPT_BLOB_STORE is s3 (the bucket that holds the files)');
  if ((e.EUGPT_S3_ACCESS_KEY_ID === undefined) !== (e.EUGPT_S3_SECRET_ACCESS_KEY === undefined)) {
    const missing = e.EUGPT_S3_ACCESS_KEY_ID === undefined ? 'EUGPT_S3_ACCESS_KEY_ID' : 'EUGPT_S3_SECRET_ACCESS_KEY';
    throw new ConfigError(`${missing}: must be set with the other S3 credential (or leave both unset to use the SDK's usual sources)`);
  }
  return {
    kind: 's3',
    s3: {
      endpoint: e.EUGPT_S3_ENDPOINT,
      region: e.EUGPT_S3_REGION,
      bucket: e.EUGPT_S3_BUCKET,
      accessKeyId: e.EUGPT_S3_ACCESS_KEY_ID,
      secretAccessKey: e.EUGPT_S3_SECRET_ACCESS_KEY,
      forcePathStyle: e.EUGPT_S3_FORCE_PATH_STYLE,
      prefix: e.EUGPT_S3_PREFIX ?? '',
    },
  };
}

function retrievalFrom(file: FileConfig, env: Record<string, string>, path: string | undefined): ResolvedRetrievalConfig {
  const e = file.retrieval.embeddings;
  if (e === undefined) return { ...file.retrieval, embeddings: undefined };
  const apiKey = e.api_key_env === undefined ? undefined : env[e.api_key_env];
  if (e.api_key_env !== undefined && apiKey === undefined) {
    throw new ConfigError(`EUGPT_CONFIG (${path}) retrieval.embeddings: environment variable ${e.api_key_env} (api_key_env) is not set`);
  }
  return { ...file.retrieval, embeddings: { ...e, apiKey } };
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings count as unset, as a shell `FOO= npm start` or an empty compose entry means.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== '')) as Record<string, string>;
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) throw new ConfigError(describe('', parsed.error));
  const e = parsed.data;
  if (e.EUGPT_LOG_PRETTY && !canLoad('pino-pretty')) {
    throw new ConfigError(
      'EUGPT_LOG_PRETTY: pino-pretty is a development dependency and is not installed here (the image has none); unset it and pipe the JSON log through `npx pino-pretty` where it is installed',
    );
  }
  const configFile = e.EUGPT_CONFIG === undefined ? undefined : resolve(e.EUGPT_CONFIG);
  const file = loadFileConfig(configFile);
  return {
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL,
    dataDir: resolve(e.EUGPT_DATA_DIR),
    dbPoolMax: e.EUGPT_DB_POOL_MAX,
    dbPoolMin: Math.min(e.EUGPT_DB_POOL_MIN ?? e.EUGPT_DB_POOL_MAX, e.EUGPT_DB_POOL_MAX),
    dbWaitMs: e.EUGPT_DB_WAIT_MS,
    dbTimeouts: {
      connectMs: e.EUGPT_DB_CONNECT_TIMEOUT_MS,
      statementMs: e.EUGPT_DB_STATEMENT_TIMEOUT_MS,
      lockMs: e.EUGPT_DB_LOCK_TIMEOUT_MS,
      idleInTransactionMs: e.EUGPT_DB_IDLE_TX_TIMEOUT_MS,
    },
    logLevel: e.LOG_LEVEL,
    logPretty: e.EUGPT_LOG_PRETTY,
    adminToken: e.EUGPT_ADMIN_TOKEN,
    bodyLimit: e.EUGPT_BODY_LIMIT,
    trustProxy: e.EUGPT_TRUST_PROXY,
    shutdownGraceMs: e.EUGPT_SHUTDOWN_GRACE_MS,
    storeWaitMs: e.EUGPT_STORE_WAIT_MS,
    streamDefault: e.EUGPT_STREAM_DEFAULT,
    sseKeepAliveMs: e.EUGPT_SSE_KEEPALIVE_MS,
    retentionIntervalMs: e.EUGPT_RETENTION_INTERVAL_MS,
    recovery: { heartbeatMs: e.EUGPT_HEARTBEAT_MS, staleMs: e.EUGPT_INSTANCE_STALE_MS, checkpointMs: e.EUGPT_CHECKPOINT_MS },
    keyCacheTtlMs: e.EUGPT_KEY_CACHE_TTL_MS,
    lastUsedFlushMs: e.EUGPT_LAST_USED_FLUSH_MS,
    configFile,
    catalog: catalogFrom(file, cleaned, configFile),
    plans: file.plans,
    tools: toolsFrom(file, cleaned, configFile),
    summaries: summariesFrom(file, configFile),
    images: file.images,
    retrieval: retrievalFrom(file, cleaned, configFile),
    files: {
      maxBytes: e.EUGPT_FILE_MAX_BYTES,
      orgStorageBytes: e.EUGPT_ORG_STORAGE_BYTES,
      extractTimeoutMs: e.EUGPT_EXTRACT_TIMEOUT_MS,
      extractMemoryMb: e.EUGPT_EXTRACT_MEMORY_MB,
      blobStore: blobStoreFrom(e),
    },
    observability: observabilityFrom(e),
    probes: { intervalMs: e.EUGPT_PROBE_INTERVAL_MS, timeoutMs: e.EUGPT_PROBE_TIMEOUT_MS },
  };
}

function summariesFrom(file: FileConfig, configFile: string | undefined): SummarySettings {
  const s = file.conversations.summaries;
  if (s.model !== undefined && !file.models.some((m) => m.id === s.model)) {
    throw new ConfigError(`EUGPT_CONFIG (${configFile ?? 'none'}) conversations.summaries.model: "${s.model}" is not a model of the catalog`);
  }
  return { enabled: s.enabled, model: s.model, maxOutputTokens: s.max_output_tokens, maxCallsPerRun: s.max_calls_per_run };
}
