// `npm run bench`: the server's overhead over a zero-latency upstream.
// Starts a fake upstream and the server (each in its own process), then sends
// the same load through the server and straight to the upstream, and prints a table.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 1000);
const WARMUP = Math.min(100, REQUESTS);
const PORT = Number(process.env.BENCH_PORT ?? 18_181);
const ADMIN = 'bench-admin-token-0123456789';
const root = new URL('..', import.meta.url).pathname;
const children: ChildProcess[] = [];

function start(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return child;
}

async function firstLine(child: ChildProcess): Promise<string> {
  for await (const line of createInterface({ input: child.stdout! })) return line;
  throw new Error('process exited before printing');
}

async function waitReady(url: string) {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not start');
}

async function admin(url: string, path: string, body: unknown) {
  const res = await fetch(`${url}/admin/v1${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return (await res.json()) as Record<string, string>;
}

interface Sample {
  ttfb: number;
  total: number;
}

/** Sends `count` POSTs at fixed concurrency; times the first body byte and the end of each. */
async function load(origin: string, path: string, headers: Record<string, string>, body: string, count: number): Promise<{ samples: Sample[]; seconds: number }> {
  const pool = new Pool(origin, { connections: CONCURRENCY, pipelining: 1 });
  const samples: Sample[] = [];
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < count) {
      next++;
      const t0 = performance.now();
      const res = await pool.request({ path, method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      let ttfb = 0;
      for await (const _chunk of res.body) if (ttfb === 0) ttfb = performance.now() - t0;
      if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
      samples.push({ ttfb, total: performance.now() - t0 });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  return { samples, seconds };
}

const pct = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

async function main() {
  const upstreamProc = start(['--import', 'tsx', 'scripts/fake-upstream.ts'], { ANSWER_TOKENS: '200' });
  const upstreamUrl = await firstLine(upstreamProc);
  const dir = mkdtempSync(join(tmpdir(), 'eugpt-bench-'));
  const config = join(dir, 'eugpt.yaml');
  writeFileSync(
    config,
    JSON.stringify({
      providers: [{ id: 'fake', type: 'openai-compatible', base_url: upstreamUrl, max_connections: CONCURRENCY * 2 }],
      models: [{ id: 'bench', provider: 'fake', upstream_model: 'fake', context_window: 32768, max_output_tokens: 1024 }],
    }),
  );
  const database = process.env.BENCH_DATABASE_URL;
  start(['bin/eugpt.js', 'serve'], {
    PORT: String(PORT),
    EUGPT_ADMIN_TOKEN: ADMIN,
    EUGPT_CONFIG: config,
    EUGPT_DATA_DIR: join(dir, 'data'),
    LOG_LEVEL: 'warn',
    ...(database ? { DATABASE_URL: database } : {}),
  });
  const server = `http://127.0.0.1:${PORT}`;
  await waitReady(server);
  const org = await admin(server, '/organizations', { name: 'Bench' });
  const user = await admin(server, '/users', { organization_id: org.id, email: `bench-${Date.now()}@example.eu` });
  const key = await admin(server, '/api-keys', { user_id: user.id, label: 'bench' });

  const auth = { authorization: `Bearer ${key.key}` };
  const upstreamPath = `${new URL(upstreamUrl).pathname}/chat/completions`;
  const upstreamBody = JSON.stringify({ model: 'fake', messages: [{ role: 'user', content: 'Benchmark prompt' }], stream: true, stream_options: { include_usage: true } });
  const runs = [
    { name: 'stream:false via eugpt', origin: server, path: '/v1/responses', headers: auth, body: JSON.stringify({ input: 'Benchmark prompt', stream: false }) },
    { name: 'stream:true via eugpt', origin: server, path: '/v1/responses', headers: auth, body: JSON.stringify({ input: 'Benchmark prompt', stream: true }) },
    { name: 'straight to upstream', origin: new URL(upstreamUrl).origin, path: upstreamPath, headers: {}, body: upstreamBody },
  ];

  const results = new Map<string, { rps: number; p50: number; p99: number; ttfb50: number; ttfb99: number }>();
  for (const run of runs) {
    await load(run.origin, run.path, run.headers, run.body, WARMUP);
    const { samples, seconds } = await load(run.origin, run.path, run.headers, run.body, REQUESTS);
    const totals = samples.map((s) => s.total);
    const ttfbs = samples.map((s) => s.ttfb);
    results.set(run.name, { rps: REQUESTS / seconds, p50: pct(totals, 50), p99: pct(totals, 99), ttfb50: pct(ttfbs, 50), ttfb99: pct(ttfbs, 99) });
  }

  const direct = results.get('straight to upstream')!;
  const f = (n: number) => n.toFixed(1).padStart(8);
  process.stdout.write(
    `\neugpt bench: ${REQUESTS} requests at concurrency ${CONCURRENCY}, 200-token answers, database ${database ? 'PostgreSQL' : 'embedded PGlite'}\n\n`,
  );
  process.stdout.write(`${'run'.padEnd(24)}${'req/s'.padStart(8)}${'p50 ms'.padStart(8)}${'p99 ms'.padStart(8)}${'ttfb50'.padStart(8)}${'ttfb99'.padStart(8)}${'rps ratio'.padStart(11)}\n`);
  for (const [name, r] of results) {
    process.stdout.write(`${name.padEnd(24)}${f(r.rps)}${f(r.p50)}${f(r.p99)}${f(r.ttfb50)}${f(r.ttfb99)}${(r.rps / direct.rps).toFixed(2).padStart(11)}\n`);
  }
  process.stdout.write('\nrps ratio: throughput relative to the same load sent straight to the upstream (1.00 = no overhead).\n');
}

try {
  await main();
} finally {
  for (const child of children) child.kill('SIGTERM');
}
