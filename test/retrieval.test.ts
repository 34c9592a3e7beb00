import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import OpenAI from 'openai';
import { parse } from 'yaml';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { files } from '../src/db/schema.ts';
import { adminHeaders, bearer } from './helpers/app.ts';
import { startFakeEmbeddings, type FakeEmbeddings } from './helpers/fake-embeddings.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { eventually, startServer, writeConfig, writeConfigFile, type TestServer } from './helpers/harness.ts';

/** Responses with a project_id: passages in the prompt, file_citation annotations, sources, the file_search tool. */

let s: TestServer;
let upstream: FakeUpstream;
let emb: FakeEmbeddings;
let projectId: string;
let handbook: string;
let security: string;

const HANDBOOK = [
  '[page 1]',
  '# Working time',
  '',
  'The standard working week is thirty-eight hours, from Monday to Friday.',
  '',
  '[page 2]',
  '# Notice periods',
  '',
  'Either party may end the contract with a notice period of three months to the end of a quarter.',
].join('\n');
const SECURITY = '# Passwords\n\nPasswords must be at least sixteen characters long and are never written down.';

type Annotation = { type: string; file_id?: string; filename?: string; index?: number };
type Doc = {
  id: string;
  output: ({ type: 'message'; content: { text: string; annotations: Annotation[] }[] } | { type: 'function_call'; name: string; output?: string })[];
  sources?: { type: string; index: number; file_id: string; filename: string; page: number | null; heading: string | null }[];
};

async function processedFile(filename: string, text: string): Promise<string> {
  const id = randomUUID();
  await s.database.db.insert(files).values({
    id,
    userId: s.tenant.userId,
    organizationId: s.tenant.orgId,
    filename,
    purpose: 'user_data',
    bytes: Buffer.byteLength(text),
    mimeType: 'text/plain',
    sha256: '0'.repeat(64),
    storage: 'database',
    storageKey: `files/${id}`,
    status: 'processed',
    text,
  });
  const added = await s.app.inject({ method: 'POST', url: `/v1/projects/${projectId}/files`, headers: bearer(s.tenant.key), payload: { file_id: id } });
  expect(added.statusCode).toBe(200);
  return id;
}

const ask = (payload: Record<string, unknown>) =>
  s.app.inject({ method: 'POST', url: '/v1/responses', headers: { ...bearer(s.tenant.key), accept: 'application/json' }, payload: { stream: false, project_id: projectId, ...payload } });

/** The system messages the model was sent in its last request. */
const systemOf = (i = -1) =>
  (upstream.requests.at(i)!.body.messages as { role: string; content: string }[])
    .filter((m) => m.role === 'system')
    .map((m) => m.content)
    .join('\n');

beforeAll(async () => {
  upstream = await startFakeUpstream();
  emb = await startFakeEmbeddings();
  const base = parse(readFileSync(writeConfig(upstream.url, { model: { capabilities: ['json', 'tools'] } }), 'utf8')) as Record<string, unknown>;
  const config = writeConfigFile({
    ...base,
    tools: { web_search: { enabled: false }, web_fetch: { enabled: false } },
    retrieval: { poll_ms: 100, top_k: 4, embeddings: { base_url: emb.url, model: 'hash-256', timeout_ms: 2000 } },
  });
  s = await startServer(config);
  projectId = (await s.app.inject({ method: 'POST', url: '/admin/v1/projects', headers: adminHeaders, payload: { organization_id: s.tenant.orgId, name: 'HR' } })).json<{ id: string }>().id;
  await s.app.inject({ method: 'POST', url: `/admin/v1/projects/${projectId}/members`, headers: adminHeaders, payload: { user_id: s.tenant.userId } });
  handbook = await processedFile('handbook.pdf', HANDBOOK);
  security = await processedFile('security.md', SECURITY);
  await eventually(async () => {
    const l = (await s.app.inject({ method: 'GET', url: `/v1/projects/${projectId}/files`, headers: bearer(s.tenant.key) })).json<{ data: { index: { status: string } }[] }>();
    return l.data.length === 2 && l.data.every((f) => f.index.status === 'indexed') ? true : undefined;
  }, 20_000);
});
afterAll(async () => {
  await s.close();
  await upstream.close();
  await emb.close();
});
beforeEach(() => {
  upstream.queue.length = 0;
  emb.down = false;
});

