import { countTokens as library } from 'gpt-tokenizer/encoding/o200k_base';
import { describe, expect, it } from 'vitest';
import { countTokens } from '../src/tokens.ts';

describe('countTokens', () => {
  it('counts ordinary text exactly as the tokenizer does', () => {
    for (const text of ['Hello, world.', 'Grüß Gott — ça va ? 😀', 'a b c '.repeat(500), 'https://example.eu/a/b?c=d and more']) {
      expect(countTokens(text)).toBe(library(text));
    }
  });

  it('counts long unbroken runs in slices, within a token per slice of the whole', () => {
    for (const text of ['x'.repeat(3000), `start ${'ab1'.repeat(1200)} end`, `${'€'.repeat(2000)}!`]) {
      const exact = library(text);
      expect(Math.abs(countTokens(text) - exact)).toBeLessThanOrEqual(Math.ceil(text.length / 256));
    }
  });

  it('counts a megabyte without spaces (the event loop stays free: quadratic merging is avoided)', () => {
    expect(countTokens('y'.repeat(1_000_000))).toBeGreaterThan(100_000);
  });
});
