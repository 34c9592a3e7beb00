import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { DbTimeouts } from './db/client.ts';
import { formatPath } from './param-path.ts';
import { catalogSchema, checkCatalog, type Catalog } from './router/catalog.ts';
import { planConfigSchema, type PlanInput } from './tenancy/plans.ts';
import { toolsSchema, type ToolsConfig } from './tools/config.ts';
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
});

/** The optional config file: providers, models, router settings, plans, tools. */
const fileSchema = z.strictObject({ ...catalogSchema, plans: z.array(planConfigSchema).default([]), tools: toolsSchema, retrieval: retrievalSchema });

type FileConfig = z.infer<typeof fileSchema>;

export interface Config {
  port: number;
  host: string;
  /** Absent: the embedded PGlite database in `dataDir`. */
  databaseUrl: string | undefined;
  dataDir: string;
  dbPoolMax: number;
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
  /** Uploaded files: the largest file, the bytes all files of one organisation may take, and the limits of text extraction. */
  files: FilesConfig;
  /** Project corpora: chunking, the optional embeddings model (its key read from the environment), prompt budget. */
  retrieval: ResolvedRetrievalConfig;
}

export interface FilesConfig {
  maxBytes: number;
  orgStorageBytes: number;
  extractTimeoutMs: number;
  /** The heap of the process that extracts a document's text. */
  extractMemoryMb: number;
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
  const configFile = e.EUGPT_CONFIG === undefined ? undefined : resolve(e.EUGPT_CONFIG);
  const file = loadFileConfig(configFile);
  return {
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL,
    dataDir: resolve(e.EUGPT_DATA_DIR),
    dbPoolMax: e.EUGPT_DB_POOL_MAX,
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
    retentionIntervalMs: e.EUGPT_RETENTION_INTERVAL_MS,
    recovery: { heartbeatMs: e.EUGPT_HEARTBEAT_MS, staleMs: e.EUGPT_INSTANCE_STALE_MS, checkpointMs: e.EUGPT_CHECKPOINT_MS },
    keyCacheTtlMs: e.EUGPT_KEY_CACHE_TTL_MS,
    lastUsedFlushMs: e.EUGPT_LAST_USED_FLUSH_MS,
    configFile,
    catalog: catalogFrom(file, cleaned, configFile),
    plans: file.plans,
    tools: toolsFrom(file, cleaned, configFile),
    retrieval: retrievalFrom(file, cleaned, configFile),
    files: {
      maxBytes: e.EUGPT_FILE_MAX_BYTES,
      orgStorageBytes: e.EUGPT_ORG_STORAGE_BYTES,
      extractTimeoutMs: e.EUGPT_EXTRACT_TIMEOUT_MS,
      extractMemoryMb: e.EUGPT_EXTRACT_MEMORY_MB,
    },
  };
}

const cliEnvSchema = z.object({
  EUGPT_URL: z.url({ error: 'must be a URL such as http://127.0.0.1:8080' }).optional(),
  PORT: intFromEnv(1, 65535).default(8080),
  EUGPT_ADMIN_TOKEN: z.string().optional(),
});

export interface CliConfig {
  /** Where the admin commands send their requests. */
  url: string;
  adminToken: string | undefined;
}

/** The few settings the `eugpt` admin commands read; the server's own settings are not checked here. */
export function loadCliConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = cliEnvSchema.safeParse(cleaned);
  if (!parsed.success) throw new ConfigError(describe('', parsed.error));
  return {
    url: parsed.data.EUGPT_URL ?? `http://127.0.0.1:${parsed.data.PORT}`,
    adminToken: parsed.data.EUGPT_ADMIN_TOKEN,
  };
}
