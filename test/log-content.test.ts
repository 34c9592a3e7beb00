import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import { sql } from 'drizzle-orm';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, loggerOptions } from '../src/app.ts';
import { hashKey } from '../src/auth/keys.ts';
import { loadConfig } from '../src/config.ts';
import type { Database } from '../src/db/client.ts';
import { apiKeys } from '../src/db/schema.ts';
import { createUser } from '../src/tenancy/organizations.ts';
import { openTestDatabase } from './helpers/db.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { eventually, writeConfig } from './helpers/harness.ts';

/**
 * The whole life of a tenant at debug level, failures included, with the
 * process's own logger options: nothing a client sent or got back, and no
 * credential, may appear in what was logged.
 */

const tag = () => randomBytes(8).toString('hex');
const run = tag();

const adminToken = `admin-${tag()}-${tag()}`;
const upstreamKey = `sk-upstream-${tag()}`;
const prompt = { plain: `prompt-plain-${tag()}`, streamed: `prompt-streamed-${tag()}`, refused: `prompt-refused-${tag()}` };
const answer = { plain: `answer-plain-${tag()}`, streamed: `answer-streamed-${tag()}`, refused: `answer-refused-${tag()}` };
const meta = { plain: `meta-plain-${tag()}`, refused: `meta-refused-${tag()}` };
/** Emails starting `refused-<run>-` break a constraint of this run. */
const email = { taken: `taken-${tag()}@example.eu`, refused: `refused-${run}-a@example.eu`, direct: `refused-${run}-b@example.eu` };
const badKey = `eugpt_${tag()}${tag()}${tag()}`;

/**
 * Constraints added for this run only (names and values are unique to it, so
 * other test files sharing a PostgreSQL database are unaffected): the real
 * driver then refuses a row, with the row's values in the error.
 */
const refusal = { users: `log_test_users_${run}`, responses: `log_test_responses_${run}` };

let database: Database;
let upstream: FakeUpstream;
let app: FastifyInstance;
const lines: string[] = [];
let key: string;
let userId: string;
let orgId: string;

type Entry = Record<string, unknown> & { msg?: string; level: number; err?: Record<string, unknown> };
const entries = (): Entry[] => lines.map((l) => JSON.parse(l) as Entry);
const withMsg = (msg: string) => entries().filter((e) => e.msg === msg);

beforeAll(async () => {
  database = await openTestDatabase();
  upstream = await startFakeUpstream();
  await database.db.execute(
    sql.raw(`alter table users add constraint ${refusal.users} check (email not like 'refused-${run}-%') not valid`),
  );
  await database.db.execute(
    sql.raw(`alter table responses add constraint ${refusal.responses} check (status = 'in_progress' or body is null or body::text not like '%${meta.refused}%') not valid`),
  );
  const config = loadConfig({
    EUGPT_ADMIN_TOKEN: adminToken,
    EUGPT_CONFIG: writeConfig(upstream.url, { router: { breaker: { failures: 1000 } } }),
    FAKE_UPSTREAM_KEY: upstreamKey,
    LOG_LEVEL: 'debug',
  });
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  app = await buildApp({ config, database, logger: pino(loggerOptions(config), sink) });
  await app.ready();
});

afterAll(async () => {
  await app?.close();
  await database?.db.execute(sql.raw(`alter table users drop constraint if exists ${refusal.users}`));
  await database?.db.execute(sql.raw(`alter table responses drop constraint if exists ${refusal.responses}`));
  await database?.close();
  await upstream?.close();
});

const admin = { authorization: `Bearer ${adminToken}` };

async function adminPost(url: string, payload: object) {
  return app.inject({ method: 'POST', url: `/admin/v1${url}`, headers: admin, payload });
}

