// `npm run bench`: eugpt's throughput and added latency over a zero-latency
// upstream, on PostgreSQL and on embedded PGlite in the same run, beside a
// plain pass-through gateway and the upstream itself. One server process per
// database, one after the other; the fake upstream, the gateway and this
// load generator run alongside, so all of them share the machine's cores.
// Prints one table, then the targets. Every count is an environment setting
// (see `settings` below); BENCH_PROFILE=1 adds where the server's CPU goes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import type { ChildProcess } from 'node:child_process';
import {
  coreCount,
  cpuMicros,
  createDatabase,
  createTenant,
  envNumber as num,
  firstLine,
  killAll,
  postgresMicros,
  selfMicros,
  start,
  startServer,
  stop,
  summariseProfile,
  writeServerConfig,
  type ProfileSummary,
  type Tenant,
} from './harness.ts';

const settings = {
  concurrency: num('BENCH_CONCURRENCY', 50),
  requests: num('BENCH_REQUESTS', 4000),
  /** A run also ends after this long (requests in flight finish), so that slow setups keep the whole bench short. */
  maxSeconds: num('BENCH_MAX_SECONDS', 6),
  /** Requests each server gets before the first measured run, so that no run pays for JIT compilation and cold caches. */
  serverWarmup: num('BENCH_SERVER_WARMUP', 1000),
  /** Requests sent before each measured run, not counted (at most a quarter of the run). */
  warmup: num('BENCH_WARMUP', 300),
  /** Tokens per answer of the throughput runs (the upstream sends them all at once). */
  tokens: num('BENCH_TOKENS', 16),
  tenants: num('BENCH_TENANTS', 8),
  /**
   * The time-to-first-byte run holds this many streams open; its answers
   * trickle (tokens × delay) so that the server is not saturated and the
   * figure is the server's own work rather than a queue.
   */
  ttfbConcurrency: num('BENCH_TTFB_CONCURRENCY', 200),
  ttfbRequests: num('BENCH_TTFB_REQUESTS', 600),
  ttfbTokens: num('BENCH_TTFB_TOKENS', 20),
  ttfbDelayMs: num('BENCH_TTFB_DELAY_MS', 100),
  port: num('BENCH_PORT', 18_181),
  profile: process.env.BENCH_PROFILE === '1',
  /** Which databases to run, in order: `postgres`, `pglite`. */
  databases: (process.env.BENCH_DATABASES ?? 'postgres,pglite').split(',').map((s) => s.trim()).filter(Boolean),
  /** A database to use as it is (not created or dropped), instead of a fresh one on BENCH_PG_ADMIN_URL. */
  databaseUrl: process.env.BENCH_DATABASE_URL || undefined,
  pgAdminUrl: process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
};

interface Result {
  rps: number;
  p50: number;
  p99: number;
  ttfb50: number;
  ttfb99: number;
  errors: number;
  requests: number;
  /** CPU µs per request of each process taking part, over the measured run (see Meter). */
  cpu?: Record<string, number>;
}

/**
 * The cumulative CPU time (µs) of each process taking part in a run, by
 * role: read before and after the measured run, the difference divided by
 * the requests sent is what one request costs each of them.
 */
type Meter = () => Record<string, number>;