describe('passages in the prompt', () => {
  it('gives the model numbered passages with file and page, and cites them in the JSON answer', async () => {
    upstream.queue.push({ chunks: ['The notice period is three months [1].'] });
    const res = await ask({ input: 'How long is the notice period?' });
    expect(res.statusCode).toBe(200);
    const doc = res.json<Doc>();
    const system = systemOf();
    expect(system).toContain('<passage index="1" file="handbook.pdf" page="2" section="Notice periods">');
    expect(system).toContain('notice period of three months');
    const part = (doc.output[0] as Extract<Doc['output'][number], { type: 'message' }>).content[0]!;
    expect(part.annotations).toEqual([{ type: 'file_citation', file_id: handbook, filename: 'handbook.pdf', index: part.text.indexOf('[1]') + 3 }]);
    expect(doc.sources![0]).toEqual({ type: 'file_passage', index: 1, file_id: handbook, filename: 'handbook.pdf', page: 2, heading: 'Notice periods' });
    // Stored as answered.
    const stored = (await s.app.inject({ method: 'GET', url: `/v1/responses/${doc.id}`, headers: bearer(s.tenant.key) })).json<Doc>();
    expect(stored.sources).toEqual(doc.sources);
  });

  it('sends the annotation in the stream before the text is done', async () => {
    upstream.queue.push({ chunks: ['Passwords need sixteen characters', ' [1].'] });
    const body = await new Promise<string>((resolve, reject) => {
      const req = request(`${s.origin}/v1/responses`, { method: 'POST', headers: { ...bearer(s.tenant.key), 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ input: 'How long must passwords be?', project_id: projectId, stream: true }));
    });
    const events = body
      .split('\n\n')
      .filter((f) => f.startsWith('event: message\ndata: '))
      .map((f) => JSON.parse(f.slice('event: message\ndata: '.length)) as { type: string; annotation?: Annotation; response?: Doc });
    const types = events.map((e) => e.type);
    const added = events.find((e) => e.type === 'response.output_text.annotation.added')!;
    expect(added.annotation).toMatchObject({ type: 'file_citation', file_id: security, filename: 'security.md' });
    expect(types.indexOf('response.output_text.annotation.added')).toBeLessThan(types.indexOf('response.output_text.done'));
    expect(events.at(-1)!.response!.sources!.map((x) => x.file_id)).toContain(security);
  });

  it('reads the annotations with the official openai SDK', async () => {
    const client = new OpenAI({ baseURL: `${s.origin}/v1`, apiKey: s.tenant.key, maxRetries: 0 });
    upstream.queue.push({ chunks: ['Thirty-eight hours a week [1].'] });
    const res = await client.responses.create({ model: 'auto', input: 'How many hours is the working week?', project_id: projectId } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
    const message = res.output.find((o) => o.type === 'message')!;
    const part = message.content[0]!;
    expect(part.type).toBe('output_text');
    if (part.type !== 'output_text') return;
    expect(part.annotations[0]).toMatchObject({ type: 'file_citation', file_id: handbook, filename: 'handbook.pdf' });
  });

  it('still answers from full-text search when the embeddings model is down', async () => {
    emb.down = true;
    upstream.queue.push({ chunks: ['Three months.'] });
    const res = await ask({ input: 'notice period contract' });
    expect(res.statusCode).toBe(200);
    expect(systemOf()).toContain('notice period of three months');
  });

  it('refuses a project the caller is not a member of before any model call', async () => {
    const before = upstream.requests.length;
    const other = (await s.app.inject({ method: 'POST', url: '/admin/v1/projects', headers: adminHeaders, payload: { organization_id: s.tenant.orgId, name: `Closed ${randomUUID()}` } })).json<{ id: string }>().id;
    const res = await ask({ input: 'Anything?', project_id: other });
    expect(res.statusCode).toBe(403);
    expect(upstream.requests.length).toBe(before);
  });
});

describe('file_search', () => {
  it('is offered with a project, runs the model’s own query, and its passages are cited and listed', async () => {
    // The first call asks for the tool; the second answers from its result.
    upstream.queue.push({ calls: [{ name: 'file_search', arguments: JSON.stringify({ query: 'password length characters' }) }] }, { chunks: ['At least sixteen characters [1].'] });
    const res = await ask({ input: 'What does the security policy say?' });
    expect(res.statusCode).toBe(200);
    const offered = (upstream.requests.at(-2)!.body.tools as { function: { name: string } }[]).map((t) => t.function.name);
    expect(offered).toContain('file_search');
    const doc = res.json<Doc>();
    const call = doc.output.find((o) => o.type === 'function_call')!;
    expect(call).toMatchObject({ name: 'file_search' });
    const result = JSON.parse((call as { output: string }).output) as { results: { index: number; file: string; text: string }[] };
    expect(result.results[0]).toMatchObject({ file: 'security.md' });
    expect(result.results[0]!.text).toContain('sixteen characters');
    const message = doc.output.find((o) => o.type === 'message') as Extract<Doc['output'][number], { type: 'message' }>;
    const cited = message.content[0]!.annotations.map((a) => a.file_id);
    expect(cited).toEqual([doc.sources!.find((x) => x.index === 1)!.file_id]);
    expect(doc.sources!.map((x) => x.file_id)).toContain(security);
  });

  it('is refused without a project', async () => {
    const res = await s.app.inject({
      method: 'POST',
      url: '/v1/responses',
      headers: { ...bearer(s.tenant.key), accept: 'application/json' },
      payload: { stream: false, input: 'Search', tools: [{ type: 'file_search' }] },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('file_search_needs_project');
  });
});
