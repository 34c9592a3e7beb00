import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN } from './helpers/app.ts';
import { TEST_DATABASE_URL } from './helpers/db.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { writeConfig } from './helpers/harness.ts';

const BIN = new URL('../bin/eugpt.js', import.meta.url).pathname;
let upstream: FakeUpstream;
let server: ChildProcess;
let origin: string;
let exited: Promise<number | null>;

async function admin(path: string, body: unknown) {
  const res = await fetch(`${origin}/admin/v1${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return (await res.json()) as Record<string, string>;
}

beforeAll(async () => {
  upstream = await startFakeUpstream({ chunks: Array.from({ length: 15 }, (_, i) => `part${i} `), delayBetweenMs: 100 });
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  origin = `http://127.0.0.1:${port}`;
  server = spawn(process.execPath, [BIN, 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      PORT: String(port),
      EUGPT_ADMIN_TOKEN: ADMIN_TOKEN,
      EUGPT_CONFIG: writeConfig(upstream.url),
      FAKE_UPSTREAM_KEY: 'k',
      EUGPT_DATA_DIR: join(mkdtempSync(join(tmpdir(), 'eugpt-shutdown-')), 'data'),
      EUGPT_SHUTDOWN_GRACE_MS: '10000',
      LOG_LEVEL: 'warn',
      ...(TEST_DATABASE_URL ? { DATABASE_URL: TEST_DATABASE_URL } : {}),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  exited = new Promise((resolve) => server.on('exit', (code) => resolve(code)));
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(`${origin}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not start');
});

afterAll(async () => {
  server.kill('SIGKILL');
  await upstream.close();
});

describe('graceful shutdown', () => {
  it('lets a stream in flight finish after SIGTERM, then exits cleanly', { timeout: 30_000 }, async () => {
    const org = await admin('/organizations', { name: 'Shutdown' });
    const user = await admin('/users', { organization_id: org.id, email: `${Date.now()}@shutdown.eu` });
    const key = await admin('/api-keys', { user_id: user.id, label: 'k' });

    const res = await fetch(`${origin}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ input: 'a slow answer' }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('output_text.delta')) text += decoder.decode((await reader.read()).value, { stream: true });

    server.kill('SIGTERM');
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    expect(text).toContain('"type":"response.completed"');
    expect(text).toContain('part14');
    expect(await exited).toBe(0);
    await expect(fetch(`${origin}/healthz`)).rejects.toThrow();
  });
});
