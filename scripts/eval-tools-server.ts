// The server an eval:tools run talks to: the app built in this process, on an
// embedded PGlite database in a temporary folder, with one tenant. Fake mode
// puts it in front of scripts/fake-upstream.ts and the fake web; real mode in
// front of the providers of the operator's config file, with the fake web's
// pages still reachable so that web_fetch cases read known text.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp } from '../src/app.ts';
import { loadConfig, type Config } from '../src/config.ts';
import { openDatabase } from '../src/db/client.ts';
import { systemLookup, type Lookup } from '../src/tools/fetch-agent.ts';
import type { Target, ToolName } from './eval-tools-core.ts';
import { TOOLS } from './eval-tools-core.ts';
import { FAKE_HOSTS, startFakeWeb, type FakeWeb } from './eval-tools-web.ts';
import { firstLine, start, stop } from './harness.ts';

export interface EvalServer {
  /** Where and how to send the cases; `timeoutMs` is the caller's to set. */
  target: Omit<Target, 'timeoutMs'>;
  /** Which model answers, for the report's first line. */
  describe: string;
  close(): Promise<void>;
}

/** The fake web's names resolve to loopback; every other name as usual (real mode searches the real web). */
const lookup: Lookup = async (hostname) => (FAKE_HOSTS.includes(hostname.toLowerCase()) ? [{ address: '127.0.0.1', family: 4 }] : systemLookup(hostname));

/** Runs `fn` in order on close, each even if one before it failed. */
function closer() {
  const steps: (() => Promise<unknown> | void)[] = [];
  return {
    add: (fn: () => Promise<unknown> | void) => steps.unshift(fn),
    close: async () => {
      for (const fn of steps) {
        try {
          await fn();
        } catch {
          // Cleaning up what is left: one part that will not close must not keep the others open.
        }
      }
    },
  };
}

/** The app on a fresh PGlite database, listening on a free loopback port, with one organisation, user and key. */
async function startApp(config: Config, adminToken: string, done: ReturnType<typeof closer>): Promise<{ origin: string; key: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'eugpt-eval-tools-db-'));
  done.add(() => rmSync(dir, { recursive: true, force: true }));
  const database = await openDatabase({ dataDir: dir });
  done.add(() => database.close());
  await database.migrate();
  const app = await buildApp({ config, database, logger: false, tools: { lookup } });
  done.add(() => app.close());
  await app.listen({ port: 0, host: '127.0.0.1' });
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const admin = async (path: string, body: object) => {
    const res = await fetch(`${origin}/admin/v1${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`admin ${path}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()) as Record<string, string>;
  };
  const org = await admin('/organizations', { name: 'eval-tools' });
  const user = await admin('/users', { organization_id: org.id, email: 'eval-tools@example.eu' });
  const key = await admin('/api-keys', { user_id: user.id, label: 'eval-tools' });
  return { origin, key: key.key! };
}

/**
 * Fake mode: scripts/fake-upstream.ts as a child process (it prints its URL
 * once it listens), the fake web, and the app with one model that can call
 * tools, searching the fake SearXNG and allowed to read the fake sites.
 */
export async function startFakeServer(): Promise<EvalServer> {
  const done = closer();
  try {
    // Short plain answers: the no-tool cases only need some text.
    const upstream = start(['--import', 'tsx', 'scripts/fake-upstream.ts'], { ANSWER_TOKENS: '12', TOKEN_DELAY_MS: '0' });
    done.add(() => stop(upstream, 5_000));
    const upstreamUrl = await firstLine(upstream);
    const web = await startFakeWeb();
    done.add(() => web.close());
    const dir = mkdtempSync(join(tmpdir(), 'eugpt-eval-tools-cfg-'));
    done.add(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'eugpt.yaml');
    writeFileSync(
      path,
      JSON.stringify({
        providers: [{ id: 'fake', type: 'openai-compatible', base_url: upstreamUrl }],
        models: [{ id: 'fake-tools', provider: 'fake', upstream_model: 'fake', context_window: 32768, max_output_tokens: 1024, capabilities: ['tools'] }],
        tools: {
          web_search: { backend: 'searxng', base_url: web.origin },
          web_fetch: { allowed_private_hosts: FAKE_HOSTS },
        },
      }),
    );
    const adminToken = randomBytes(24).toString('hex');
    // Only what the eval sets: the caller's environment (a DATABASE_URL, say) must not change the run.
    const config = loadConfig({ EUGPT_CONFIG: path, EUGPT_ADMIN_TOKEN: adminToken, LOG_LEVEL: 'warn' });
    const { origin, key } = await startApp(config, adminToken, done);
    return { target: { baseUrl: origin, key, tools: TOOLS, vars: { port: String(web.port) } }, describe: 'fake-tools', close: done.close };
  } catch (err) {
    await done.close();
    throw err;
  }
}

export interface RealOptions {
  /** The operator's eugpt.yaml: providers, models (one with `capabilities: [tools]`), tools. */
  configPath: string;
  /** Ask for this model; by default the router picks one that can call tools. */
  model?: string | undefined;
  /** Offer only these tools (and the caller runs only their cases). */
  only?: ToolName[] | undefined;
}

/**
 * Real mode: the operator's config as it is (providers read their keys from
 * this process's environment), except that web_fetch may also read the fake
 * web's sites. web_search goes to whatever backend the config names.
 */
export async function startRealServer(o: RealOptions): Promise<EvalServer & { offered: ToolName[] }> {
  const done = closer();
  try {
    const web: FakeWeb = await startFakeWeb();
    done.add(() => web.close());
    const adminToken = randomBytes(24).toString('hex');
    const loaded = loadConfig({ ...process.env, EUGPT_CONFIG: o.configPath, EUGPT_ADMIN_TOKEN: adminToken, LOG_LEVEL: 'warn' });
    const fetchConfig = loaded.tools.web_fetch;
    const config: Config = {
      ...loaded,
      tools: { ...loaded.tools, web_fetch: { ...fetchConfig, allowed_private_hosts: [...fetchConfig.allowed_private_hosts, ...FAKE_HOSTS] } },
    };
    const capable = config.catalog.models.filter((m) => m.capabilities.includes('tools'));
    if (capable.length === 0) throw new Error(`${o.configPath}: no model lists capabilities: [tools]`);
    if (o.model !== undefined && !capable.some((m) => m.id === o.model)) throw new Error(`${o.configPath}: model ${o.model} is not there or cannot call tools`);
    const offered = TOOLS.filter((t) => config.tools[t].enabled && (o.only === undefined || o.only.includes(t)));
    const { origin, key } = await startApp(config, adminToken, done);
    return {
      target: { baseUrl: origin, key, model: o.model, tools: offered, vars: { port: String(web.port) } },
      describe: o.model ?? `router's choice among ${capable.map((m) => m.id).join(', ')}`,
      offered,
      close: done.close,
    };
  } catch (err) {
    await done.close();
    throw err;
  }
}