describe('what the log keeps of a whole scenario', () => {
  it('runs the scenario, failures included', async () => {
    const org = await adminPost('/organizations', { name: `Org ${randomUUID()}` });
    expect(org.statusCode).toBe(201);
    orgId = org.json().id;
    const user = await adminPost('/users', { organization_id: orgId, email: email.taken });
    expect(user.statusCode).toBe(201);
    userId = user.json().id;
    const created = await adminPost('/api-keys', { user_id: userId, label: 'logs' });
    expect(created.statusCode).toBe(201);
    key = created.json().key;
    const bearer = { authorization: `Bearer ${key}` };

    // A unique violation the admin API turns into 409.
    expect((await adminPost('/users', { organization_id: orgId, email: email.taken })).statusCode).toBe(409);
    // A row the database refuses: a 500 whose driver error holds the email.
    expect((await adminPost('/users', { organization_id: orgId, email: email.refused })).statusCode).toBe(500);

    upstream.queue.push({ chunks: [answer.plain] });
    const plain = await app.inject({
      method: 'POST',
      url: '/v1/responses',
      headers: bearer,
      payload: { input: prompt.plain, stream: false, metadata: { note: meta.plain } },
    });
    expect(plain.statusCode).toBe(200);
    expect(plain.body).toContain(answer.plain);

    upstream.queue.push({ chunks: [answer.streamed] });
    const streamed = await app.inject({ method: 'POST', url: '/v1/responses', headers: bearer, payload: { input: prompt.streamed } });
    expect(streamed.statusCode).toBe(200);
    expect(streamed.body).toContain(answer.streamed);
    expect(streamed.body).toContain('response.completed');

    upstream.queue.push({ status: 500 });
    const failed = await app.inject({ method: 'POST', url: '/v1/responses', headers: bearer, payload: { input: prompt.plain, stream: false } });
    expect(failed.statusCode).toBe(502);

    // A key (and the admin token) in the URL and in x-request-id: only headers authenticate, but all of it is logged.
    upstream.queue.push({ chunks: [answer.plain] });
    const inUrl = await app.inject({
      method: 'POST',
      url: `/v1/responses?api_key=${key}&token=${adminToken}&plain=${encodeURIComponent(key)}`,
      headers: { ...bearer, 'x-request-id': key },
      payload: { input: prompt.plain, stream: false },
    });
    expect(inUrl.statusCode).toBe(200);
    // A request id that carries a key is replaced, not echoed.
    expect(inUrl.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect((await app.inject({ method: 'GET', url: `/v1/models/${key}` })).statusCode).toBe(404);
    expect((await app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: `Bearer ${badKey}` } })).statusCode).toBe(401);

    // The database refuses to store the answer: non-streamed (500) and streamed (an error event).
    upstream.queue.push({ chunks: [answer.refused] });
    const refused = await app.inject({
      method: 'POST',
      url: '/v1/responses',
      headers: bearer,
      payload: { input: prompt.refused, stream: false, metadata: { note: meta.refused } },
    });
    expect(refused.statusCode).toBe(500);
    upstream.queue.push({ chunks: [answer.refused] });
    const refusedStream = await app.inject({
      method: 'POST',
      url: '/v1/responses',
      headers: { ...bearer, 'x-request-id': `last-${run}` },
      payload: { input: prompt.refused, metadata: { note: meta.refused } },
    });
    expect(refusedStream.body).toContain(answer.refused);
    expect(refusedStream.body).not.toContain('response.completed');
    // The stream's last log line comes just after its end.
    await eventually(async () => (withMsg('response finished').some((e) => e.request_id === `last-${run}`) ? true : undefined));
  });

  it('logs database errors of store functions without their values', async () => {
    // The hazard is real: the raw errors hold the values…
    const userError = await createUser(database.db, { organizationId: orgId, email: email.direct }).catch((e: unknown) => e);
    const keyError = await database.db
      .insert(apiKeys)
      .values({ userId, label: 'copy', prefix: 'eugpt_copy', secretHash: hashKey(key) })
      .catch((e: unknown) => e);
    expect(inspect(userError, { depth: 5 })).toContain(email.direct);
    expect(inspect(keyError, { depth: 5 })).toContain(hashKey(key));
    // …which the logger drops.
    app.log.error({ err: userError }, 'direct user insert failed');
    app.log.error({ err: keyError }, 'direct key insert failed');
    app.log.warn({ error: (keyError as Error).message }, 'direct key insert failed, message only');
    expect(lines.join('\n')).not.toContain(email.direct);
    expect(lines.join('\n')).not.toContain(hashKey(key));

    const [keyLine] = withMsg('direct key insert failed');
    expect(keyLine!.err).toMatchObject({ type: 'DrizzleQueryError', code: '23505', constraint: 'api_keys_secret_hash_key', table: 'api_keys' });
    expect(keyLine!.err!.query).toMatch(/^insert into "api_keys"/);
    expect(keyLine!.err).not.toHaveProperty('params');
    expect(keyLine!.err).not.toHaveProperty('detail');
    const [messageOnly] = withMsg('direct key insert failed, message only');
    expect(messageOnly!.error).toMatch(/^Failed query: insert into "api_keys"/);
    expect(messageOnly!.error).not.toContain('params');
    const [userLine] = withMsg('direct user insert failed');
    expect(userLine!.err).toMatchObject({ code: '23514', constraint: refusal.users, table: 'users' });
  });

  it('recorded the failures, at debug level', () => {
    const all = entries();
    expect(all.some((e) => e.level === 20)).toBe(true);

    const rejected = withMsg('request rejected').map((e) => e.status);
    expect(rejected).toEqual(expect.arrayContaining([401, 409]));

    const adminFailure = withMsg('request failed').find((e) => e.err?.constraint === refusal.users);
    expect(adminFailure?.err).toMatchObject({ type: 'DrizzleQueryError', code: '23514', table: 'users' });
    expect(adminFailure!.err!.query).toMatch(/^insert into "users"/);
    expect(adminFailure!.err!.message).toMatch(/violates check constraint/);

    const notStored = withMsg('could not store the response; stored without its content, usage counted');
    expect(notStored).toHaveLength(2);
    for (const e of notStored) {
      expect(e.err).toMatchObject({ code: '23514', constraint: refusal.responses, table: 'responses' });
      expect(e.err!.query).toMatch(/^\s*insert into responses \(/);
    }
    expect(withMsg('no model answered')).toHaveLength(1);

    const urls = withMsg('incoming request').map((e) => (e.req as { url: string }).url);
    expect(urls).toContain('/v1/responses?api_key=[redacted]&token=[redacted]&plain=[redacted]');
    expect(urls).toContain('/v1/models/[redacted]');
  });

  it('holds no content and no credential', () => {
    const log = lines.join('\n');
    expect(log.length).toBeGreaterThan(0);
    const secrets: Record<string, string> = {
      key,
      'key secret': key.slice('eugpt_'.length),
      'key hash': hashKey(key),
      'bad key': badKey,
      'admin token': adminToken,
      'upstream key': upstreamKey,
      ...Object.fromEntries(Object.entries(prompt).map(([k, v]) => [`prompt ${k}`, v])),
      ...Object.fromEntries(Object.entries(answer).map(([k, v]) => [`answer ${k}`, v])),
      ...Object.fromEntries(Object.entries(meta).map(([k, v]) => [`metadata ${k}`, v])),
      ...Object.fromEntries(Object.entries(email).map(([k, v]) => [`email ${k}`, v])),
    };
    const found = Object.entries(secrets)
      .filter(([, value]) => log.includes(value))
      .map(([name]) => name);
    expect(found).toEqual([]);
  });
});
