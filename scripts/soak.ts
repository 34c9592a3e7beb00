// `npm run soak`: thousands of streams opened at once against one server on
// PostgreSQL, each a long trickled answer, then a check that every one was
// stored and metered. Prints how the streams ended (by error code), what the
// database holds afterwards, and the server's peak memory.
//
// Everything runs on loopback and stops by itself: after SOAK_TIMEOUT_S the
// streams still open are aborted and counted as `client_timeout`.
import { setMaxListeners } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Pool } from 'undici';
import { ADMIN, createDatabase, createTenant, envNumber as num, firstLine, killAll, start, startServer, stop, summariseProfile, writeServerConfig, type ProfileSummary } from './harness.ts';

const settings = {
  streams: num('SOAK_STREAMS', 5000),
  tokens: num('SOAK_TOKENS', 300),
  delayMs: num('SOAK_DELAY_MS', 100),
  /** The server's PostgreSQL pool: group commit needs few connections, but admissions of thousands at once queue for them. */
  dbPoolMax: num('SOAK_DB_POOL_MAX', 40),
  timeoutS: num('SOAK_TIMEOUT_S', 420),
  port: num('SOAK_PORT', 18_282),
  pgAdminUrl: process.env.SOAK_PG_ADMIN_URL ?? process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  rssLimitMiB: 1024,
  /** SOAK_PROFILE=1: a CPU profile of the server while the streams run, per token delivered. */
  profile: process.env.SOAK_PROFILE === '1',
  /**
   * Node.js flags for the server (SOAK_SERVER_FLAGS; empty for none). By
   * default the heap ceiling the container image sets in NODE_OPTIONS
   * (Dockerfile): without one V8 sizes the heap from the machine's memory and
   * lets garbage pile up between full collections.
   */
  serverFlags: (process.env.SOAK_SERVER_FLAGS ?? '--max-old-space-size=768').split(' ').filter((f) => f !== ''),
};

const TERMINAL = new Set(['response.completed', 'response.failed', 'response.incomplete', 'error']);

interface Ending {
  /** `completed`, or an error code. */
  outcome: string;
  /** The server answered 200: the stream was admitted, so it must have a stored row. */
  admitted: boolean;
  ttfbMs: number;
  totalMs: number;
  tokens: number;
}

/** How a stream ended, from its last events. */
function endingOf(tail: string): { outcome: string; tokens: number } {
  const frames = tail.split('\n\n');
  for (let i = frames.length - 1; i >= 0; i--) {
    const data = /^data: (.*)$/m.exec(frames[i]!)?.[1];
    if (data === undefined) continue;
    let event: { type?: string; code?: string; response?: { usage?: { total_tokens?: number }; error?: { code?: string }; incomplete_details?: { reason?: string } } };
    try {
      event = JSON.parse(data) as typeof event;
    } catch {
      continue; // the start of the tail may cut a frame
    }
    if (!TERMINAL.has(event.type ?? '')) continue;
    const tokens = event.response?.usage?.total_tokens ?? 0;
    if (event.type === 'response.completed') return { outcome: 'completed', tokens };
    if (event.type === 'error') return { outcome: event.code ?? 'error', tokens };
    if (event.type === 'response.failed') return { outcome: `failed:${event.response?.error?.code ?? '?'}`, tokens };
    return { outcome: `incomplete:${event.response?.incomplete_details?.reason ?? '?'}`, tokens };
  }
  return { outcome: 'no_terminal_event', tokens: 0 };
}

async function openStream(pool: Pool, key: string, body: string, signal: AbortSignal): Promise<Ending> {
  const t0 = performance.now();
  let ttfbMs = NaN;
  let admitted = false;
  try {
    const res = await pool.request({
      path: '/v1/responses',
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body,
      signal,
    });
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      let code = 'unknown';
      try {
        code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? code;
      } catch {
        // not JSON
      }
      return { outcome: `http_${res.statusCode}:${code}`, admitted: false, ttfbMs: performance.now() - t0, totalMs: performance.now() - t0, tokens: 0 };
    }
    // Only the end matters: keep the last few chunks, which hold the terminal event.
    admitted = true;
    const tail: Buffer[] = [];
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (Number.isNaN(ttfbMs)) ttfbMs = performance.now() - t0;
      tail.push(chunk);
      if (tail.length > 3) tail.shift();
    }
    return { ...endingOf(Buffer.concat(tail).toString('utf8')), admitted, ttfbMs, totalMs: performance.now() - t0 };
  } catch (err) {
    const code = signal.aborted ? 'client_timeout' : ((err as { code?: string }).code ?? (err as Error).name);
    return { outcome: code, admitted, ttfbMs, totalMs: performance.now() - t0, tokens: 0 };
  }
}

