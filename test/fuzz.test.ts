import { request } from 'node:http';
import { connect } from 'node:net';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminHeaders, bearer, createTenant, type Tenant } from './helpers/app.ts';
import { startHarness, type Harness } from './helpers/harness.ts';

/**
 * A generated corpus (seeded, so every run sends the same cases) over every
 * string field of every route that reaches storage: text PostgreSQL cannot
 * hold is a 400 naming the field, nothing is ever a 5xx, every refusal is in
 * the error envelope, and what is accepted is stored and metered.
 */

const SMILE = '\ud83d\ude00';
const FFFD = '\ufffd';

/** Independent of the server's own check: UTF-8 cannot carry an unpaired surrogate, and PostgreSQL refuses U+0000. */
const storable = (s: string) => !s.includes('\u0000') && Buffer.from(s, 'utf8').toString('utf8') === s;

/** mulberry32: a small seeded generator. */
function seeded(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = ['a', 'Z', ' ', '\u0000', '\ud83d', '\ude00', SMILE, '中', 'e\u0301', '"', '\\', '\n', '\u2028', '\uffff', '\u0001', '%', '/'];

function randomText(next: () => number): string {
  const n = 1 + Math.floor(next() * 12);
  let s = '';
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(next() * PIECES.length)]!;
  return s;
}

type Kind = 'bad' | 'good' | 'any';

interface Mutation {
  name: string;
  kind: Kind;
  value: unknown;
}

const BAD_TEXT = ['a\u0000b', '\u0000', 'tail\ud83d', '\ud83dhead', 'mid\ude00dle', `reversed \ude00\ud83d`, `${SMILE}\ud800`, `${'long '.repeat(40)}\u0000`];
const GOOD_TEXT = [`emoji ${SMILE}`, `中文 e\u0301 ${SMILE}${SMILE} \u2028 \uffff`, 'plain'];

/** Fixed mutations and seeded random ones for one string field. */
function mutations(next: () => number, randoms: number): Mutation[] {
  const list: Mutation[] = [
    ...BAD_TEXT.map((value, i) => ({ name: `bad#${i}`, kind: 'bad' as const, value })),
    ...GOOD_TEXT.map((value, i) => ({ name: `good#${i}`, kind: 'good' as const, value })),
    { name: 'very long', kind: 'any', value: `${'ab '.repeat(20_000)}${SMILE}` },
    { name: 'emoji across the 100th character', kind: 'any', value: `${'x'.repeat(99)}${SMILE}${'y'.repeat(20)}` },
    { name: 'empty', kind: 'any', value: '' },
    { name: 'blank', kind: 'any', value: '   ' },
    { name: 'number', kind: 'any', value: 42 },
    { name: 'boolean', kind: 'any', value: true },
    { name: 'null', kind: 'any', value: null },
    { name: 'array', kind: 'any', value: ['\u0000'] },
    { name: 'object', kind: 'any', value: { k: '\u0000' } },
  ];
  for (let i = 0; i < randoms; i++) {
    const value = randomText(next);
    list.push({ name: `random#${i}`, kind: storable(value) ? 'any' : 'bad', value });
  }
  return list;
}

/** Percent-encodes a string as generalised UTF-8, so lone surrogates reach the server as their 3-byte forms. */
function percent(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const d = s.charCodeAt(i + 1);
    let cp = c;
    if (c >= 0xd800 && c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
      cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
      i++;
    }
    const bytes =
      cp < 0x80
        ? [cp]
        : cp < 0x800
          ? [0xc0 | (cp >> 6), 0x80 | (cp & 63)]
          : cp < 0x10000
            ? [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)]
            : [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)];
    out += bytes.map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join('');
  }
  return out;
}

let h: Harness;
let caller: Tenant;
/** An organisation, user and project the admin cases may change freely. */
let target: { orgId: string; userId: string; projectId: string };

