import { countTokens } from '../tokens.ts';
import type { FileTexts } from './prompt.ts';

/**
 * When the files of a request do not fit the model's window, the passages
 * most related to the request are kept rather than the beginning of each
 * file: a question about page 80 of a report needs page 80, not pages 1 to
 * 20. Files are split into passages (pages, then paragraphs), each scored
 * with BM25 against the words of the request, and the best ones are taken
 * until the budget is spent. They are put back in document order, with a
 * marker where something was left out, so the text still reads in sequence.
 */

/** Passages are paragraphs joined up to about this many characters (a few hundred tokens). */
const PASSAGE_CHARS = 1500;

interface Passage {
  file: string;
  index: number;
  text: string;
  tokens: number;
  terms: Map<string, number>;
  length: number;
}

const WORD = /[\p{L}\p{N}]{2,}/gu;

export function termsOf(text: string): string[] {
  return (text.toLowerCase().match(WORD) ?? []).filter((w) => w.length < 40);
}

/** A file's text in passages: a page marker starts a new one, paragraphs are grouped, a huge paragraph is cut. */
export function passagesOf(text: string): string[] {
  const out: string[] = [];
  let current = '';
  const push = () => {
    if (current.trim() !== '') out.push(current.trim());
    current = '';
  };
  for (const para of text.split(/\n\s*\n/)) {
    if (/^\[(page|slide) \d+\]/.test(para.trimStart()) || current.length + para.length > PASSAGE_CHARS) push();
    if (para.length > PASSAGE_CHARS) {
      for (let i = 0; i < para.length; i += PASSAGE_CHARS) out.push(para.slice(i, i + PASSAGE_CHARS));
      continue;
    }
    current += (current === '' ? '' : '\n\n') + para;
  }
  push();
  return out;
}

export interface Selection {
  texts: FileTexts;
  /** Passages kept, of how many. */
  kept: number;
  total: number;
}

/** The files' text within `budget` tokens, as the passages most relevant to `query`. */
export function selectExcerpts(files: FileTexts, budget: number, query: string): Selection {
  const passages: Passage[] = [];
  for (const [file, { text }] of files) {
    passagesOf(text).forEach((p, index) => {
      const terms = new Map<string, number>();
      const words = termsOf(p);
      for (const w of words) terms.set(w, (terms.get(w) ?? 0) + 1);
      passages.push({ file, index, text: p, tokens: countTokens(p) + 2, terms, length: words.length });
    });
  }
  const queryTerms = [...new Set(termsOf(query))];
  const n = passages.length;
  const avg = passages.reduce((s, p) => s + p.length, 0) / Math.max(1, n);
  const df = new Map(queryTerms.map((t) => [t, passages.filter((p) => p.terms.has(t)).length]));
  const k1 = 1.2;
  const b = 0.75;
  const score = (p: Passage) =>
    queryTerms.reduce((sum, t) => {
      const tf = p.terms.get(t) ?? 0;
      if (tf === 0) return sum;
      const idf = Math.log(1 + (n - df.get(t)! + 0.5) / (df.get(t)! + 0.5));
      return sum + (idf * tf * (k1 + 1)) / (tf + k1 * (1 - b + (b * p.length) / Math.max(1, avg)));
    }, 0);
  // Ties (no word in common) go to the earlier passage: the start of a document usually says what it is.
  const ranked = passages.map((p, order) => ({ p, order, s: score(p) })).sort((x, y) => y.s - x.s || x.order - y.order);
  const chosen = new Set<Passage>();
  let used = 0;
  for (const { p } of ranked) {
    if (used + p.tokens > budget) continue;
    chosen.add(p);
    used += p.tokens;
  }
  const texts: FileTexts = new Map();
  for (const [file, { filename }] of files) {
    const mine = passages.filter((p) => p.file === file);
    const parts: string[] = [];
    let last = -1;
    for (const p of mine) {
      if (!chosen.has(p)) continue;
      if (p.index !== last + 1) parts.push('[…]');
      parts.push(p.text);
      last = p.index;
    }
    if (last !== mine.length - 1) parts.push('[…]');
    const kept = mine.filter((p) => chosen.has(p)).length;
    const note = `[excerpts selected by relevance to the request: ${kept} of ${mine.length} passages; the whole file does not fit the model's context]`;
    texts.set(file, { filename, text: `${note}\n${parts.join('\n\n')}` });
  }
  return { texts, kept: chosen.size, total: n };
}
