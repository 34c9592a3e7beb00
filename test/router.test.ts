import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { modelSchema, routerSchema, type Catalog, type ModelConfig } from '../src/router/catalog.ts';
import { classify, type RequestFeatures } from '../src/router/classify.ts';
import { evaluate, type LabelledPrompt } from '../src/router/evaluate.ts';
import { HealthTable, type HealthView } from '../src/router/health.ts';
import { pick } from '../src/router/pick.ts';

const settings = routerSchema.parse({});

const features = (over: Partial<RequestFeatures> = {}): RequestFeatures => ({
  promptTokens: 20,
  requiredTokens: 20,
  inputText: 'Hi there',
  retrieval: false,
  reasoningEffort: null,
  needs: [],
  maxOutputTokens: null,
  ...over,
});

describe('classify', () => {
  it.each([
    ['a short greeting', {}, 'fast'],
    ['a long prompt', { promptTokens: 30_000 }, 'long-context'],
    ['a long prompt, even with reasoning cues', { promptTokens: 30_000, inputText: 'Prove it step by step' }, 'long-context'],
    ['reasoning.effort high', { reasoningEffort: 'high' }, 'reasoning'],
    ['reasoning.effort minimal on a hard prompt', { reasoningEffort: 'minimal', inputText: 'Prove that √2 is irrational.' }, 'fast'],
    ['a proof', { inputText: 'Prove that there are infinitely many primes.' }, 'reasoning'],
    ['step by step', { inputText: 'Explain step by step how TLS works.' }, 'reasoning'],
    ['German step by step', { inputText: 'Erkläre Schritt für Schritt, wie TLS funktioniert.' }, 'reasoning'],
    ['maths and code together', { inputText: 'Write a Python function that solves the equation x^2 - 5x + 6 = 0.' }, 'reasoning'],
    ['a single weak cue', { inputText: 'Compare and contrast tea and coffee.' }, 'general'],
    ['retrieval', { retrieval: true }, 'general'],
    ['a medium prompt without cues', { promptTokens: 800, inputText: 'Tell me about the history of the Hanseatic League.' }, 'general'],
    ['many questions', { inputText: 'Who? What? Where? When?', promptTokens: 20 }, 'general'],
    ['a short request for a long answer', { inputText: 'Write a detailed report on Dutch dikes.' }, 'general'],
    ['a Polish request for a long answer', { inputText: 'Napisz szczegółowy raport o Bałtyku.' }, 'general'],
    ['code with a programming task', { inputText: 'Debug this: ```js\nconst x = y.map(f)\n```' }, 'reasoning'],
  ])('%s → %s', (_name, over, category) => {
    expect(classify(features(over), settings).category).toBe(category);
  });

  it('says why', () => {
    expect(classify(features({ inputText: 'Prove it step by step' }), settings).reason).toBe('reasoning cues: step-by-step, proof');
    expect(classify(features({ promptTokens: 30_000 }), settings).reason).toMatch(/30000 tokens is over 24000/);
  });

  it('uses the configured thresholds', () => {
    const strict = routerSchema.parse({ fast_max_tokens: 5, long_context_tokens: 100 });
    expect(classify(features({ promptTokens: 20 }), settings).category).toBe('fast');
    expect(classify(features({ promptTokens: 20 }), strict).category).toBe('general');
    expect(classify(features({ promptTokens: 101 }), strict).category).toBe('long-context');
  });
});

const model = (id: string, over: Partial<ModelConfig> = {}): ModelConfig =>
  modelSchema.parse({ id, provider: 'p', upstream_model: id, ...over });

const catalogOf = (...models: ModelConfig[]): Catalog => ({ providers: [], models, router: settings });

const allHealthy: HealthView = { available: () => true, readyAt: () => 0, latencyMs: () => undefined, saturated: () => false };

const catalog = catalogOf(
  model('small', { categories: ['fast', 'general'], context_window: 8192, max_output_tokens: 2048, price: { input: 0.1, output: 0.3 } }),
  model('mid', { categories: ['general'], context_window: 32768, max_output_tokens: 4096, price: { input: 0.5, output: 1.5 }, capabilities: ['json'] }),
  model('thinker', { categories: ['reasoning'], context_window: 65536, max_output_tokens: 8192, price: { input: 2, output: 8 }, capabilities: ['json'] }),
  model('long', { categories: ['long-context', 'general'], context_window: 200_000, max_output_tokens: 8192, price: { input: 1, output: 3 } }),
  model('off', { categories: ['fast'], price: { input: 0, output: 0 }, enabled: false }),
);