const pct = (values: number[], p: number) => {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

interface Load {
  origin: string;
  path: string;
  /** API keys used in turn, request by request (empty: no authorization header). */
  keys: string[];
  body: string;
  /** Text the end of a good answer contains (a streamed answer's terminal event). */
  endsWith?: string;
}

const EMPTY: Buffer = Buffer.alloc(0);

/**
 * Sends `count` POSTs on `concurrency` connections, each as soon as the last
 * ended; times the first body byte and the end. `staggerMs` spreads the
 * connections' first requests over that long, so that long streams arrive
 * evenly rather than in waves of `concurrency` at once.
 */
async function load(l: Load, count: number, concurrency: number, staggerMs = 0): Promise<Result> {
  const pool = new Pool(l.origin, { connections: concurrency, pipelining: 1 });
  const totals: number[] = [];
  const ttfbs: number[] = [];
  let errors = 0;
  let next = 0;
  const started = performance.now();
  const until = started + staggerMs + settings.maxSeconds * 1000;
  const worker = async (w: number) => {
    if (staggerMs > 0) await new Promise((r) => setTimeout(r, (w * staggerMs) / concurrency));
    while (next < count && performance.now() < until) {
      const n = next++;
      const key = l.keys.length === 0 ? undefined : l.keys[n % l.keys.length];
      const t0 = performance.now();
      try {
        const res = await pool.request({
          path: l.path,
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { authorization: `Bearer ${key}` }) },
          body: l.body,
        });
        let ttfb = 0;
        // The last two chunks hold the terminal event (it starts with its type), wherever the socket split it.
        let before: Buffer = EMPTY;
        let last: Buffer = EMPTY;
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          if (ttfb === 0) ttfb = performance.now() - t0;
          before = last;
          last = chunk;
        }
        if (res.statusCode !== 200 || (l.endsWith !== undefined && !Buffer.concat([before, last]).includes(l.endsWith))) {
          errors++;
          continue;
        }
        ttfbs.push(ttfb);
        totals.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, (_, w) => worker(w)));
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  return { rps: totals.length / seconds, p50: pct(totals, 50), p99: pct(totals, 99), ttfb50: pct(ttfbs, 50), ttfb99: pct(ttfbs, 99), errors, requests: next };
}

/** A warm-up (not counted), then the measured run. */
const warmupFor = (count: number) => Math.min(settings.warmup, Math.floor(count / 4));

async function measure(l: Load, count: number, concurrency: number, staggerMs = 0, meter?: Meter): Promise<{ result: Result; sent: number }> {
  const warm = warmupFor(count) > 0 ? await load(l, warmupFor(count), concurrency, staggerMs) : undefined;
  const before = meter?.();
  const result = await load(l, count, concurrency, staggerMs);
  const after = meter?.();
  if (before !== undefined && after !== undefined && result.requests > 0) {
    result.cpu = Object.fromEntries(Object.keys(before).map((role) => [role, (after[role]! - before[role]!) / result.requests]));
  }
  return { result, sent: (warm?.requests ?? 0) + result.requests };
}

/** How long one stream of the time-to-first-byte runs lasts. */
const ttfbStreamMs = () => settings.ttfbTokens * settings.ttfbDelayMs;

const rows: { name: string; r: Result }[] = [];
const notes: string[] = [];
const profiles: { db: string; summary: ProfileSummary; requests: number }[] = [];

/** The mean of runs of the same load (percentiles averaged too: a summary, not a merged distribution). */
function mean(results: Result[]): Result {
  const avg = (pick: (r: Result) => number) => results.reduce((sum, r) => sum + pick(r), 0) / results.length;
  const roles = Object.keys(results[0]?.cpu ?? {});
  return {
    ...(roles.length === 0 ? {} : { cpu: Object.fromEntries(roles.map((role) => [role, avg((r) => r.cpu?.[role] ?? NaN)])) }),
    rps: avg((r) => r.rps),
    p50: avg((r) => r.p50),
    p99: avg((r) => r.p99),
    ttfb50: avg((r) => r.ttfb50),
    ttfb99: avg((r) => r.ttfb99),
    errors: results.reduce((sum, r) => sum + r.errors, 0),
    requests: results.reduce((sum, r) => sum + r.requests, 0),
  };
}

function record(name: string, r: Result) {
  rows.push({ name, r });
  process.stderr.write(`  ${name}: ${r.rps.toFixed(0)} req/s${r.errors > 0 ? `, ${r.errors} errors` : ''}\n`);
}

const prompt = (tokens: number, delayMs = 0) => `Benchmark prompt [[tokens:${tokens}]]${delayMs > 0 ? ` [[delay:${delayMs}]]` : ''}`;

