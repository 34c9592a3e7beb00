import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { isStorable, jsonProblem, MAX_JSON_DEPTH, storableJson, storableString, toStorable } from '../src/http/text.ts';
import { createAnthropicProvider } from '../src/providers/anthropic.ts';
import { createOpenAICompatibleProvider } from '../src/providers/openai-compatible.ts';
import { StorableText } from '../src/providers/storable-text.ts';
import type { Provider, ProviderEvent } from '../src/providers/types.ts';
import { providerSchema } from '../src/router/catalog.ts';
import { startFakeAnthropic } from './helpers/fake-anthropic.ts';
import { startFakeUpstream } from './helpers/fake-openai.ts';
import type { FakeUpstream } from './helpers/fake-server.ts';

const SMILE = '\ud83d\ude00';
const FFFD = '\ufffd';

describe('isStorable and toStorable', () => {
  const cases: [string, boolean, string][] = [
    ['plain', true, 'plain'],
    ['', true, ''],
    [`emoji ${SMILE} and 中文 and e\u0301`, true, `emoji ${SMILE} and 中文 and e\u0301`],
    ['nul\u0000inside', false, `nul${FFFD}inside`],
    ['\u0000', false, FFFD],
    ['high \ud83d alone', false, `high ${FFFD} alone`],
    ['low \ude00 alone', false, `low ${FFFD} alone`],
    ['reversed \ude00\ud83d', false, `reversed ${FFFD}${FFFD}`],
    ['ends high \ud83d', false, `ends high ${FFFD}`],
    ['\ud83d\ud83d\ude00', false, `${FFFD}${SMILE}`],
    ['\u0001\u001f control characters are fine', true, '\u0001\u001f control characters are fine'],
  ];
  it.each(cases)('%j: storable %s, made storable %j', (input, storable, made) => {
    expect(isStorable(input)).toBe(storable);
    expect(toStorable(input)).toBe(made);
    expect(isStorable(toStorable(input))).toBe(true);
  });
});

describe('jsonProblem', () => {
  it('names the first bad value by its path, and a bad key by its object', () => {
    expect(jsonProblem({ a: [1, 'ok', { b: `x${SMILE}` }] })).toBeNull();
    expect(jsonProblem({ a: [1, 'ok', { b: 'x\u0000' }] })).toEqual({ type: 'text', path: ['a', 2, 'b'] });
    expect(jsonProblem({ a: { 'k\ud800': 1 } })).toEqual({ type: 'key', path: ['a'] });
    expect(jsonProblem('\udc00')).toEqual({ type: 'text', path: [] });
  });

  it('refuses nesting past the limit, quickly and without overflowing the stack', () => {
    let deep: unknown = 'bottom';
    for (let i = 0; i < MAX_JSON_DEPTH; i++) deep = [deep];
    expect(jsonProblem(deep)).toBeNull();
    expect(jsonProblem([deep])).toEqual({ type: 'depth', path: [] });
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    expect(jsonProblem(deep)).toEqual({ type: 'depth', path: [] });
  });
});

describe('the zod helpers', () => {
  it('storableString reports bad text first, before length and blank checks', () => {
    const schema = storableString().trim().min(1).max(3);
    const issues = schema.safeParse(' \u0000 too long').error!.issues;
    expect(issues[0]).toMatchObject({ code: 'custom', params: { code: 'invalid_text' } });
    expect(schema.parse(` ${SMILE} `)).toBe(SMILE);
  });

  it('storableJson reports the path inside free-form JSON', () => {
    const schema = z.object({ choice: storableJson(z.unknown()) });
    expect(schema.safeParse({ choice: { type: 'function', name: 'f\ud800' } }).error!.issues[0]).toMatchObject({
      path: ['choice', 'name'],
      params: { code: 'invalid_text', key: false },
    });
    expect(schema.safeParse({ choice: { type: SMILE } }).success).toBe(true);
  });
});

describe('StorableText', () => {
  const run = (deltas: string[]) => {
    const t = new StorableText();
    const out = deltas.map((d) => t.push(d));
    return { out, end: t.flush() };
  };

  it('keeps a surrogate pair split across two deltas whole', () => {
    expect(run(['a\ud83d', '\ude00b'])).toEqual({ out: ['a', `${SMILE}b`], end: '' });
    expect(run(['\ud83d', '\ude00'])).toEqual({ out: ['', SMILE], end: '' });
  });

  it('replaces a held high surrogate whose partner never comes', () => {
    expect(run(['a\ud83d', 'b'])).toEqual({ out: ['a', `${FFFD}b`], end: '' });
    expect(run(['a\ud83d'])).toEqual({ out: ['a'], end: FFFD });
    expect(run(['\ud83d', '\ud83d', '\ude00'])).toEqual({ out: ['', FFFD, SMILE], end: '' });
  });

  it('replaces NUL and lone low surrogates at once', () => {
    expect(run(['x\u0000y', '\ude00z', `${SMILE}`])).toEqual({ out: [`x${FFFD}y`, `${FFFD}z`, SMILE], end: '' });
  });
});

describe('the adapters make upstream text storable', () => {
  let openai: FakeUpstream;
  let anthropic: FakeUpstream;
  const providers: Provider[] = [];

  beforeAll(async () => {
    openai = await startFakeUpstream();
    anthropic = await startFakeAnthropic();
  });
  afterAll(async () => {
    await Promise.all(providers.map((p) => p.close()));
    await openai.close();
    await anthropic.close();
  });

  const provider = (type: 'openai-compatible' | 'anthropic', url: string) => {
    const p = (type === 'anthropic' ? createAnthropicProvider : createOpenAICompatibleProvider)({
      ...providerSchema.parse({ id: type, type, base_url: url }),
      apiKey: undefined,
    });
    providers.push(p);
    return p;
  };

  async function textOf(p: Provider): Promise<{ deltas: string[]; kinds: string[] }> {
    const events: ProviderEvent[] = [];
    const stream = p.stream({ model: 'm', messages: [{ role: 'user', content: 'hi' }], maxOutputTokens: 10, signal: AbortSignal.timeout(10_000) });
    for await (const e of stream) events.push(e);
    return { deltas: events.flatMap((e) => (e.type === 'text' ? [e.text] : [])), kinds: events.map((e) => e.type) };
  }

  for (const type of ['openai-compatible', 'anthropic'] as const) {
    const fake = () => (type === 'anthropic' ? anthropic : openai);

    it(`${type}: NUL and lone surrogates become U+FFFD, split pairs stay whole, nothing is held past the end`, async () => {
      // JSON.stringify escapes lone surrogates, so each chunk reaches the adapter as a JSON `\udXXX` escape.
      fake().queue.push({ chunks: ['a\u0000b', 'c\ud83d', '\ude00d', '\ude00', 'e\ud83d'] });
      const { deltas, kinds } = await textOf(provider(type, fake().url));
      expect(deltas.join('')).toBe(`a${FFFD}bc${SMILE}d${FFFD}e${FFFD}`);
      expect(deltas.every(isStorable)).toBe(true);
      // The held-back character is text before the finish, not after it.
      expect(kinds.lastIndexOf('text')).toBeLessThan(kinds.indexOf('finish'));
    });
  }
});