describe('pick', () => {
  it.each([
    ['a short prompt', features(), 'small', 'fast'],
    ['a hard prompt', features({ inputText: 'Prove that √2 is irrational, step by step.' }), 'thinker', 'reasoning'],
    ['a long prompt', features({ promptTokens: 100_000, requiredTokens: 100_000 }), 'long', 'long-context'],
    ['JSON output', features({ needs: ['json'] }), 'mid', 'fast'],
    ['a general prompt: the cheapest general model', features({ promptTokens: 1000, requiredTokens: 1000, inputText: 'Tell me about Ghent.' }), 'small', 'general'],
    ['an input too long for the small model', features({ promptTokens: 10_000, requiredTokens: 10_000, inputText: 'Summarise.' }), 'mid', 'general'],
  ])('%s → %s', (_name, f, id, category) => {
    const d = pick(f, catalog, allHealthy);
    expect(d.model?.id).toBe(id);
    expect(d.category).toBe(category);
  });

  it('lists the other fitting, healthy models as fallbacks, nearest first', () => {
    const d = pick(features({ inputText: 'Prove it step by step.' }), catalog, allHealthy);
    expect(d.model?.id).toBe('thinker');
    // All three are one step weaker (general): cheapest first.
    expect(d.model !== null && d.fallbacks.map((m) => m.id)).toEqual(['small', 'mid', 'long']);
  });

  it('never picks a disabled model, an unhealthy one, or one whose provider is full, while a healthy one fits', () => {
    const sick: HealthView = { ...allHealthy, available: (id) => id !== 'small' };
    expect(pick(features(), catalog, sick)).toMatchObject({ model: { id: 'mid' }, failOpen: false });
    const fullButMid: HealthView = { ...allHealthy, saturated: () => true };
    const onlyMidFree = catalogOf(...catalog.models.map((m) => ({ ...m, provider: m.id === 'mid' ? 'q' : 'p' })));
    expect(pick(features(), onlyMidFree, { ...fullButMid, saturated: (p) => p === 'p' })).toMatchObject({ model: { id: 'mid' }, failOpen: false });
  });

  // Every capable model is out: fail open, the one back soonest first, never `none_available`.
  const out = (readyAt: Record<string, number>, saturated: string[] = []): HealthView => ({
    available: (id) => readyAt[id] === 0 && !saturated.includes(id),
    readyAt: (id) => readyAt[id] ?? 0,
    latencyMs: () => undefined,
    saturated: (p) => saturated.includes(p),
  });
  const perModel = catalogOf(...catalog.models.map((m) => ({ ...m, provider: m.id })));
  it.each([
    ['all breakers open: the soonest cooldown end', out({ small: 9_000, mid: 5_000, thinker: 7_000, long: 6_000 }), ['mid', 'long', 'thinker', 'small']],
    ['a tie on the end: the usual order (cost)', out({ small: 5_000, mid: 5_000, thinker: 7_000, long: 5_000 }), ['small', 'mid', 'long', 'thinker']],
    ['open and full mixed: a full provider counts as back now', out({ small: 9_000, mid: 0, thinker: 7_000, long: 6_000 }, ['mid']), ['mid', 'long', 'thinker', 'small']],
    ['every provider full: the usual order', out({ small: 0, mid: 0, thinker: 0, long: 0 }, ['small', 'mid', 'thinker', 'long']), ['small', 'mid', 'long', 'thinker']],
  ])('fails open when %s', (_name, health, order) => {
    const d = pick(features({ promptTokens: 1000, requiredTokens: 1000, inputText: 'Tell me about Ghent.' }), perModel, health);
    expect(d.model).not.toBeNull();
    expect(d.model !== null && [d.model.id, ...d.fallbacks.map((m) => m.id)]).toEqual(order);
    expect(d).toMatchObject({ failOpen: true, reason: expect.stringContaining('back soonest') });
  });

  it('goes to the nearest stronger category when its own has no healthy model', () => {
    const noFast: HealthView = { ...allHealthy, available: (id) => id !== 'small' };
    const d = pick(features(), catalog, noFast);
    expect(d.model?.id).toBe('mid');
    expect(d.reason).toMatch(/nearest to fast/);
  });

  it('breaks cost ties by latency, then weight, then id', () => {
    const twins = catalogOf(model('a', { weight: 1 }), model('b', { weight: 5 }), model('c', { weight: 5 }));
    expect(pick(features(), twins, allHealthy).model?.id).toBe('b');
    const fasterA: HealthView = { ...allHealthy, latencyMs: (id) => (id === 'a' ? 100 : 500) };
    expect(pick(features(), twins, fasterA).model?.id).toBe('a');
  });

  it('says when nothing fits', () => {
    expect(pick(features({ requiredTokens: 500_000, promptTokens: 500_000 }), catalog, allHealthy)).toMatchObject({ model: null, why: 'nothing_fits' });
    expect(pick(features({ needs: ['vision'] }), catalog, allHealthy)).toMatchObject({ model: null, why: 'nothing_fits' });
  });
});