/** Every eugpt run against one server process (one database). */
async function benchServer(db: 'postgres' | 'pglite', upstream: { url: string; child: ChildProcess }, dir: string) {
  let databaseUrl: string | undefined;
  let drop: (() => Promise<void>) | undefined;
  if (db === 'postgres') {
    if (settings.databaseUrl !== undefined) {
      databaseUrl = settings.databaseUrl;
    } else {
      const created = await createDatabase(settings.pgAdminUrl, 'eugpt_bench');
      if (created.url === null) {
        notes.push(`PostgreSQL skipped: cannot create a database on ${settings.pgAdminUrl} (${created.why}); set BENCH_PG_ADMIN_URL or BENCH_DATABASE_URL.`);
        return;
      }
      databaseUrl = created.url;
      drop = created.drop;
    }
  }
  const label = db === 'postgres' ? 'PG' : 'PGlite';
  const profileDir = join(dir, `profile-${db}`);
  const maxConnections = Math.max(512, 2 * settings.concurrency, 2 * settings.ttfbConcurrency);
  process.stderr.write(`${label}: starting the server\n`);
  const spawnedAt = performance.now();
  const server = await startServer({
    port: settings.port,
    config: writeServerConfig(dir, upstream.url, maxConnections),
    dataDir: join(dir, `data-${db}`),
    databaseUrl,
    nodeFlags: settings.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
  });
  // The profile counts only the load, from the first request to the last, and divides by the requests sent meanwhile.
  let served = 0;
  let loadFrom = Infinity;
  let loadTo = 0;
  // Embedded PGlite runs inside the server process: its CPU is the server's.
  const meter: Meter = () => ({
    server: cpuMicros(server.child.pid),
    ...(db === 'postgres' ? { postgres: postgresMicros() } : {}),
    upstream: cpuMicros(upstream.child.pid),
    'load generator': selfMicros(),
  });
  const run = async (l: Load, count: number, concurrency: number, staggerMs = 0) => {
    loadFrom = Math.min(loadFrom, performance.now() - spawnedAt);
    const { result, sent } = await measure(l, count, concurrency, staggerMs, meter);
    served += sent;
    loadTo = performance.now() - spawnedAt;
    return result;
  };
  try {
    const tenants: Tenant[] = [];
    for (let i = 0; i < Math.max(1, settings.tenants); i++) tenants.push(await createTenant(server.url, `Bench ${i + 1}`));
    // A limit no run can reach, so every request really reserves and reconciles its tokens.
    const limited = await createTenant(server.url, 'Bench limited', 1_000_000_000_000);
    const one = [tenants[0]!.key];
    const call = (keys: string[], stream: boolean, text = prompt(settings.tokens)): Load => ({
      origin: server.url,
      path: '/v1/responses',
      keys,
      body: JSON.stringify({ input: text, stream }),
      endsWith: stream ? '"type":"response.completed"' : undefined,
    });
    const { concurrency: c, requests: n } = settings;
    if (settings.serverWarmup > 0) await load(call(tenants.map((t) => t.key).concat(limited.key), false), settings.serverWarmup, c);
    // One tenant and many, alternated and each taken twice, so that neither pays alone for the server warming up.
    const single: Result[] = [];
    const many: Result[] = [];
    for (let round = 0; round < 2; round++) {
      single.push(await run(call(one, false), n, c));
      many.push(await run(call(tenants.map((t) => t.key), false), n, c));
    }
    record(`${label} stream:false 1 tenant`, mean(single));
    record(`${label} stream:false ${tenants.length} tenants`, mean(many));
    record(`${label} stream:false limits`, await run(call([limited.key], false), n, c));
    record(`${label} stream:true`, await run(call(one, true), n, c));
    record(
      `${label} ttfb@${settings.ttfbConcurrency}`,
      await run(call(one, true, prompt(settings.ttfbTokens, settings.ttfbDelayMs)), settings.ttfbRequests, settings.ttfbConcurrency, ttfbStreamMs()),
    );
  } finally {
    await stop(server.child, 30_000);
    await drop?.().catch((err: unknown) => notes.push(`could not drop the benchmark database: ${(err as Error).message}`));
  }
  if (settings.profile) {
    const summary = summariseProfile(profileDir, loadFrom, loadTo);
    if (summary === null) notes.push(`${label}: no CPU profile was written (did the server exit cleanly?)`);
    else profiles.push({ db: label, summary, requests: served });
  }
}