beforeAll(async () => {
  h = await startHarness({ model: { capabilities: ['json', 'tools'] } });
  caller = await createTenant(h.app);
  const other = await createTenant(h.app);
  const project = await h.app.inject({ method: 'POST', url: '/admin/v1/projects', headers: adminHeaders, payload: { organization_id: other.orgId, name: 'Target' } });
  target = { orgId: other.orgId, userId: other.userId, projectId: project.json().id as string };
});
afterAll(async () => h.close());

type Answer = LightMyRequestResponse;

interface StreamEvent {
  type: string;
  delta?: string;
  response?: ResponseDoc;
}

interface ResponseDoc {
  id: string;
  status: string;
  output_text: string;
  usage: { total_tokens: number } | null;
}

/** The envelope every refusal must be in; a list of what is wrong with it. */
function envelopeProblems(res: Answer): string[] {
  const problems: string[] = [];
  if (!String(res.headers['content-type']).startsWith('application/json')) problems.push(`content-type ${String(res.headers['content-type'])}`);
  let body: { error?: Record<string, unknown> | null; detail?: unknown } | null;
  try {
    body = JSON.parse(res.body) as typeof body;
  } catch {
    return [...problems, 'body is not JSON'];
  }
  const e = body?.error;
  if (typeof e !== 'object' || e === null) return [...problems, 'no error object'];
  for (const k of ['type', 'code', 'message'] as const) if (typeof e[k] !== 'string' || e[k] === '') problems.push(`error.${k} missing`);
  if (!(typeof e.param === 'string' || e.param === null)) problems.push('error.param is neither a string nor null');
  if (body?.detail !== e.message) problems.push('detail differs from error.message');
  return problems;
}

interface Case {
  label: string;
  kind: Kind;
  /** The param a bad-text refusal must name. */
  param: string | null;
  /** Free text: bad text is `invalid_text`, good text is accepted. Else the field has a format of its own. */
  free: boolean;
  send: () => Promise<Answer>;
  /** For accepted /v1/responses cases: the response must be stored and metered. */
  responses?: boolean;
  /** How a bad-text refusal may differ from a 400 naming `param`: a problem, or null when it is right. */
  badRefusal?: (status: number, error: { code: string; param: string | null }) => string | null;
}

const responsesBody = (patch: (b: Record<string, unknown>) => void) => {
  const body: Record<string, unknown> = { input: 'Hello', stream: false };
  patch(body);
  return body;
};

interface BodyField {
  field: string;
  param: string;
  free: boolean;
  build: (v: unknown) => Record<string, unknown>;
  /** Only string values make sense (an object key). */
  stringsOnly?: boolean;
}