describe('the circuit breaker', () => {
  const breaker = { failures: 3, cooldown_ms: 30_000, max_cooldown_ms: 120_000, rate_limit_cooldown_ms: 5_000, max_rate_limit_cooldown_ms: 60_000 };

  it('opens after consecutive failures, cools down, lets one probe through, and closes on success', () => {
    let now = 0;
    const t = new HealthTable(breaker, new Map(), () => now);
    const fail = () => {
      expect(t.acquire('m', 'p')).toBe(true);
      t.release('m', 'p', { type: 'failure', timeout: false });
    };
    fail();
    fail();
    expect(t.available('m')).toBe(true);
    fail();
    expect(t.available('m')).toBe(false);
    expect(t.acquire('m', 'p')).toBe(false);

    now += 30_000;
    expect(t.available('m')).toBe(true);
    expect(t.acquire('m', 'p')).toBe(true); // the probe
    expect(t.acquire('m', 'p')).toBe(false); // only one at a time
    t.release('m', 'p', { type: 'success', latencyMs: 120 });
    expect(t.report().m).toMatchObject({ state: 'closed', consecutiveFailures: 0, latencyMs: 120 });
    expect(t.available('m')).toBe(true);
  });

  it('doubles the cooldown while probes fail, up to the maximum', () => {
    let now = 0;
    const t = new HealthTable(breaker, new Map(), () => now);
    for (let i = 0; i < 3; i++) {
      t.acquire('m', 'p');
      t.release('m', 'p', { type: 'failure', timeout: true });
    }
    const cooldowns: number[] = [];
    for (let i = 0; i < 4; i++) {
      const until = t.report().m!.openUntil;
      cooldowns.push(t.report().m!.cooldownMs);
      now = until;
      expect(t.acquire('m', 'p')).toBe(true);
      t.release('m', 'p', { type: 'failure', timeout: false });
    }
    expect(cooldowns).toEqual([30_000, 60_000, 120_000, 120_000]);
    expect(t.report().m).toMatchObject({ timeouts: 3, failures: 7 });
  });

  it('does not count a client that left, and keeps providers under their concurrency cap', () => {
    const t = new HealthTable(breaker, new Map([['p', 2]]));
    expect(t.acquire('a', 'p')).toBe(true);
    expect(t.acquire('b', 'p')).toBe(true);
    expect(t.saturated('p')).toBe(true);
    expect(t.acquire('a', 'p')).toBe(false);
    t.release('a', 'p', { type: 'neutral' });
    expect(t.acquire('a', 'p')).toBe(true);
    expect(t.report().a).toMatchObject({ failures: 0, successes: 0 });
  });
});

