import { describe, expect, it } from 'vitest';
import { generateKey, hashKey, visiblePrefix } from '../src/auth/keys.ts';

describe('API key format', () => {
  it('is eugpt_ followed by 43 base62 characters', () => {
    for (let i = 0; i < 200; i++) expect(generateKey()).toMatch(/^eugpt_[0-9A-Za-z]{43}$/);
  });

  it('does not repeat and uses the whole alphabet', () => {
    const keys = Array.from({ length: 2000 }, generateKey);
    expect(new Set(keys).size).toBe(keys.length);
    const seen = new Set(keys.join('').slice(0, 80_000).replaceAll('eugpt_', ''));
    expect(seen.size).toBe(62);
  });

  it('is stored as its SHA-256 and shown by a short prefix', () => {
    const key = generateKey();
    expect(hashKey(key)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashKey(key)).toBe(hashKey(key));
    expect(hashKey(key)).not.toBe(hashKey(generateKey()));
    expect(visiblePrefix(key)).toBe(key.slice(0, 12));
  });
});