function openFilesLimit(): number {
  const line = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
  return line === undefined || line === 'unlimited' ? Infinity : Number(line);
}

const rssMiB = (pid: number) => {
  try {
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? NaN : Number(kb) / 1024;
  } catch {
    return NaN;
  }
};

const pct = (values: number[], p: number) => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

async function main(): Promise<number> {
  const s = settings;
  // This process holds one socket per stream; the server (which inherits the limit) two, and its database pool.
  const needed = 2 * s.streams + s.dbPoolMax + 200;
  const limit = openFilesLimit();
  if (limit < needed) {
    process.stderr.write(
      `soak: the open-files limit is ${limit}, and ${s.streams} streams need about ${needed} (the server holds a client and an upstream socket per stream).\n` +
        `Raise it for this shell (\`ulimit -n ${Math.max(needed, 16384)}\`) or run fewer streams (SOAK_STREAMS=2000).\n`,
    );
    return 2;
  }

  const db = await createDatabase(s.pgAdminUrl, 'eugpt_soak');
  if (db.url === null) {
    process.stderr.write(`soak: needs PostgreSQL: cannot create a database on ${s.pgAdminUrl} (${db.why}); set SOAK_PG_ADMIN_URL.\n`);
    return 2;
  }
  const dir = mkdtempSync(join(tmpdir(), 'eugpt-soak-'));
  const hardStop = new AbortController();
  // Every stream listens to it.
  setMaxListeners(0, hardStop.signal);
  const deadline = setTimeout(() => hardStop.abort(), s.timeoutS * 1000);
  const lines: string[] = [];
  let failedChecks = 0;
  let profileLines: string[] = [];
  try {
    const upstream = start(['--import', 'tsx', 'scripts/fake-upstream.ts'], { ANSWER_TOKENS: String(s.tokens), TOKEN_DELAY_MS: String(s.delayMs) });
    const upstreamUrl = await firstLine(upstream);
    const profileDir = join(dir, 'profile');
    const spawnedAt = performance.now();
    const server = await startServer({
      port: s.port,
      nodeFlags: [...s.serverFlags, ...(s.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
      // Every stream holds an upstream connection to its end.
      config: writeServerConfig(dir, upstreamUrl, Math.max(5000, s.streams + 100), Math.max(1024, s.tokens * 2)),
      dataDir: join(dir, 'data'),
      databaseUrl: db.url,
      env: { EUGPT_DB_POOL_MAX: String(s.dbPoolMax) },
    });
    const pid = server.child.pid!;
    // Admission really reserves tokens, so that the check below can see every reservation given back.
    const tenant = await createTenant(server.url, 'Soak', 1_000_000_000_000);
    // Another tenant, and the operator, use the server during the burst: how long do they wait?
    const bystander = await createTenant(server.url, 'Bystander');
    const probes: number[] = [];
    const probe = async () => {
      const t0 = performance.now();
      await Promise.all([
        fetch(`${server.url}/v1/models`, { headers: { authorization: `Bearer ${bystander.key}` } }).then((r) => r.arrayBuffer()),
        fetch(`${server.url}/admin/v1/organizations?limit=1`, { headers: { authorization: `Bearer ${ADMIN}` } }).then((r) => r.arrayBuffer()),
      ]).catch(() => undefined);
      probes.push(performance.now() - t0);
    };
    let probing = true;
    const prober = (async () => {
      while (probing) {
        await probe();
        await new Promise((r) => setTimeout(r, 250));
      }
    })();

    let rssPeak = rssMiB(pid);
    const rssAtStart = rssPeak;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssMiB(pid) || 0)), 500);

    process.stderr.write(`soak: opening ${s.streams} streams of ${s.tokens} tokens, ${s.delayMs} ms apart\n`);
    const pool = new Pool(server.url, { connections: s.streams, pipelining: 1, headersTimeout: s.timeoutS * 1000, bodyTimeout: 120_000, connectTimeout: 60_000 });
    const body = JSON.stringify({ input: `Soak prompt [[tokens:${s.tokens}]] [[delay:${s.delayMs}]]`, stream: true });
    const started = performance.now();
    const loadFrom = started - spawnedAt;
    let ended = 0;
    const progress = setInterval(
      () => process.stderr.write(`  ${((performance.now() - started) / 1000).toFixed(0)} s: ${ended}/${s.streams} ended, server RSS ${rssMiB(pid).toFixed(0)} MiB\n`),
      10_000,
    );
    const endings = await Promise.all(
      Array.from({ length: s.streams }, () =>
        openStream(pool, tenant.key, body, hardStop.signal).then((e) => {
          ended++;
          return e;
        }),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    const loadTo = performance.now() - spawnedAt;
    probing = false;
    await prober;
    clearInterval(progress);
    await pool.destroy();

    const outcomes = new Map<string, number>();
    for (const e of endings) outcomes.set(e.outcome, (outcomes.get(e.outcome) ?? 0) + 1);
    const completed = outcomes.get('completed') ?? 0;
    const clientTokens = endings.reduce((t, e) => t + (e.outcome === 'completed' ? e.tokens : 0), 0);

    // Failed and cut responses are written after their client hears of it: give those writes a moment.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const q = async (sql: string, params: unknown[] = []) => (await client.query<Record<string, string | null>>(sql, params)).rows[0]!;
    for (let i = 0; i < 30; i++) {
      const { n } = await q(`select count(*)::text as n from responses where organization_id = $1 and status = 'in_progress'`, [tenant.orgId]);
      if (n === '0') break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const byStatus = await client.query<{ status: string; n: string; tokens: string }>(
      `select status, count(*)::text as n, coalesce(sum(total_tokens), 0)::text as tokens from responses where organization_id = $1 group by status order by status`,
      [tenant.orgId],
    );
    const status = new Map(byStatus.rows.map((r) => [r.status, Number(r.n)]));
    const storedTokens = byStatus.rows.reduce((t, r) => t + Number(r.tokens), 0);
    const completedTokens = Number(byStatus.rows.find((r) => r.status === 'completed')?.tokens ?? 0);
    const usage = await q(
      `select coalesce(sum(total_tokens), 0)::text as tokens, coalesce(sum(requests), 0)::text as requests from usage_totals
        where subject_type = 'organization' and subject_id = $1 and "window" = 'day'`,
      [tenant.orgId],
    );
    const userUsage = await q(`select coalesce(sum(total_tokens), 0)::text as tokens from usage_totals where subject_type = 'user' and subject_id = $1 and "window" = 'day'`, [
      tenant.userId,
    ]);
    const reserved = await q(`select coalesce(sum(reserved_tokens), 0)::text as n from usage_totals where subject_id = any($1::uuid[])`, [[tenant.orgId, tenant.userId]]);
    const reservations = await q(`select count(*)::text as n from reservations`);
    await client.end();

    clearInterval(sampler);
    rssPeak = Math.max(rssPeak, rssMiB(pid) || 0);
    await stop(server.child, 30_000);
    if (s.profile) profileLines = profileReport(summariseProfile(profileDir, loadFrom, loadTo), endings.filter((e) => e.admitted).length * s.tokens);

    const check = (what: string, ok: boolean, detail: string) => {
      if (!ok) failedChecks++;
      lines.push(`  ${ok ? 'ok  ' : 'FAIL'} ${what.padEnd(52)} ${detail}`);
    };
    const totalRows = [...status.values()].reduce((a, b) => a + b, 0);
    const ttfbs = endings.map((e) => e.ttfbMs);
    const totals = endings.filter((e) => e.outcome === 'completed').map((e) => e.totalMs);

    lines.unshift(
      '',
      `eugpt soak: ${s.streams} streams opened at once on PostgreSQL (pool ${s.dbPoolMax}), ${s.tokens} tokens ${s.delayMs} ms apart (${((s.tokens * s.delayMs) / 1000).toFixed(0)} s each at best); server flags: ${s.serverFlags.join(' ') || 'none'}`,
      `  all ended after ${seconds.toFixed(1)} s; time to first byte p50 ${pct(ttfbs, 50).toFixed(0)} ms, p99 ${pct(ttfbs, 99).toFixed(0)} ms; completed stream p50 ${(pct(totals, 50) / 1000).toFixed(1)} s, p99 ${(pct(totals, 99) / 1000).toFixed(1)} s`,
      `  endings: ${[...outcomes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`,
      `  stored responses by status: ${[...status].map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
      `  another tenant's /v1/models with an admin listing, every 250 ms during the burst: p50 ${pct(probes, 50).toFixed(0)} ms, max ${Math.max(...probes).toFixed(0)} ms (${probes.length} probes)`,
      '',
    );
    check('every stream completed', completed === s.streams, `${completed} of ${s.streams}`);
    check('stored completed rows = streams that completed', status.get('completed') === completed, `${status.get('completed') ?? 0} rows, ${completed} streams`);
    const admitted = endings.filter((e) => e.admitted).length;
    check('a stored row for every admitted stream', totalRows === admitted, `${totalRows} rows, ${admitted} admitted (answered 200)`);
    check('no row left in_progress', (status.get('in_progress') ?? 0) === 0, `${status.get('in_progress') ?? 0}`);
    check('metered = stored (organisation, day windows)', Number(usage.tokens) === storedTokens, `${usage.tokens} metered, ${storedTokens} stored`);
    check('metered = stored (user, day windows)', Number(userUsage.tokens) === storedTokens, `${userUsage.tokens} metered, ${storedTokens} stored`);
    check('requests counted = rows', Number(usage.requests) === totalRows, `${usage.requests} counted, ${totalRows} rows`);
    check('clients saw the stored tokens of completed ones', clientTokens === completedTokens, `${clientTokens} seen, ${completedTokens} stored`);
    check('reserved_tokens back to 0', reserved.n === '0', `${reserved.n}`);
    check('no reservation left', reservations.n === '0', `${reservations.n}`);
    check(`server RSS peak < ${s.rssLimitMiB} MiB`, rssPeak < s.rssLimitMiB, `${rssPeak.toFixed(0)} MiB (idle after start: ${rssAtStart.toFixed(0)} MiB)`);
  } finally {
    clearTimeout(deadline);
    killAll();
    await db.drop().catch((err: unknown) => lines.push(`could not drop the soak database: ${(err as Error).message}`));
    rmSync(dir, { recursive: true, force: true });
  }
  lines.push(...profileLines, '', 'All processes share this machine; timings depend on its load.');
  process.stdout.write(`${lines.join('\n')}\n`);
  return failedChecks === 0 ? 0 : 1;
}

/** Where the server's CPU went while the streams ran, in µs per token event sent to a client. */
function profileReport(summary: ProfileSummary | null, events: number): string[] {
  if (summary === null) return ['', 'no CPU profile was written (did the server exit cleanly?)'];
  const us = (ms: number) => ((ms * 1000) / events).toFixed(2).padStart(9);
  const share = (ms: number) => ((100 * ms) / summary.totalMs).toFixed(1).padStart(6);
  return [
    '',
    `CPU profile of the server while the streams ran: ${summary.totalMs.toFixed(0)} ms busy over ${events} token events = ${us(summary.totalMs).trim()} µs/event (profiling slows the server)`,
    `${'top self time'.padEnd(40)}${'µs/event'.padStart(9)}${'%'.padStart(6)}  where`,
    ...summary.functions.slice(0, 20).map((fn) => `${fn.name.slice(0, 39).padEnd(40)}${us(fn.ms)}${share(fn.ms)}  ${fn.where}`),
    `${'by component'.padEnd(40)}${'µs/event'.padStart(9)}${'%'.padStart(6)}`,
    ...summary.components.slice(0, 15).map((c) => `${c.name.slice(0, 39).padEnd(40)}${us(c.ms)}${share(c.ms)}`),
  ];
}

// Whatever happens, the script ends: a minute past its own deadline it exits.
setTimeout(() => {
  process.stderr.write('soak: still running past its deadline; exiting\n');
  killAll();
  process.exit(3);
}, (settings.timeoutS + 60) * 1000).unref();

process.exitCode = await main();
