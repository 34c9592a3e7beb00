import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { adminHeaders, bearer, createTenant, testApp } from './helpers/app.ts';
import { openTestDatabase } from './helpers/db.ts';
import { startHarness, type Harness } from './helpers/harness.ts';

let h: Harness;

beforeAll(async () => {
  // A small context window, so that history trimming is visible; the sliding window alone (summaries: conversations-summary.test.ts).
  h = await startHarness({ model: { context_window: 400, max_output_tokens: 100 }, conversations: { summaries: { enabled: false } } });
});
afterAll(async () => h.close());
beforeEach(() => {
  h.upstream.queue.length = 0;
});

const create = (payload: Record<string, unknown>, key = h.tenant.key) =>
  h.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(key), payload });

const lastUpstream = () => h.upstream.requests.at(-1)!;

describe('what the upstream receives', () => {
  it('a streamed chat completion with usage, the upstream model name, the key and the sampling fields', async () => {
    const res = await create({
      input: 'Hi',
      stream: false,
      temperature: 0.3,
      top_p: 0.8,
      max_output_tokens: 50,
      text: { format: { type: 'json_schema', name: 'reply', schema: { type: 'object' }, strict: true } },
    });
    expect(res.statusCode).toBe(200);
    const { body, headers } = lastUpstream();
    expect(headers.authorization).toBe('Bearer sk-upstream-secret');
    expect(body).toEqual({
      model: 'llama3.2:3b',
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 50,
      temperature: 0.3,
      top_p: 0.8,
      response_format: { type: 'json_schema', json_schema: { name: 'reply', schema: { type: 'object' }, strict: true } },
    });
    expect(res.json()).toMatchObject({ temperature: 0.3, top_p: 0.8, max_output_tokens: 50 });
  });

  it('caps max_output_tokens at the model maximum', async () => {
    await create({ input: 'Hi', stream: false, max_output_tokens: 100_000 });
    expect(lastUpstream().body.max_tokens).toBe(100);
  });

  it('instructions apply to this response only when the conversation already exists', async () => {
    h.upstream.queue.push({ chunks: ['one'] }, { chunks: ['two'] }, { chunks: ['three'] });
    const first = (await create({ input: 'a', instructions: 'Stored system prompt', stream: false })).json();
    await create({ input: 'b', instructions: 'Just this once', conversation_id: first.conversation_id, stream: false });
    expect(lastUpstream().body.messages[0]).toEqual({ role: 'system', content: 'Just this once' });
    await create({ input: 'c', conversation_id: first.conversation_id, stream: false });
    expect(lastUpstream().body.messages[0]).toEqual({ role: 'system', content: 'Stored system prompt' });
  });

  it('keeps only the newest history that fits the context window', async () => {
    const long = 'word '.repeat(60);
    const first = (await create({ input: `first ${long}`, stream: false })).json();
    for (const n of ['second', 'third', 'fourth']) {
      await create({ input: `${n} ${long}`, conversation_id: first.conversation_id, stream: false });
    }
    await create({ input: 'latest', conversation_id: first.conversation_id, stream: false });
    const messages = lastUpstream().body.messages;
    expect(messages.at(-1)).toEqual({ role: 'user', content: 'latest' });
    const earlier = messages.slice(0, -1).filter((m) => m.role === 'user').map((m) => m.content.split(' ')[0]);
    // The newest turns, contiguous and oldest first; the oldest did not fit.
    expect(earlier.length).toBeGreaterThanOrEqual(2);
    expect(earlier).toEqual(['first', 'second', 'third', 'fourth'].slice(-earlier.length));
    expect(earlier).not.toContain('first');
    // Each user turn is followed by its answer.
    expect(messages.slice(0, -1).map((m) => m.role)).toEqual(earlier.flatMap(() => ['user', 'assistant']));
  });

  it('refuses input that alone exceeds the context window', async () => {
    const res = await create({ input: 'word '.repeat(600), stream: false });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatchObject({ code: 'context_length_exceeded', param: 'input' });
  });

  it('refuses previous_response_id and conversation_id that disagree', async () => {
    const a = (await create({ input: 'a', stream: false })).json();
    const b = (await create({ input: 'b', stream: false })).json();
    const res = await create({ input: 'c', previous_response_id: a.id, conversation_id: b.conversation_id, stream: false });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('conversation_mismatch');
    const unknown = await create({ input: 'c', previous_response_id: randomUUID(), stream: false });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error.code).toBe('response_not_found');
  });
});

describe('project_id', () => {
  it('is 404 when unknown, 403 for a non-member, accepted for a member', async () => {
    expect((await create({ input: 'x', project_id: randomUUID(), stream: false })).json().error.code).toBe('project_not_found');
    const project = await h.app.inject({
      method: 'POST',
      url: '/admin/v1/projects',
      headers: adminHeaders,
      payload: { organization_id: h.tenant.orgId, name: `P ${randomUUID()}` },
    });
    const pid = project.json().id as string;
    const forbidden = await create({ input: 'x', project_id: pid, stream: false });
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json().error).toMatchObject({ type: 'permission_error', code: 'project_forbidden' });

    await h.app.inject({ method: 'POST', url: `/admin/v1/projects/${pid}/members`, headers: adminHeaders, payload: { user_id: h.tenant.userId } });
    const ok = await create({ input: 'x', project_id: pid, stream: false });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().project_id).toBe(pid);
  });

  it("is 404 for another organisation's project, as for a missing one", async () => {
    const other = await createTenant(h.app);
    const project = await h.app.inject({
      method: 'POST',
      url: '/admin/v1/projects',
      headers: adminHeaders,
      payload: { organization_id: other.orgId, name: `P ${randomUUID()}` },
    });
    const pid = project.json().id as string;
    const calls = h.upstream.requests.length;
    const res = await create({ input: 'x', project_id: pid, stream: false });
    expect(res.statusCode).toBe(404);
    expect(res.json().error).toMatchObject({ type: 'not_found_error', code: 'project_not_found' });
    expect(h.upstream.requests).toHaveLength(calls);
  });
});

describe('a server without models', () => {
  it('starts, says why it is not ready, and answers 503 no_model_available', async () => {
    const database = await openTestDatabase();
    const app = await testApp(database);
    try {
      const ready = await app.inject({ method: 'GET', url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json().checks).toEqual({ database: 'ok', models: expect.stringContaining('EUGPT_CONFIG'), routing: 'ok' });
      const tenant = await (await import('./helpers/app.ts')).createTenant(app);
      const res = await app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(tenant.key), payload: { input: 'x' } });
      expect(res.statusCode).toBe(503);
      expect(res.json().error).toMatchObject({ code: 'no_model_available', message: expect.stringContaining('EUGPT_CONFIG') });
    } finally {
      await app.close();
      await database.close();
    }
  });
});
