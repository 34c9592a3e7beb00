import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminPost, startChildServer, type ChildServer } from './helpers/child-server.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { writeConfig } from './helpers/harness.ts';

let upstream: FakeUpstream;
let server: ChildServer;
let origin: string;

const admin = (path: string, body: unknown) => adminPost(origin, path, body);

beforeAll(async () => {
  upstream = await startFakeUpstream({ chunks: Array.from({ length: 15 }, (_, i) => `part${i} `), delayBetweenMs: 100 });
  server = await startChildServer(
    { EUGPT_CONFIG: writeConfig(upstream.url), FAKE_UPSTREAM_KEY: 'k', EUGPT_SHUTDOWN_GRACE_MS: '10000' },
    join(mkdtempSync(join(tmpdir(), 'eugpt-shutdown-')), 'data'),
  );
  origin = server.origin;
});

afterAll(async () => {
  server.process.kill('SIGKILL');
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

    server.process.kill('SIGTERM');
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    expect(text).toContain('"type":"response.completed"');
    expect(text).toContain('part14');
    expect(await server.exited).toBe(0);
    await expect(fetch(`${origin}/healthz`)).rejects.toThrow();
  });
});