describe('requests at fault, rate limits and failing open', () => {
  const breaker = { failures: 3, cooldown_ms: 30_000, max_cooldown_ms: 120_000, rate_limit_cooldown_ms: 5_000, max_rate_limit_cooldown_ms: 60_000 };

  it('never opens the breaker for neutral outcomes, however many', () => {
    const t = new HealthTable(breaker, new Map());
    for (let i = 0; i < 10; i++) {
      expect(t.acquire('m', 'p')).toBe(true);
      t.release('m', 'p', { type: 'neutral' });
    }
    expect(t.report().m).toMatchObject({ state: 'closed', failures: 0, consecutiveFailures: 0 });
    expect(t.routingState()).toEqual({ state: 'ok', open: [], cooling: [] });
  });

  it('rests a model for its retry-after after a 429, without counting a failure, then routes to it again', () => {
    let now = 0;
    const t = new HealthTable(breaker, new Map(), () => now);
    t.acquire('m', 'p');
    t.release('m', 'p', { type: 'failure', timeout: false });
    t.acquire('m', 'p');
    t.release('m', 'p', { type: 'rate_limited', retryAfterMs: 2_000 });
    expect(t.available('m')).toBe(false);
    expect(t.readyAt('m')).toBe(2_000);
    expect(t.report().m).toMatchObject({ state: 'closed', failures: 1, consecutiveFailures: 1, rateLimited: 1 });
    expect(t.routingState()).toEqual({ state: 'degraded', open: [], cooling: ['m'] });
    now = 1_999;
    expect(t.acquire('m', 'p')).toBe(false);
    now = 2_000;
    expect(t.available('m')).toBe(true);
    expect(t.readyAt('m')).toBe(0);
    expect(t.routingState()).toEqual({ state: 'ok', open: [], cooling: [] });
  });

  it.each([
    ['no retry-after: the default rest', undefined, 5_000],
    ['a retry-after over the bound: the bound', 3_600_000, 60_000],
    ['retry-after 0: no rest', 0, 0],
  ])('rests %s', (_name, retryAfterMs, rest) => {
    const now = 1_000;
    const t = new HealthTable(breaker, new Map(), () => now);
    t.acquire('m', 'p');
    t.release('m', 'p', { type: 'rate_limited', retryAfterMs });
    expect(t.report().m!.coolUntil).toBe(now + rest);
  });

  /** A table whose model 'm' failed three times at t=0 (its breaker open until 30 s), seen at t=1 s. */
  const trippedAt1s = () => {
    let now = 0;
    const t = new HealthTable(breaker, new Map(), () => now);
    for (let i = 0; i < 3; i++) {
      t.acquire('m', 'p');
      t.release('m', 'p', { type: 'failure', timeout: false });
    }
    now = 1_000;
    return t;
  };

  it('lets a forced attempt through an open breaker, and a success closes it', () => {
    const t = trippedAt1s();
    expect(t.routingState()).toEqual({ state: 'degraded', open: ['m'], cooling: [] });
    expect(t.readyAt('m')).toBe(30_000);
    expect(t.acquire('m', 'p')).toBe(false);
    expect(t.acquire('m', 'p', { force: true })).toBe(true);
    t.release('m', 'p', { type: 'success', latencyMs: 50 });
    expect(t.report().m).toMatchObject({ state: 'closed', consecutiveFailures: 0 });
    expect(t.routingState().state).toBe('ok');
  });

  it('keeps an open breaker open when a forced attempt fails, without pushing its cooldown', () => {
    const t = trippedAt1s();
    t.acquire('m', 'p', { force: true });
    t.release('m', 'p', { type: 'failure', timeout: false });
    expect(t.report().m).toMatchObject({ state: 'open', openUntil: 30_000, failures: 4 });
  });
});

describe('the router evaluation set', () => {
  it('has at least 60 labelled prompts in several languages, and the classifier gets at least 90% right', async () => {
    const set = JSON.parse(readFileSync(new URL('./fixtures/router-eval.json', import.meta.url), 'utf8')) as LabelledPrompt[];
    expect(set.length).toBeGreaterThanOrEqual(60);
    expect(new Set(set.map((p) => p.lang)).size).toBeGreaterThanOrEqual(5);
    const result = evaluate(set, settings);
    expect(result.accuracy).toBeGreaterThanOrEqual(0.9);
    for (const c of ['fast', 'general', 'reasoning', 'long-context'] as const) expect(result.confusion[c][c]).toBeGreaterThan(0);
  });
});