const responseFields: BodyField[] = [
  { field: 'input', param: 'input', free: true, build: (v) => responsesBody((b) => (b.input = v)) },
  { field: 'input[0].content', param: 'input[0].content', free: true, build: (v) => responsesBody((b) => (b.input = [{ role: 'user', content: v }])) },
  {
    field: 'input[0].content[1].text',
    param: 'input[0].content[1].text',
    free: true,
    build: (v) => responsesBody((b) => (b.input = [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hi' }, { type: 'input_text', text: v }] }])),
  },
  {
    field: 'input[1].content[0].text (assistant)',
    param: 'input[1].content[0].text',
    free: true,
    build: (v) =>
      responsesBody(
        (b) =>
          (b.input = [
            { role: 'user', content: 'Hi' },
            { role: 'assistant', content: [{ type: 'output_text', text: v }] },
            { role: 'user', content: 'Go on' },
          ]),
      ),
  },
  {
    field: 'input[0].content[0].file_id',
    param: 'input[0].content[0].file_id',
    free: false,
    build: (v) => responsesBody((b) => (b.input = [{ role: 'user', content: [{ type: 'input_file', file_id: v }, { type: 'input_text', text: 'Hi' }] }])),
  },
  { field: 'instructions', param: 'instructions', free: true, build: (v) => responsesBody((b) => (b.instructions = v)) },
  { field: 'metadata value', param: 'metadata.k', free: true, build: (v) => responsesBody((b) => (b.metadata = { k: v })) },
  { field: 'metadata key', param: 'metadata', free: true, stringsOnly: true, build: (v) => responsesBody((b) => (b.metadata = { [v as string]: 'value' })) },
  { field: 'user', param: 'user', free: true, build: (v) => responsesBody((b) => (b.user = v)) },
  { field: 'model', param: 'model', free: true, build: (v) => responsesBody((b) => (b.model = v)) },
  {
    field: 'text.format.name',
    param: 'text.format.name',
    free: true,
    build: (v) => responsesBody((b) => (b.text = { format: { type: 'json_schema', name: v, schema: { type: 'object' } } })),
  },
  {
    field: 'text.format.description',
    param: 'text.format.description',
    free: true,
    build: (v) => responsesBody((b) => (b.text = { format: { type: 'json_schema', name: 'reply', description: v, schema: { type: 'object' } } })),
  },
  {
    field: 'text.format.schema (nested value)',
    param: 'text.format.schema.properties.a.description',
    free: true,
    build: (v) => responsesBody((b) => (b.text = { format: { type: 'json_schema', name: 'reply', schema: { type: 'object', properties: { a: { description: v } } } } })),
  },
  {
    field: 'text.format.schema (key)',
    param: 'text.format.schema.properties',
    free: true,
    stringsOnly: true,
    build: (v) => responsesBody((b) => (b.text = { format: { type: 'json_schema', name: 'reply', schema: { type: 'object', properties: { [v as string]: {} } } } })),
  },
  { field: 'reasoning.effort', param: 'reasoning.effort', free: true, build: (v) => responsesBody((b) => (b.reasoning = { effort: v })) },
  { field: 'reasoning.summary', param: 'reasoning.summary', free: true, build: (v) => responsesBody((b) => (b.reasoning = { summary: v })) },
  { field: 'tool_choice', param: 'tool_choice', free: false, build: (v) => responsesBody((b) => (b.tool_choice = v)) },
  { field: 'tool_choice.name', param: 'tool_choice.name', free: false, build: (v) => responsesBody((b) => (b.tool_choice = { type: 'function', name: v })) },
  {
    field: 'tools[0].description',
    param: 'tools[0].description',
    free: true,
    build: (v) => responsesBody((b) => (b.tools = [{ type: 'function', name: 'lookup', description: v }])),
  },
  { field: 'tools[0].name', param: 'tools[0].name', free: false, build: (v) => responsesBody((b) => (b.tools = [{ type: 'function', name: v }])) },
];

let serial = 0;
const unique = () => `${++serial}`;

/** Admin bodies; string values get a unique suffix where names must be unique. */
const adminFields: (BodyField & { method: 'POST' | 'PATCH' | 'PUT'; url: () => string })[] = [
  { method: 'POST', url: () => '/admin/v1/organizations', field: 'organization name', param: 'name', free: true, build: (v) => ({ name: v }) },
  { method: 'POST', url: () => '/admin/v1/organizations', field: 'organization plan', param: 'plan', free: false, build: (v) => ({ name: 'Org', plan: v }) },
  { method: 'PATCH', url: () => `/admin/v1/organizations/${target.orgId}`, field: 'organization name (update)', param: 'name', free: true, build: (v) => ({ name: v }) },
  { method: 'PATCH', url: () => `/admin/v1/organizations/${target.orgId}`, field: 'organization trial_ends_at', param: 'trial_ends_at', free: false, build: (v) => ({ trial_ends_at: v }) },
  { method: 'PATCH', url: () => `/admin/v1/organizations/${target.orgId}`, field: 'organization status', param: 'status', free: false, build: (v) => ({ status: v }) },
  { method: 'PATCH', url: () => `/admin/v1/organizations/${target.orgId}`, field: 'organization daily_token_limit', param: 'daily_token_limit', free: false, build: (v) => ({ daily_token_limit: v }) },
  {
    method: 'POST',
    url: () => '/admin/v1/users',
    field: 'user email',
    param: 'email',
    free: false,
    build: (v) => ({ organization_id: target.orgId, email: typeof v === 'string' ? `u${v}${unique()}@example.eu` : v }),
  },
  { method: 'POST', url: () => '/admin/v1/users', field: 'user organization_id', param: 'organization_id', free: false, build: (v) => ({ organization_id: v, email: `u${unique()}@example.eu` }) },
  { method: 'POST', url: () => '/admin/v1/users', field: 'user role', param: 'role', free: false, build: (v) => ({ organization_id: target.orgId, email: `u${unique()}@example.eu`, role: v }) },
  { method: 'POST', url: () => '/admin/v1/api-keys', field: 'api key label', param: 'label', free: true, build: (v) => ({ user_id: target.userId, label: v }) },
  { method: 'POST', url: () => '/admin/v1/api-keys', field: 'api key user_id', param: 'user_id', free: false, build: (v) => ({ user_id: v, label: 'k' }) },
  {
    method: 'POST',
    url: () => '/admin/v1/projects',
    field: 'project name',
    param: 'name',
    free: true,
    build: (v) => ({ organization_id: target.orgId, name: typeof v === 'string' && v.trim() !== '' ? `${v} ${unique()}` : v }),
  },
  { method: 'POST', url: () => '/admin/v1/projects', field: 'project organization_id', param: 'organization_id', free: false, build: (v) => ({ organization_id: v, name: `P ${unique()}` }) },
  { method: 'POST', url: () => `/admin/v1/projects/${target.projectId}/members`, field: 'project member user_id', param: 'user_id', free: false, build: (v) => ({ user_id: v }) },
  { method: 'PUT', url: () => `/admin/v1/plans/fuzz-${unique()}`, field: 'plan daily_tokens', param: 'daily_tokens', free: false, build: (v) => ({ daily_tokens: v }) },
  { method: 'PUT', url: () => `/admin/v1/plans/fuzz-${unique()}`, field: 'plan features key', param: 'features', free: false, stringsOnly: true, build: (v) => ({ features: { [v as string]: true } }) },
];

/** Query and path strings; every one is a UUID, a number or a plan name, so bad text is refused by its format. */
const urlFields: { field: string; param: string; url: (encoded: string) => string; admin: boolean; path?: boolean }[] = [
  { field: 'GET /api-keys?user_id', param: 'user_id', url: (v) => `/admin/v1/api-keys?user_id=${v}`, admin: true },
  { field: 'GET /users?organization_id', param: 'organization_id', url: (v) => `/admin/v1/users?organization_id=${v}`, admin: true },
  { field: 'GET /users?after', param: 'after', url: (v) => `/admin/v1/users?after=${v}`, admin: true },
  { field: 'GET /projects?organization_id', param: 'organization_id', url: (v) => `/admin/v1/projects?organization_id=${v}`, admin: true },
  { field: 'GET /organizations?limit', param: 'limit', url: (v) => `/admin/v1/organizations?limit=${v}`, admin: true },
  { field: 'GET /organizations/:id', param: 'id', url: (v) => `/admin/v1/organizations/${v}`, admin: true, path: true },
  { field: 'GET /plans/:name', param: 'name', url: (v) => `/admin/v1/plans/${v}`, admin: true, path: true },
  { field: 'GET /v1/responses/:id', param: 'id', url: (v) => `/v1/responses/${v}`, admin: false, path: true },
];

/**
 * A path segment that is not UTF-8 once decoded (a lone surrogate's bytes) is
 * a malformed URL to the router, and one past 200 characters is too long; both
 * are refused before any param is read. Everything else names the param.
 */
const pathRefusal = (value: string, param: string) => (status: number, error: { code: string; param: string | null }) => {
  if (value.length > 200) return status === 414 && error.code === 'uri_too_long' ? null : `expected 414 uri_too_long, got ${status} ${error.code}`;
  if (!storable(value.replaceAll('\u0000', ''))) return status === 400 && error.code === 'invalid_url' ? null : `expected 400 invalid_url, got ${status} ${error.code}`;
  return status === 400 && error.param === param ? null : `expected 400 naming ${param}, got ${status} ${String(error.param)}`;
};

function buildCorpus(): Case[] {
  const next = seeded(20_240_611);
  const cases: Case[] = [];
  for (const f of responseFields) {
    for (const [i, m] of mutations(next, 6).entries()) {
      if (f.stringsOnly === true && typeof m.value !== 'string') continue;
      // Every other case streams: a stream's answer is sent before it is stored, so it must be stored all the same.
      const stream = i % 2 === 1;
      cases.push({
        label: `/v1/responses ${f.field} ${m.name}${stream ? ' (stream)' : ''}`,
        kind: m.kind,
        param: f.param,
        free: f.free,
        responses: true,
        send: () => h.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(caller.key), payload: { ...f.build(m.value), stream } }),
      });
    }
  }
  for (const f of adminFields) {
    for (const m of mutations(next, 4)) {
      if (f.stringsOnly === true && typeof m.value !== 'string') continue;
      cases.push({
        label: `${f.method} ${f.url()} ${f.field} ${m.name}`,
        kind: m.kind,
        param: f.param,
        free: f.free,
        send: () => h.app.inject({ method: f.method, url: f.url(), headers: adminHeaders, payload: f.build(m.value) }),
      });
    }
  }
  for (const f of urlFields) {
    for (const m of mutations(next, 3)) {
      if (typeof m.value !== 'string' || m.value === '') continue;
      const encoded = percent(m.value);
      cases.push({
        label: `${f.field} ${m.name}`,
        kind: m.kind,
        param: f.param,
        free: false,
        ...(f.path === true ? { badRefusal: pathRefusal(m.value, f.param) } : {}),
        send: () => h.app.inject({ method: 'GET', url: f.url(encoded), headers: f.admin ? adminHeaders : bearer(caller.key) }),
      });
    }
  }
  // Whole bodies that are not objects, or not JSON, or carry bad text where nothing reads it.
  const nested = (depth: number) => `{"input":"Hi","stream":false,"tool_choice":${'['.repeat(depth)}${']'.repeat(depth)}}`;
  const raw = [
    '[]',
    '"text"',
    '42',
    'null',
    '{"input":',
    '{"input":"\\ud800"}',
    '{"input":"\\u0000"}',
    '{"\\ud800":1,"input":"Hi","stream":false}',
    '\u0000',
    nested(1_000),
    nested(100_000),
  ];
  for (const payload of raw) {
    cases.push({
      label: `/v1/responses raw body ${JSON.stringify(payload)}`,
      kind: 'any',
      param: null,
      free: false,
      responses: true,
      send: () => h.app.inject({ method: 'POST', url: '/v1/responses', headers: { ...bearer(caller.key), 'content-type': 'application/json' }, payload }),
    });
    cases.push({
      label: `/admin/v1/organizations raw body ${JSON.stringify(payload)}`,
      kind: 'any',
      param: null,
      free: false,
      send: () => h.app.inject({ method: 'POST', url: '/admin/v1/organizations', headers: { ...adminHeaders, 'content-type': 'application/json' }, payload }),
    });
  }
  return cases;
}

/** The response document of a JSON answer, or the one the terminal event of a stream carries. */
function documentOf(res: Answer): ResponseDoc | null {
  if (!String(res.headers['content-type']).startsWith('text/event-stream')) return res.json<ResponseDoc>();
  const events = res.body
    .split('\n\n')
    .filter((f) => f.startsWith('event: message\ndata: '))
    .map((f) => JSON.parse(f.slice('event: message\ndata: '.length)) as { type: string; response?: ResponseDoc });
  const last = events.at(-1);
  return last?.type === 'response.completed' ? (last.response ?? null) : null;
}

const usageOf = async (key: string) => (await h.app.inject({ method: 'GET', url: '/v1/usage', headers: bearer(key) })).json().day.user;

describe('the generated corpus', () => {
  it('never answers 5xx, refuses in the envelope, names bad text, and stores and meters what it accepts', async () => {
    const corpus = buildCorpus();
    const before = await usageOf(caller.key);
    const failures: string[] = [];
    const tally = { bad: 0, accepted: 0, refused: 0, responsesAccepted: 0 };
    let tokens = 0;

    for (const c of corpus) {
      const upstreamCalls = h.upstream.requests.length;
      const res = await c.send();
      const fail = (what: string) => failures.push(`${c.label}: ${what} (${res.statusCode} ${res.body.slice(0, 200)})`);
      if (res.statusCode >= 500) {
        fail('5xx');
        continue;
      }
      if (res.statusCode >= 400) {
        tally.refused++;
        for (const p of envelopeProblems(res)) fail(p);
      } else {
        tally.accepted++;
      }
      if (c.kind === 'bad') {
        tally.bad++;
        const other = c.badRefusal?.(res.statusCode, res.statusCode >= 400 ? res.json().error : {});
        if (other !== undefined) {
          if (other !== null) fail(other);
        } else if (res.statusCode !== 400) fail('bad text not refused with 400');
        else {
          const error = res.json().error;
          if (error.param !== c.param) fail(`param ${String(error.param)}, expected ${String(c.param)}`);
          if (c.free && error.code !== 'invalid_text') fail(`code ${String(error.code)}, expected invalid_text`);
          if (c.free && !String(error.message).includes('cannot be stored')) fail('message does not say why');
        }
        if (h.upstream.requests.length !== upstreamCalls) fail('a model was called for bad text');
      }
      if (c.kind === 'good' && c.free && res.statusCode >= 300) fail('storable text refused');
      if (c.responses === true && res.statusCode === 200) {
        tally.responsesAccepted++;
        const doc = documentOf(res);
        if (doc?.status !== 'completed' || doc.usage === null) {
          fail('accepted response not completed with usage');
          continue;
        }
        tokens += doc.usage.total_tokens;
        const stored = await h.app.inject({ method: 'GET', url: `/v1/responses/${doc.id}`, headers: bearer(caller.key) });
        if (stored.statusCode !== 200) fail(`stored response: ${stored.statusCode}`);
        else if (stored.json().output_text !== doc.output_text || stored.json().usage.total_tokens !== doc.usage.total_tokens) fail('stored response differs');
      }
    }

    expect(failures).toEqual([]);
    expect(corpus.length).toBeGreaterThan(1000);
    expect(tally.bad).toBeGreaterThan(400);
    expect(tally.responsesAccepted).toBeGreaterThan(150);
    expect(tally.refused).toBeGreaterThan(tally.bad);
    const after = await usageOf(caller.key);
    expect(after.total_tokens - before.total_tokens).toBe(tokens);
    expect(after.requests - before.requests).toBe(tally.responsesAccepted);
    expect(after.reserved_tokens).toBe(0);
  });
});

/** A raw streamed POST over a real socket, parsed into its events. */
function stream(payload: unknown): Promise<{ status: number; events: StreamEvent[] }> {
  return new Promise((resolve, reject) => {
    const req = request(`${h.origin}/v1/responses`, { method: 'POST', headers: { ...bearer(caller.key), 'content-type': 'application/json' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        const frames = body.split('\n\n').filter((f) => f.startsWith('event: message\ndata: '));
        resolve({ status: res.statusCode!, events: frames.map((f) => JSON.parse(f.slice('event: message\ndata: '.length)) as StreamEvent) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify(payload));
  });
}

describe('text from the model', () => {
  // JSON.stringify escapes lone surrogates, so the fake sends them as `\udXXX` escapes, a pair split over two events.
  const chunks = ['A\u0000B', ' c\ud83d', '\ude00 ', 'x\udc00', ' end\ud83d'];
  const expected = `A${FFFD}B c${SMILE} x${FFFD} end${FFFD}`;

  it('is made storable in the stream, and the stored response is the one the client saw, metered', async () => {
    const before = await usageOf(caller.key);
    h.upstream.queue.push({ chunks, usage: { prompt_tokens: 7, completion_tokens: 5 } });
    const { status, events } = await stream({ input: 'Say something odd' });
    expect(status).toBe(200);
    const deltas = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta as string);
    expect(deltas.join('')).toBe(expected);
    const done = events.at(-1)!;
    expect(done.type).toBe('response.completed');
    const sent = done.response!;
    expect(sent.output_text).toBe(expected);
    expect(sent.usage?.total_tokens).toBe(12);

    const stored = await h.app.inject({ method: 'GET', url: `/v1/responses/${sent.id}`, headers: bearer(caller.key) });
    expect(stored.statusCode).toBe(200);
    expect(stored.json().output_text).toBe(expected);
    expect(stored.json().output[0].content[0].text).toBe(expected);
    const after = await usageOf(caller.key);
    expect(after.total_tokens - before.total_tokens).toBe(12);
    expect(after.requests - before.requests).toBe(1);
  });

  it('is made storable in a JSON answer too, and stored', async () => {
    h.upstream.queue.push({ chunks });
    const res = await h.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(caller.key), payload: { input: 'Again', stream: false } });
    expect(res.statusCode).toBe(200);
    expect(res.json().output_text).toBe(expected);
    const stored = await h.app.inject({ method: 'GET', url: `/v1/responses/${res.json().id}`, headers: bearer(caller.key) });
    expect(stored.json().output_text).toBe(expected);
  });

  it('continues a conversation whose stored answer had bad text', async () => {
    h.upstream.queue.push({ chunks });
    const first = await h.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(caller.key), payload: { input: 'One', stream: false } });
    const second = await h.app.inject({
      method: 'POST',
      url: '/v1/responses',
      headers: bearer(caller.key),
      payload: { input: 'Two', stream: false, previous_response_id: first.json().id },
    });
    expect(second.statusCode).toBe(200);
    expect(h.upstream.requests.at(-1)!.body.messages.map((m) => m.content)).toEqual(['One', expected, 'Two']);
  });
});