const f = (n: number, digits = 1, width = 8) => (Number.isFinite(n) ? n.toFixed(digits) : '-').padStart(width);
const find = (name: string) => rows.find((r) => r.name === name)?.r;

function printTable() {
  const s = settings;
  const out: string[] = [];
  out.push('');
  out.push(
    `eugpt bench: up to ${s.requests} requests or ${s.maxSeconds} s per run at ${s.concurrency} connections, ${s.tokens}-token answers (zero latency); ` +
      `ttfb runs: ${s.ttfbRequests} streams, ${s.ttfbConcurrency} open at once (staggered), ${s.ttfbTokens} tokens ${s.ttfbDelayMs} ms apart`,
  );
  out.push('');
  out.push(`${'run'.padEnd(30)}${'req/s'.padStart(8)}${'p50 ms'.padStart(8)}${'p99 ms'.padStart(8)}${'ttfb50'.padStart(8)}${'ttfb99'.padStart(8)}${'errors'.padStart(8)}`);
  for (const { name, r } of rows) out.push(`${name.padEnd(30)}${f(r.rps, 0)}${f(r.p50)}${f(r.p99)}${f(r.ttfb50, 2)}${f(r.ttfb99, 2)}${String(r.errors).padStart(8)}`);
  out.push('');

  const gw = find('pass-through stream');
  const direct = find('upstream direct stream');
  const directTtfb = find(`upstream direct ttfb@${s.ttfbConcurrency}`);
  const mark = (ok: boolean) => (ok ? 'ok  ' : 'MISS');
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? NaN : a / b);
  out.push(`${'target'.padEnd(48)}${'PG'.padStart(16)}${'PGlite'.padStart(16)}`);
  const line = (what: string, cell: (label: string) => string) => out.push(`${what.padEnd(48)}${cell('PG').padStart(16)}${cell('PGlite').padStart(16)}`);
  const goal = (value: number, ok: boolean, digits: number) => (Number.isFinite(value) ? `${value.toFixed(digits)} ${mark(ok)}` : '-');
  line('stream:false req/s (PG >= 2500, PGlite >= 1200)', (l) => {
    const v = find(`${l} stream:false 1 tenant`)?.rps ?? NaN;
    return goal(v, v >= (l === 'PG' ? 2500 : 1200), 0);
  });
  line('stream:true req/s', (l) => f(find(`${l} stream:true`)?.rps ?? NaN, 0, 0));
  // Either way round a gap means a bottleneck: one tenant slower than eight is a hot row.
  line(`${s.tenants} tenants / 1 tenant (within 10%)`, (l) => {
    const v = ratio(find(`${l} stream:false ${s.tenants} tenants`)?.rps, find(`${l} stream:false 1 tenant`)?.rps);
    return goal(v, Math.abs(v - 1) <= 0.1, 2);
  });
  line('token limits / none (within 25%)', (l) => {
    const v = ratio(find(`${l} stream:false limits`)?.rps, find(`${l} stream:false 1 tenant`)?.rps);
    return goal(v, Math.abs(v - 1) <= 0.25, 2);
  });
  line('stream:false / pass-through gateway', (l) => f(ratio(find(`${l} stream:false 1 tenant`)?.rps, gw?.rps), 2, 0));
  line('stream:true / pass-through gateway', (l) => f(ratio(find(`${l} stream:true`)?.rps, gw?.rps), 2, 0));
  line(`added TTFB p50 ms @${s.ttfbConcurrency} streams (<= 2)`, (l) => {
    const v = (find(`${l} ttfb@${s.ttfbConcurrency}`)?.ttfb50 ?? NaN) - (directTtfb?.ttfb50 ?? NaN);
    return goal(v, v <= 2, 2);
  });
  line(`added TTFB p99 ms @${s.ttfbConcurrency} streams`, (l) => f((find(`${l} ttfb@${s.ttfbConcurrency}`)?.ttfb99 ?? NaN) - (directTtfb?.ttfb99 ?? NaN), 2, 0));
  out.push('');
  out.push(
    `pass-through gateway: scripts/passthrough-gateway.ts (undici pool, body streamed through); ${f(ratio(gw?.rps, direct?.rps), 2, 0)} of straight-to-upstream req/s.`,
  );
  out.push('Added TTFB: first body byte via eugpt minus straight to the upstream, same load (percentiles of each side, not of paired requests).');
  const gwTtfb = find(`pass-through ttfb@${s.ttfbConcurrency}`);
  out.push(
    `The pass-through gateway's own added TTFB @${s.ttfbConcurrency} streams (one proxy hop, no database): p50 ${f((gwTtfb?.ttfb50 ?? NaN) - (directTtfb?.ttfb50 ?? NaN), 2, 0)} ms, p99 ${f((gwTtfb?.ttfb99 ?? NaN) - (directTtfb?.ttfb99 ?? NaN), 2, 0)} ms.`,
  );
  out.push('All processes share this machine: treat differences under ~10% between runs as noise.');
  for (const n of notes) out.push(n);
  process.stdout.write(`${out.join('\n')}\n`);
}

