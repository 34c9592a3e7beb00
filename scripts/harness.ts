// What `npm run bench` and `npm run soak` share: child processes (fake
// upstream, gateway, server), a throwaway PostgreSQL database, tenants made
// through the admin API, and reading a CPU profile.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';

/** A non-negative number from the environment, or `def` when unset. */
export const envNumber = (name: string, def: number) => {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? def : Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number`);
  return n;
};

export const ROOT = new URL('..', import.meta.url).pathname;
export const ADMIN = 'bench-admin-token-0123456789';

const children = new Set<ChildProcess>();

export function start(args: string[], env: Record<string, string>, nodeFlags: string[] = []): ChildProcess {
  const child = spawn(process.execPath, [...nodeFlags, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** The first line a child prints (the fake upstream and the gateway print their URL). */
export async function firstLine(child: ChildProcess): Promise<string> {
  for await (const line of createInterface({ input: child.stdout! })) {
    // Keep draining, or a chatty child blocks on a full pipe.
    child.stdout!.resume();
    return line;
  }
  throw new Error('process exited before printing');
}

/** SIGTERM, then SIGKILL if it is still there after `graceMs` (a profile is only written on a clean exit). */
export async function stop(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export function killAll() {
  for (const child of children) child.kill('SIGKILL');
}

export async function waitReady(url: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server at ${url} did not start`);
}

/** The server's config file: one fake provider, one model. */
export function writeServerConfig(dir: string, upstreamUrl: string, maxConnections: number, maxOutputTokens = 1024): string {
  const path = join(dir, 'eugpt.yaml');
  writeFileSync(
    path,
    JSON.stringify({
      providers: [{ id: 'fake', type: 'openai-compatible', base_url: upstreamUrl, max_connections: maxConnections, queue_timeout_ms: 60_000 }],
      models: [{ id: 'bench', provider: 'fake', upstream_model: 'fake', context_window: 32768, max_output_tokens: maxOutputTokens }],
    }),
  );
  return path;
}

export interface ServerOptions {
  port: number;
  config: string;
  dataDir: string;
  databaseUrl: string | undefined;
  env?: Record<string, string>;
  nodeFlags?: string[];
}

export async function startServer(o: ServerOptions): Promise<{ child: ChildProcess; url: string }> {
  const child = start(
    ['bin/eugpt.js', 'serve'],
    {
      PORT: String(o.port),
      EUGPT_ADMIN_TOKEN: ADMIN,
      EUGPT_CONFIG: o.config,
      EUGPT_DATA_DIR: o.dataDir,
      LOG_LEVEL: 'warn',
      ...(o.databaseUrl === undefined ? { DATABASE_URL: '' } : { DATABASE_URL: o.databaseUrl }),
      ...o.env,
    },
    o.nodeFlags,
  );
  child.stdout!.resume();
  const url = `http://127.0.0.1:${o.port}`;
  await waitReady(url);
  return { child, url };
}