/** Sends raw bytes over a real socket and returns everything the server answered before closing. */
function rawExchange(bytes: string): Promise<string> {
  const url = new URL(h.origin);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (answer += d));
    // The server may reset the connection after answering while we still send: what arrived is what counts.
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(answer));
    socket.write(bytes);
  });
}

function envelopeOf(answer: string) {
  const [head, body] = [answer.slice(0, answer.indexOf('\r\n\r\n')), answer.slice(answer.indexOf('\r\n\r\n') + 4)];
  return { statusLine: head.split('\r\n')[0], head, body: JSON.parse(body) };
}

describe("Node's own refusals", () => {
  it('answers headers too large with 431 in the envelope', async () => {
    // Past Node's 16 KiB limit, yet small enough to be read whole, so the server closes without unread bytes (no reset).
    const answer = await rawExchange(`GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`);
    const { statusLine, head, body } = envelopeOf(answer);
    expect(statusLine).toBe('HTTP/1.1 431 Request Header Fields Too Large');
    expect(head.toLowerCase()).toContain('content-type: application/json');
    expect(body).toEqual({
      error: { type: 'invalid_request_error', code: 'headers_too_large', message: expect.any(String), param: null },
      detail: body.error.message,
    });
  });

  it('answers a request that is not HTTP with 400 in the envelope', async () => {
    const { statusLine, body } = envelopeOf(await rawExchange('NOT HTTP AT ALL\r\n\r\n'));
    expect(statusLine).toBe('HTTP/1.1 400 Bad Request');
    expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'bad_request', param: null });
    expect(body.detail).toBe(body.error.message);
  });

  it('answers a normal request after them', async () => {
    const res = await fetch(`${h.origin}/v1/models`, { headers: bearer(caller.key) });
    expect(res.status).toBe(200);
  });
});
