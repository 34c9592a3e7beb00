import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.ts';
import { probeProvider } from '../src/providers/probe.ts';
import type { ProviderConfig } from '../src/router/catalog.ts';
import { bearer, createTenant, testApp, type Tenant } from './helpers/app.ts';
import { openTestDatabase } from './helpers/db.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { writeConfigFile } from './helpers/harness.ts';

/** A port nothing listens on: a server's, once it closed. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A model server that answers the model list with `status`, or never answers; it records the headers it got. */
async function modelServer(status: number | 'hang') {
  const seen: IncomingHttpHeaders[] = [];
  const server: Server = createServer((req, res) => {
    seen.push(req.headers);
    if (status !== 'hang') res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  return {
    url,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const provider = (base_url: string, type: ProviderConfig['type'] = 'openai-compatible', apiKey?: string) =>
  ({ id: 'p', type, base_url, apiKey, headers: { 'x-extra': '1' } }) as unknown as ProviderConfig;

describe('a probe of one provider', () => {
  it('asks the model list with the key, and tells reachable, refused, failing, closed and silent apart', async () => {
    const ok = await modelServer(200);
    const refused = await modelServer(401);
    const failing = await modelServer(503);
    const silent = await modelServer('hang');
    try {
      expect(await probeProvider(provider(ok.url, 'openai-compatible', 'sk-1'), 2_000)).toEqual({ ok: true });
      expect(ok.seen[0]).toMatchObject({ authorization: 'Bearer sk-1', 'x-extra': '1' });
      expect(await probeProvider(provider(`${ok.url}/`, 'anthropic', 'sk-2'), 2_000)).toEqual({ ok: true });
      expect(ok.seen[1]).toMatchObject({ 'x-api-key': 'sk-2', 'anthropic-version': expect.any(String) });
      expect(ok.seen[1]!.authorization).toBeUndefined();
      expect(await probeProvider(provider(refused.url, 'openai-compatible', 'sk-1'), 2_000)).toEqual({ ok: false, reason: 'refused the API key (HTTP 401)' });
      expect(await probeProvider(provider(failing.url), 2_000)).toEqual({ ok: false, reason: 'answered HTTP 503' });
      expect(await probeProvider(provider(`http://127.0.0.1:${await deadPort()}/v1`), 2_000)).toEqual({ ok: false, reason: 'cannot connect (ECONNREFUSED)' });
      expect(await probeProvider(provider(silent.url), 200)).toEqual({ ok: false, reason: 'no answer within 200 ms' });
    } finally {
      await Promise.all([ok.close(), refused.close(), failing.close(), silent.close()]);
    }
  });
});

describe('probes at start and readiness', () => {
  let database: Database;
  let app: FastifyInstance;
  let live: FakeUpstream;
  let deadUrl: string;
  let tenant: Tenant;
  const lines: string[] = [];

  beforeAll(async () => {
    database = await openTestDatabase();
    live = await startFakeUpstream();
    deadUrl = `http://127.0.0.1:${await deadPort()}/v1`;
    const model = { upstream_model: 'm', categories: ['fast', 'general'], context_window: 32768, max_output_tokens: 1024, price: { input: 0.1, output: 0.3 } };
    const config = writeConfigFile({
      providers: [
        { id: 'live', type: 'openai-compatible', base_url: live.url, api_key_env: 'PROBE_TEST_KEY' },
        { id: 'dead', type: 'openai-compatible', base_url: deadUrl, api_key_env: 'PROBE_TEST_KEY' },
      ],
      models: [
        { id: 'live-model', provider: 'live', ...model },
        { id: 'dead-model', provider: 'dead', ...model },
      ],
    });
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    app = await testApp(database, { EUGPT_CONFIG: config, PROBE_TEST_KEY: 'sk-secret-probe-key', EUGPT_PROBE_INTERVAL_MS: '200' }, pino({ level: 'info' }, sink));
    tenant = await createTenant(app);
  });
  afterAll(async () => {
    await app.close();
    await live.close();
    await database.close();
  });

  it('is degraded while one model server is down, not ready when none answers, and logs a failing model once', async () => {
    await app.probes.firstRound;
    expect(live.probes).toBeGreaterThan(0);
    const degraded = await app.inject({ method: 'GET', url: '/readyz' });
    expect(degraded.statusCode).toBe(200);
    expect(degraded.json().checks.models).toBe(`degraded: dead-model unreachable: dead at ${deadUrl}: cannot connect (ECONNREFUSED)`);
    expect(lines.filter((l) => l.includes('"msg":"model server unreachable"') && l.includes(deadUrl))).toHaveLength(1);

    await live.close();
    let down = await app.inject({ method: 'GET', url: '/readyz' });
    for (let i = 0; i < 100 && down.statusCode === 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      down = await app.inject({ method: 'GET', url: '/readyz' });
    }
    expect(down.statusCode).toBe(503);
    expect(down.json().error).toMatchObject({ code: 'not_ready', message: expect.stringMatching(/^no model is reachable: /) });
    expect(down.json().checks.models).toContain(`dead at ${deadUrl}: cannot connect (ECONNREFUSED)`);
    expect(down.json().checks.models).toContain(`live at ${live.url}: cannot connect (ECONNREFUSED)`);
    expect(down.body).not.toContain('sk-secret-probe-key');

    lines.length = 0;
    for (let i = 0; i < 3; i++) {
      const res = await app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(tenant.key), payload: { input: 'Hi', stream: false } });
      expect(res.statusCode).toBe(502);
    }
    const failed = lines.filter((l) => l.includes('"msg":"model server failed'));
    expect(failed.map((l) => (JSON.parse(l) as { model: string }).model).sort()).toEqual(['dead-model', 'live-model']);
    expect(lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50)).toEqual([]);
    expect(lines.join('')).not.toMatch(/"stack"|sk-secret-probe-key/);
  });
});