/**
 * Where the machine's CPU goes per request, process by process, and what
 * that allows: every process shares the machine's cores, and a node process
 * runs its JavaScript on one of them.
 */
function printCpu() {
  const measured = rows.filter((r) => r.r.cpu !== undefined);
  if (measured.length === 0) return;
  const cores = coreCount();
  const roles = ['server', 'gateway', 'postgres', 'upstream', 'load generator'];
  const out: string[] = [''];
  out.push(`CPU µs per request by process (from /proc, over each measured run; ${cores} cores; PGlite runs inside the server)`);
  out.push(`${'run'.padEnd(30)}${roles.map((r) => r.padStart(10)).join('')}${'total'.padStart(8)}${'cores/total'.padStart(13)}${'1 core/front'.padStart(14)}`);
  for (const { name, r } of measured) {
    const cpu = r.cpu!;
    const total = Object.values(cpu).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
    const front = cpu.server ?? cpu.gateway ?? NaN;
    out.push(
      `${name.padEnd(30)}${roles.map((role) => f(cpu[role] ?? NaN, 0, 10)).join('')}${f(total, 0)}${f((cores * 1e6) / total, 0, 13)}${f(1e6 / front, 0, 14)}`,
    );
  }
  out.push('cores/total: the req/s at which these costs fill every core; 1 core/front: where the server (or gateway) fills its own one.');
  // The target's budget: what is left for the server per request at the target rate, after the others' measured costs.
  for (const [label, target] of [
    ['PG', 2500],
    ['PGlite', 1200],
  ] as const) {
    const cpu = find(`${label} stream:false 1 tenant`)?.cpu;
    if (cpu === undefined) continue;
    const others = Object.entries(cpu).reduce((t, [role, us]) => (role === 'server' ? t : t + us), 0);
    const left = Math.min((cores * 1e6) / target - others, 1e6 / target);
    out.push(
      `${label} at ${target} req/s: ${((cores * 1e6) / target).toFixed(0)} µs of CPU per request in all; the others take ${others.toFixed(0)}, ` +
        `which leaves the server ${left.toFixed(0)} µs (it used ${cpu.server!.toFixed(0)})`,
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

function printProfiles() {
  for (const { db, summary, requests } of profiles) {
    const us = (ms: number) => ((ms * 1000) / requests).toFixed(1).padStart(9);
    const out: string[] = [];
    out.push('');
    out.push(
      `CPU profile, ${db} server, during the load: ${summary.totalMs.toFixed(0)} ms busy over ${requests} requests = ${us(summary.totalMs).trim()} µs/request (profiling slows the server: req/s above are lower)`,
    );
    out.push(`${'top self time'.padEnd(40)}${'µs/req'.padStart(9)}${'%'.padStart(6)}  where`);
    for (const fn of summary.functions.slice(0, 15)) {
      out.push(`${fn.name.slice(0, 39).padEnd(40)}${us(fn.ms)}${((100 * fn.ms) / summary.totalMs).toFixed(1).padStart(6)}  ${fn.where}`);
    }
    out.push(`${'by component'.padEnd(40)}${'µs/req'.padStart(9)}${'%'.padStart(6)}`);
    for (const c of summary.components.slice(0, 15)) out.push(`${c.name.slice(0, 39).padEnd(40)}${us(c.ms)}${((100 * c.ms) / summary.totalMs).toFixed(1).padStart(6)}`);
    process.stdout.write(`${out.join('\n')}\n`);
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'eugpt-bench-'));
  try {
    const upstream = start(['--import', 'tsx', 'scripts/fake-upstream.ts'], { ANSWER_TOKENS: String(settings.tokens), TOKEN_DELAY_MS: '0' });
    const upstreamUrl = await firstLine(upstream);
    const gateway = start(['--import', 'tsx', 'scripts/passthrough-gateway.ts'], {
      UPSTREAM_URL: upstreamUrl,
      GATEWAY_CONNECTIONS: String(Math.max(512, 2 * settings.ttfbConcurrency)),
    });
    const gatewayUrl = await firstLine(gateway);

    for (const db of settings.databases) {
      if (db !== 'postgres' && db !== 'pglite') throw new Error(`BENCH_DATABASES: unknown database ${db}`);
      await benchServer(db, { url: upstreamUrl, child: upstream }, dir);
    }

    const chat = (tokens: number, delayMs = 0) =>
      JSON.stringify({ model: 'fake', messages: [{ role: 'user', content: prompt(tokens, delayMs) }], stream: true, stream_options: { include_usage: true } });
    const peer = (base: string, body: string): Load => ({ origin: new URL(base).origin, path: `${new URL(base).pathname}/chat/completions`, keys: [], body, endsWith: '[DONE]' });
    process.stderr.write('peers\n');
    const peerMeter = (front?: ChildProcess): Meter => () => ({
      ...(front === undefined ? {} : { gateway: cpuMicros(front.pid) }),
      upstream: cpuMicros(upstream.pid),
      'load generator': selfMicros(),
    });
    record('pass-through stream', (await measure(peer(gatewayUrl, chat(settings.tokens)), settings.requests, settings.concurrency, 0, peerMeter(gateway))).result);
    record('upstream direct stream', (await measure(peer(upstreamUrl, chat(settings.tokens)), settings.requests, settings.concurrency, 0, peerMeter())).result);
    record(
      `pass-through ttfb@${settings.ttfbConcurrency}`,
      (await measure(peer(gatewayUrl, chat(settings.ttfbTokens, settings.ttfbDelayMs)), settings.ttfbRequests, settings.ttfbConcurrency, ttfbStreamMs(), peerMeter(gateway))).result,
    );
    record(
      `upstream direct ttfb@${settings.ttfbConcurrency}`,
      (await measure(peer(upstreamUrl, chat(settings.ttfbTokens, settings.ttfbDelayMs)), settings.ttfbRequests, settings.ttfbConcurrency, ttfbStreamMs())).result,
    );
    printTable();
    printCpu();
    printProfiles();
  } finally {
    killAll();
    // BENCH_KEEP=1 keeps the CPU profiles (and the embedded database) for a closer look.
    if (process.env.BENCH_KEEP === '1') console.log(`kept: ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

await main();
