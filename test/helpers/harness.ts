import { mkdtempSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { stringify } from 'yaml';
import { buildApp, type AppDeps } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/client.ts';
import type { ToolboxOptions } from '../../src/tools/registry.ts';
import { ADMIN_TOKEN, createTenant, type Tenant } from './app.ts';
import { openTestDatabase } from './db.ts';
import { startFakeUpstream, type FakeUpstream, type Script } from './fake-openai.ts';

export interface Harness {
  database: Database;
  upstream: FakeUpstream;
  app: FastifyInstance;
  /** http://127.0.0.1:port */
  origin: string;
  tenant: Tenant;
  close(): Promise<void>;
}

export interface HarnessOptions {
  fallback?: Script;
  router?: Record<string, unknown>;
  model?: Record<string, unknown>;
  timeouts?: Record<string, number>;
  keepAliveMs?: number;
  env?: Record<string, string>;
  now?: () => number;
  /** The config file's `tools` section. */
  tools?: Record<string, unknown>;
  /** The config file's `conversations` section. */
  conversations?: Record<string, unknown>;
  /** A database to use (left open on close); default: a fresh one. */
  database?: Database;
  /** Replaces DNS for web_fetch. */
  lookup?: ToolboxOptions['lookup'];
  /** The file extraction's sweep period and upload wait. */
  files?: AppDeps['files'];
}

/** Writes a config object as an EUGPT_CONFIG file. */
export function writeConfigFile(config: object): string {
  const path = join(mkdtempSync(join(tmpdir(), 'eugpt-cfg-')), 'eugpt.yaml');
  writeFileSync(path, stringify(config));
  return path;
}

/** Writes an EUGPT_CONFIG file with one provider (the fake) and one model. */
export function writeConfig(upstreamUrl: string, opts: HarnessOptions = {}): string {
  return writeConfigFile({
    providers: [
      { id: 'local', type: 'openai-compatible', base_url: upstreamUrl, api_key_env: 'FAKE_UPSTREAM_KEY', ...(opts.timeouts ? { timeouts: opts.timeouts } : {}) },
    ],
    models: [
      {
        id: 'llama-small',
        provider: 'local',
        upstream_model: 'llama3.2:3b',
        categories: ['fast', 'general'],
        context_window: 32768,
        max_output_tokens: 4096,
        price: { input: 0.1, output: 0.3 },
        capabilities: ['json'],
        ...opts.model,
      },
    ],
    ...(opts.router ? { router: opts.router } : {}),
    ...(opts.tools ? { tools: opts.tools } : {}),
    ...(opts.conversations ? { conversations: opts.conversations } : {}),
  });
}

export type TestServer = Omit<Harness, 'upstream'>;

/** The app on a fresh database, listening on a free port, with one tenant, for the given config file. */
export async function startServer(
  configFile: string,
  opts: {
    keepAliveMs?: number | undefined;
    env?: Record<string, string> | undefined;
    now?: () => number;
    lookup?: ToolboxOptions['lookup'];
    files?: AppDeps['files'];
    /** A database shared by the servers of one test file (left open on close); default: a fresh one per server. */
    database?: Database;
  } = {},
): Promise<TestServer> {
  const shared = opts.database;
  const database = shared ?? (await openTestDatabase());
  const config = loadConfig({ EUGPT_ADMIN_TOKEN: ADMIN_TOKEN, EUGPT_CONFIG: configFile, FAKE_UPSTREAM_KEY: 'sk-upstream-secret', ...opts.env });
  const app = await buildApp({
    config,
    database,
    logger: false,
    responses: { keepAliveMs: opts.keepAliveMs },
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.lookup ? { tools: { lookup: opts.lookup } } : {}),
    ...(opts.files ? { files: opts.files } : {}),
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const tenant = await createTenant(app);
  return {
    database,
    app,
    origin,
    tenant,
    async close() {
      await app.close();
      if (shared === undefined) await database.close();
    },
  };
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const upstream = await startFakeUpstream(opts.fallback);
  const server = await startServer(writeConfig(upstream.url, opts), opts);
  return {
    ...server,
    upstream,
    async close() {
      await server.close();
      await upstream.close();
    },
  };
}

/** Polls until `check` returns a value, for effects that finish just after a response ends. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
