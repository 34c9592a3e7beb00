import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { and, eq, sum } from 'drizzle-orm';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { responses, usageTotals } from '../src/db/schema.ts';
import type { Principal } from '../src/auth/key-auth.ts';
import { estimateTokens, limitedWindows, releaseExpired } from '../src/limits/quota.ts';
import { echoOf, ResponseBuilder } from '../src/responses/builder.ts';
import { parseCreateRequest } from '../src/responses/request.ts';
import { ResponseWriter } from '../src/responses/writer.ts';
import { windowsAt } from '../src/limits/windows.ts';
import { featuresOf } from '../src/tenancy/plans.ts';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { adminHeaders, ADMIN_TOKEN, bearer, createTenant, type Tenant } from './helpers/app.ts';
import { openSecondHandle } from './helpers/db.ts';
import { eventually, startHarness, writeConfig, type Harness } from './helpers/harness.ts';

/** Every answer of the fake upstream: 11 prompt + 3 output tokens. */
const PER_REQUEST = 14;
/** The model's output budget: small, so that reservations stay small. */
const MAX_OUTPUT = 16;

let clock = Date.parse('2026-03-15T12:00:00Z');
let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    model: { max_output_tokens: MAX_OUTPUT, context_window: 4096 },
    fallback: { chunks: ['a', 'b', 'c'], usage: { prompt_tokens: 11, completion_tokens: 3 } }, // PER_REQUEST tokens
    router: { breaker: { failures: 1000 } },
    now: () => clock,
  });
});
afterAll(async () => h.close());
const normalAnswer = { chunks: ['a', 'b', 'c'], usage: { prompt_tokens: 11, completion_tokens: 3 } };
beforeEach(() => {
  clock = Date.parse('2026-03-15T12:00:00Z');
  h.upstream.queue.length = 0;
  h.upstream.fallback = normalAnswer;
});

const admin = (app: FastifyInstance, method: 'GET' | 'POST' | 'PATCH' | 'PUT', url: string, payload?: object) =>
  app.inject({ method, url: `/admin/v1${url}`, headers: adminHeaders, ...(payload ? { payload } : {}) });

const ask = (t: Tenant, payload: Record<string, unknown> = {}, app = h.app) =>
  app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(t.key), payload: { input: 'x', stream: false, ...payload } });

async function orgTotals(orgId: string, window: 'day' | 'month' = 'day') {
  const [row] = await h.database.db
    .select()
    .from(usageTotals)
    .where(and(eq(usageTotals.subjectId, orgId), eq(usageTotals.window, window)));
  return { used: Number(row?.totalTokens ?? 0), reserved: Number(row?.reservedTokens ?? 0), requests: row?.requests ?? 0 };
}

async function storedTotal(orgId: string) {
  const [row] = await h.database.db.select({ total: sum(responses.totalTokens) }).from(responses).where(eq(responses.organizationId, orgId));
  return Number(row?.total ?? 0);
}

/** A fresh organisation with the given limits, and a key. */
async function limitedTenant(limits: { daily_token_limit?: number; monthly_token_limit?: number }, app = h.app) {
  const t = await createTenant(app);
  const res = await admin(app, 'PATCH', `/organizations/${t.orgId}`, limits);
  expect(res.statusCode).toBe(200);
  return t;
}