async function admin(url: string, method: string, path: string, body: unknown): Promise<Record<string, string>> {
  const res = await fetch(`${url}/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, string>;
  if (!res.ok) throw new Error(`admin ${method} ${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

export interface Tenant {
  orgId: string;
  userId: string;
  key: string;
}

/** An organisation with one user and one API key; `dailyTokenLimit` makes every request reserve tokens. */
export async function createTenant(url: string, name: string, dailyTokenLimit?: number): Promise<Tenant> {
  const org = await admin(url, 'POST', '/organizations', { name });
  if (dailyTokenLimit !== undefined) await admin(url, 'PATCH', `/organizations/${org.id}`, { daily_token_limit: dailyTokenLimit });
  const user = await admin(url, 'POST', '/users', { organization_id: org.id, email: `${name.toLowerCase().replace(/\W+/g, '-')}-${Date.now()}@example.eu` });
  const key = await admin(url, 'POST', '/api-keys', { user_id: user.id, label: name });
  return { orgId: org.id!, userId: user.id!, key: key.key! };
}

/**
 * A fresh database on the PostgreSQL server of `adminUrl`, or null (with the
 * reason) when that server cannot be reached.
 */
export async function createDatabase(adminUrl: string, prefix: string): Promise<{ url: string; drop: () => Promise<void> } | { url: null; why: string }> {
  const name = `${prefix}_${process.pid}_${Date.now().toString(36)}`;
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query(`create database ${name}`);
  } catch (err) {
    await client.end().catch(() => undefined);
    return { url: null, why: (err as Error).message };
  }
  await client.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3_000 });
      await c.connect();
      try {
        await c.query(`drop database if exists ${name} with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}

/**
 * CPU time a process has used so far (user + system), in µs, from
 * /proc/PID/stat; NaN where there is no /proc (not Linux) or the process is gone.
 */
export function cpuMicros(pid: number | undefined, withEndedChildren = false): number {
  if (pid === undefined) return NaN;
  try {
    // The fields after the command name (which may hold spaces) start with the state; utime and stime are the 12th and 13th,
    // then cutime and cstime: what its children that have ended (and been waited for) used.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    const own = Number(fields[11]) + Number(fields[12]);
    const children = withEndedChildren ? Number(fields[13]) + Number(fields[14]) : 0;
    return ((own + children) * 1_000_000) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}

/** Linux's USER_HZ: the unit of /proc's CPU times. It is 100 on every architecture node runs on. */
const CLOCK_TICKS = 100;

/**
 * CPU time used so far by every PostgreSQL process on this machine (the
 * postmaster and its backends, WAL writer, checkpointer…), in µs: the local
 * server's whole cost, which a benchmark against it on loopback adds to the
 * machine's load. NaN without /proc.
 */
export function postgresMicros(): number {
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return NaN;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // With the ended children's time (which lands on the postmaster), a backend that closes during a run still counts.
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').startsWith('postgres')) total += cpuMicros(Number(entry), true) || 0;
    } catch {
      // the process ended meanwhile
    }
  }
  return total;
}

/** This process's own CPU time so far, in µs. */
export const selfMicros = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

export const coreCount = () => cpus().length;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  /** Microseconds before each sample since the one before it (the first: since startTime). */
  timeDeltas: number[];
}

/** What part of the stack a profiled function belongs to: a package, a folder of src/, node itself, or V8. */
function componentOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native/V8)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  // Our own code by file: that is where a fix would go.
  const src = /\/src\/(.+)$/.exec(url);
  if (src) return `src/${src[1]}`;
  if (url.startsWith('node:')) return url.startsWith('node:internal/deps/undici') ? 'node:undici (fetch)' : url.replace(/^node:(internal\/)?([^/]+).*/, 'node:$2');
  return url.replace(/^file:\/\//, '');
}

export interface ProfileSummary {
  totalMs: number;
  functions: { name: string; where: string; ms: number }[];
  components: { name: string; ms: number }[];
}

/**
 * Self time per function and per component, from the busiest .cpuprofile in
 * `dir` (node writes one per thread, and tsx's module loader has its own),
 * counting only the samples between `fromMs` and `toMs` after the profile
 * began, so that start-up and shutdown are left out.
 */
export function summariseProfile(dir: string, fromMs = 0, toMs = Infinity): ProfileSummary | null {
  let best: ProfileSummary | null = null;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
    const summary = summarise(JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile, fromMs, toMs);
    if (best === null || summary.totalMs > best.totalMs) best = summary;
  }
  return best;
}

function summarise(profile: Profile, fromMs: number, toMs: number): ProfileSummary {
  const selfMs = new Map<number, number>();
  let t = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta / 1000;
    if (t >= fromMs && t <= toMs) selfMs.set(id, (selfMs.get(id) ?? 0) + delta / 1000);
  });
  const parents = new Map<number, ProfileNode>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node);
  // tsx runs our sources compiled to one line each: a line number there says nothing.
  const located = (node: ProfileNode) =>
    `${node.callFrame.url.replace(/^file:\/\//, '').replace(ROOT, '')}${node.callFrame.lineNumber > 0 ? `:${node.callFrame.lineNumber + 1}` : ''}`;
  const userland = (node: ProfileNode) => node.callFrame.url !== '' && !node.callFrame.url.startsWith('node:');
  const fns = new Map<string, { name: string; where: string; ms: number }>();
  const comps = new Map<string, number>();
  for (const node of profile.nodes) {
    const ms = selfMs.get(node.id) ?? 0;
    if (ms === 0) continue;
    const { functionName, url } = node.callFrame;
    const name = functionName || '(anonymous)';
    // A syscall or a node internal says little alone: name the package or source file code that led to it.
    let caller = parents.get(node.id);
    while (caller !== undefined && !userland(caller)) caller = parents.get(caller.id);
    const own = url === '' ? '' : located(node);
    const where = userland(node) || caller === undefined ? own : `${own}${own === '' ? '' : ' '}<- ${caller.callFrame.functionName || '(anonymous)'} ${located(caller)}`;
    const key = `${name}\0${where}`;
    const entry = fns.get(key) ?? { name, where, ms: 0 };
    entry.ms += ms;
    fns.set(key, entry);
    const comp = componentOf(url, name);
    comps.set(comp, (comps.get(comp) ?? 0) + ms);
  }
  const busy = (n: string) => n !== '(idle)';
  return {
    totalMs: [...comps].filter(([n]) => busy(n)).reduce((t, [, ms]) => t + ms, 0),
    functions: [...fns.values()].filter((f) => busy(f.name)).sort((a, b) => b.ms - a.ms),
    components: [...comps].filter(([n]) => busy(n)).map(([name, ms]) => ({ name, ms })).sort((a, b) => b.ms - a.ms),
  };
}