describe('token limits under concurrency', () => {
  // The upstream reports exactly the estimate: one admission too many would show as usage over the limit.
  const ESTIMATE = estimateTokens(7, MAX_OUTPUT);
  const usesItsEstimate = { chunks: ['a', 'b', 'c'], usage: { prompt_tokens: ESTIMATE - 3, completion_tokens: 3 } };

  it('admits exactly as many of 200 concurrent requests as the organisation limit holds', async () => {
    h.upstream.fallback = usesItsEstimate;
    const limit = 50 * ESTIMATE;
    const t = await limitedTenant({ daily_token_limit: limit });
    const answers = await Promise.all(Array.from({ length: 200 }, () => ask(t)));
    const admitted = answers.filter((a) => a.statusCode === 200);
    const refused = answers.filter((a) => a.statusCode === 429);
    expect(admitted.length + refused.length).toBe(200);
    for (const r of refused) {
      expect(r.json().error).toMatchObject({ type: 'rate_limit_error', code: 'daily_token_limit_exceeded' });
      expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    }
    const totals = await orgTotals(t.orgId);
    // The stated bound (src/limits/quota.ts): used ≤ limit + the overage of requests that used more than their
    // estimate; here none did, so the slack is zero and the limit is met exactly.
    expect(admitted.length).toBe(50);
    expect(totals.used).toBe(limit);
    expect(totals.reserved).toBe(0);
    expect(await storedTotal(t.orgId)).toBe(totals.used);
  });

  it('admits requests one after another until the next one might overflow', async () => {
    const limit = 50 * PER_REQUEST;
    const t = await limitedTenant({ daily_token_limit: limit });
    const estimate = estimateTokens(7, MAX_OUTPUT);
    let admitted = 0;
    for (let i = 0; i < 60; i++) {
      const res = await ask(t);
      if (res.statusCode !== 200) break;
      admitted++;
    }
    const totals = await orgTotals(t.orgId);
    expect(totals.used).toBe(admitted * PER_REQUEST);
    expect(totals.used).toBeLessThanOrEqual(limit);
    // Refused only when the remaining tokens could not cover one more estimate.
    expect(limit - totals.used).toBeLessThan(estimate + 8);
    expect(admitted).toBeGreaterThan(40);
  });

  it('holds across two app instances sharing the database', async () => {
    h.upstream.fallback = usesItsEstimate;
    const second = await openSecondHandle(h.database);
    const config = loadConfig({ EUGPT_ADMIN_TOKEN: ADMIN_TOKEN, EUGPT_CONFIG: writeConfig(h.upstream.url, { model: { max_output_tokens: MAX_OUTPUT, context_window: 4096 } }), FAKE_UPSTREAM_KEY: 'k' });
    const other = await buildApp({ config, database: second.database, logger: false, now: () => clock });
    try {
      const limit = 30 * ESTIMATE;
      const t = await limitedTenant({ daily_token_limit: limit });
      const answers = await Promise.all(Array.from({ length: 120 }, (_, i) => ask(t, {}, i % 2 === 0 ? h.app : other)));
      const byInstance = [0, 1].map((k) => answers.filter((a, i) => i % 2 === k && a.statusCode === 200).length);
      const totals = await orgTotals(t.orgId);
      expect(byInstance[0]! + byInstance[1]!).toBe(30);
      expect(totals.used).toBe(limit);
      expect(totals.reserved).toBe(0);
    } finally {
      await other.close();
      await second.close();
    }
  });
});

describe('windows', () => {
  it('roll over at midnight UTC, and retry-after says when', async () => {
    clock = Date.parse('2026-03-15T23:59:50Z');
    const t = await limitedTenant({ daily_token_limit: 3 * PER_REQUEST + estimateTokens(7, MAX_OUTPUT) - PER_REQUEST });
    let refused: Awaited<ReturnType<typeof ask>> | undefined;
    for (let i = 0; i < 10 && refused === undefined; i++) {
      const res = await ask(t);
      if (res.statusCode === 429) refused = res;
    }
    expect(refused).toBeDefined();
    expect(refused?.headers['retry-after']).toBe('10');
    expect(refused?.headers['x-ratelimit-reset-tokens']).toBe('10');

    clock = Date.parse('2026-03-16T00:00:01Z');
    const next = await ask(t);
    expect(next.statusCode).toBe(200);
    expect((await h.app.inject({ method: 'GET', url: '/v1/usage', headers: bearer(t.key) })).json().day).toMatchObject({
      start: '2026-03-16',
      organization: { total_tokens: PER_REQUEST, requests: 1 },
    });
  });

  it('applies the monthly limit until the first of the next month', async () => {
    clock = Date.parse('2026-03-31T10:00:00Z');
    const t = await limitedTenant({ monthly_token_limit: estimateTokens(7, MAX_OUTPUT) });
    expect((await ask(t)).statusCode).toBe(200);
    const refused = await ask(t);
    expect(refused.statusCode).toBe(429);
    expect(refused.json().error.code).toBe('monthly_token_limit_exceeded');
    expect(refused.headers['retry-after']).toBe(String(14 * 3600));
    clock = Date.parse('2026-04-01T00:00:00Z');
    expect((await ask(t)).statusCode).toBe(200);
  });

  it('refuses a request whose estimate alone is over the limit, saying how to fix it', async () => {
    const t = await limitedTenant({ daily_token_limit: 20 });
    const res = await ask(t);
    expect(res.statusCode).toBe(429);
    expect(res.json().error.message).toMatch(/lower max_output_tokens/);
  });
});

describe('headers', () => {
  it('are on every answer of /v1/responses, for the tightest window', async () => {
    const t = await limitedTenant({ daily_token_limit: 10_000, monthly_token_limit: 1_000 });
    const ok = await ask(t);
    expect(ok.headers['x-ratelimit-limit-tokens']).toBe('1000');
    const estimate = estimateTokens(7, MAX_OUTPUT);
    // After admission: the estimate is held.
    expect(Number(ok.headers['x-ratelimit-remaining-tokens'])).toBe(1000 - estimate);
    expect(ok.headers['x-ratelimit-reset-tokens']).toBe(String((Date.parse('2026-04-01T00:00:00Z') - clock) / 1000));

    const bad = await h.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(t.key), payload: { stream: false } });
    expect(bad.statusCode).toBe(400);
    expect(bad.headers['x-ratelimit-remaining-tokens']).toBe(String(1000 - PER_REQUEST));

    const unlimited = await createTenant(h.app);
    expect((await ask(unlimited)).headers['x-ratelimit-limit-tokens']).toBeUndefined();
  });
});

describe('metering', () => {
  it('counts a streamed response from the upstream usage', async () => {
    const t = await limitedTenant({ daily_token_limit: 100_000 });
    const res = await ask(t, { stream: true });
    expect(res.statusCode).toBe(200);
    expect(await orgTotals(t.orgId)).toEqual({ used: PER_REQUEST, reserved: 0, requests: 1 });
  });

  it('counts an aborted stream from what was produced, and releases its reservation', async () => {
    const t = await limitedTenant({ daily_token_limit: 100_000 });
    h.upstream.queue.push({ chunks: Array.from({ length: 200 }, (_, i) => `w${i} `), delayBetweenMs: 15 });
    await new Promise<void>((resolve, reject) => {
      const req = request(`${h.origin}/v1/responses`, { method: 'POST', headers: { ...bearer(t.key), 'content-type': 'application/json' } }, (res) => {
        res.on('data', (c: Buffer) => {
          if (c.toString().includes('output_text.delta')) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(err)));
      req.end(JSON.stringify({ input: 'long story' }));
    });
    const totals = await eventually(async () => {
      const now = await orgTotals(t.orgId);
      return now.requests === 1 ? now : undefined;
    });
    expect(totals.reserved).toBe(0);
    expect(totals.used).toBeGreaterThan(0);
    expect(await storedTotal(t.orgId)).toBe(totals.used);
  });

  it('charges nothing and holds nothing when the upstream fails before answering', async () => {
    const t = await limitedTenant({ daily_token_limit: 100_000 });
    h.upstream.queue.push({ status: 500 });
    expect((await ask(t)).statusCode).toBe(502);
    expect(await orgTotals(t.orgId)).toEqual({ used: 0, reserved: 0, requests: 1 });
  });

  it('agrees with `eugpt org usage` and GET /v1/usage', async () => {
    const t = await limitedTenant({ daily_token_limit: 100_000, monthly_token_limit: 1_000_000 });
    for (let i = 0; i < 3; i++) await ask(t);
    const orgUsage = (await admin(h.app, 'GET', `/organizations/${t.orgId}/usage`)).json();
    expect(orgUsage.day.organization).toEqual({
      input_tokens: 33,
      output_tokens: 9,
      total_tokens: 42,
      requests: 3,
      reserved_tokens: 0,
      limit: 100_000,
      remaining: 100_000 - 42,
    });
    expect(orgUsage.month.organization).toMatchObject({ total_tokens: 42, limit: 1_000_000 });
    expect(await storedTotal(t.orgId)).toBe(42);
    const mine = (await h.app.inject({ method: 'GET', url: '/v1/usage', headers: bearer(t.key) })).json();
    expect(mine).toMatchObject({ object: 'usage', user_id: t.userId, organization_id: t.orgId, plan: 'default' });
    expect(mine.day.user).toMatchObject({ total_tokens: 42, limit: null, remaining: null });
    expect(mine.day.organization).toEqual(orgUsage.day.organization);
  });
});

describe('plans and policies', () => {
  async function onPlan(plan: Record<string, unknown>, name = `p-${randomUUID().slice(0, 8)}`) {
    expect((await admin(h.app, 'PUT', `/plans/${name}`, plan)).statusCode).toBe(200);
    const t = await createTenant(h.app);
    expect((await admin(h.app, 'PATCH', `/organizations/${t.orgId}`, { plan: name })).statusCode).toBe(200);
    return t;
  }

  it.each([
    ['a suspended organisation', async (t: Tenant) => admin(h.app, 'PATCH', `/organizations/${t.orgId}`, { status: 'suspended' }), 'organization_suspended'],
    ['API access off by policy', async (t: Tenant) => admin(h.app, 'PATCH', `/organizations/${t.orgId}`, { api_access: false }), 'api_access_disabled'],
    ['an ended trial', async (t: Tenant) => admin(h.app, 'PATCH', `/organizations/${t.orgId}`, { trial_ends_at: '2026-03-01T00:00:00Z' }), 'trial_expired'],
  ])('answers 403 for %s, on every /v1 route', async (_name, change, code) => {
    const t = await createTenant(h.app);
    expect((await change(t)).statusCode).toBe(200);
    for (const url of ['/v1/models', '/v1/usage']) {
      const res = await h.app.inject({ method: 'GET', url, headers: bearer(t.key) });
      expect(res.statusCode).toBe(403);
      expect(res.json().error).toMatchObject({ type: 'permission_error', code });
    }
    expect((await ask(t)).json().error.code).toBe(code);
  });

  it('lets a resumed organisation in again', async () => {
    const t = await createTenant(h.app);
    await admin(h.app, 'PATCH', `/organizations/${t.orgId}`, { status: 'suspended' });
    expect((await ask(t)).statusCode).toBe(403);
    await admin(h.app, 'PATCH', `/organizations/${t.orgId}`, { status: 'active' });
    expect((await ask(t)).statusCode).toBe(200);
  });

  it('answers 403 plan_feature_disabled for what the plan leaves out', async () => {
    const noApi = await onPlan({ features: { api_access: false } });
    expect((await ask(noApi)).json().error.code).toBe('plan_feature_disabled');
    const noTools = await onPlan({ features: { tools: false } });
    expect((await ask(noTools, { tools: [{ type: 'web_search' }] })).json().error).toMatchObject({ code: 'plan_feature_disabled' });
    expect((await ask(noTools)).statusCode).toBe(200);
    const noProjects = await onPlan({ features: { projects: false } });
    const res = await ask(noProjects, { project_id: randomUUID() });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe('plan_feature_disabled');
  });

  it('starts a trial when an organisation is created on a trial plan', async () => {
    const name = `trial-${randomUUID().slice(0, 8)}`;
    await admin(h.app, 'PUT', `/plans/${name}`, { trial_days: 14 });
    const org = await admin(h.app, 'POST', '/organizations', { name: 'Trial Co', plan: name });
    expect(Date.parse(org.json().trial_ends_at)).toBe(clock + 14 * 86_400_000);
    expect((await admin(h.app, 'POST', '/organizations', { name: 'X', plan: 'no-such-plan' })).json().error.code).toBe('plan_not_found');
  });

  it('applies per-user limits from the plan', async () => {
    const t = await onPlan({ user_daily_tokens: estimateTokens(7, MAX_OUTPUT) + PER_REQUEST });
    expect((await ask(t)).statusCode).toBe(200);
    expect((await ask(t)).statusCode).toBe(200);
    const third = await ask(t);
    expect(third.statusCode).toBe(429);
    expect(third.json().error.message).toMatch(/your daily token limit/);
  });

  it('limits requests per minute per key when the plan says so, across the minute boundary', async () => {
    const t = await onPlan({ requests_per_minute: 3 });
    for (let i = 0; i < 3; i++) expect((await ask(t)).statusCode).toBe(200);
    const fourth = await ask(t);
    expect(fourth.statusCode).toBe(429);
    expect(fourth.json().error.code).toBe('rate_limited');
    expect(fourth.headers['retry-after']).toBe('60');
    expect(fourth.headers['x-ratelimit-limit-tokens']).toBeUndefined(); // this plan has no token limit
    clock += 60_000;
    expect((await ask(t)).statusCode).toBe(200);

    const both = await onPlan({ requests_per_minute: 1, daily_tokens: 5000 });
    expect((await ask(both)).statusCode).toBe(200);
    const limited = await ask(both);
    expect(limited.json().error.code).toBe('rate_limited');
    expect(limited.headers['x-ratelimit-limit-tokens']).toBe('5000');
    expect(limited.headers['x-ratelimit-remaining-tokens']).toBe(String(5000 - PER_REQUEST));
  });
});

describe('reservations left behind', () => {
  it('are given back once they expire, exactly once', async () => {
    const t = await limitedTenant({ daily_token_limit: 10_000 });
    const principal: Principal = {
      keyId: t.keyId,
      userId: t.userId,
      organizationId: t.orgId,
      role: 'member',
      policy: {
        status: 'active',
        apiAccess: true,
        plan: 'default',
        trialEndsAt: null,
        features: featuresOf({}),
        limits: { orgDay: 10_000, orgMonth: null, userDay: null, userMonth: null },
        requestsPerMinute: null,
        residency: null,
      },
    };
    const windows = windowsAt(clock);
    const writer = new ResponseWriter(h.database.db);
    const admit = async (estimate: number, ttlMs: number) => {
      const responseId = randomUUID();
      const conversationId = randomUUID();
      const body = new ResponseBuilder(responseId, clock, 'llama-small', conversationId, echoOf(parseCreateRequest({ input: 'x' }))).snapshot();
      const ask = { id: randomUUID(), estimate, windows, limited: limitedWindows(principal, windows), expiresAt: new Date(clock + ttlMs), now: clock };
      const result = await writer.admit(ask, {
        responseId,
        instanceId: randomUUID(),
        userId: t.userId,
        organizationId: t.orgId,
        keyId: t.keyId,
        projectId: null,
        conversation: { id: conversationId, isNew: true, title: null, instructions: null, instructionTokens: 0 },
        model: 'llama-small',
        createdAt: clock,
        body,
        pending: { input: [], promptTokens: 0, reservationId: ask.id, windows },
      });
      expect(result.admitted).toBe(true);
      return { responseId, conversationId, newConversation: true, reservationId: ask.id };
    };
    // A request whose process died (never given back), and one still running.
    const dead = await admit(300, 1000);
    const alive = await admit(200, 3_600_000);
    expect(await orgTotals(t.orgId)).toMatchObject({ reserved: 500 });

    expect(await releaseExpired(h.database.db, clock + 500)).toBe(0);
    expect(await releaseExpired(h.database.db, clock + 2000)).toBeGreaterThanOrEqual(1);
    expect(await orgTotals(t.orgId)).toMatchObject({ reserved: 200 });

    // The dead request's process coming back late must not give it back twice.
    await writer.release(dead);
    expect(await orgTotals(t.orgId)).toMatchObject({ reserved: 200 });
    await writer.release(alive);
    expect(await orgTotals(t.orgId)).toMatchObject({ reserved: 0, used: 0 });
    await writer.close(1000);
  });
});
