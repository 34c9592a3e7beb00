import type { Source } from '../tools/types.ts';
import type { FileTexts } from '../files/prompt.ts';
import type { FileCitation, UrlCitation } from './object.ts';

/** Citations scanned per part at most: an answer that repeats a link a thousand times does not need a thousand annotations. */
const MAX_CITATIONS = 64;

/** Code points before a UTF-16 offset: what Python and most clients index strings by. */
function codePoints(text: string, end: number): number {
  let n = 0;
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xd800 || c > 0xdbff || i + 1 >= end) n++;
  }
  return n;
}

/**
 * The `url_citation` annotations of an answer: every place it names a page a
 * tool returned, either as the bare URL or as a markdown link to it (the
 * whole `[title](url)` is the cited span). The answer cites what it names;
 * nothing is guessed from its wording.
 */
export function citationsOf(text: string, sources: Source[]): UrlCitation[] {
  if (sources.length === 0 || text === '') return [];
  const byUrl = new Map<string, Source>();
  for (const s of sources) if (/^https?:\/\//i.test(s.url) && !byUrl.has(s.url)) byUrl.set(s.url, s);
  const spans: { start: number; end: number; source: Source }[] = [];
  for (const source of byUrl.values()) {
    for (let from = 0; spans.length < MAX_CITATIONS; ) {
      const at = text.indexOf(source.url, from);
      if (at < 0) break;
      let start = at;
      let end = at + source.url.length;
      from = end;
      // A URL that continues past the source's own (a longer path) cites another page.
      if (/[\w/%-]/.test(text[end] ?? '') && !source.url.endsWith('/')) continue;
      const link = /\[[^\]\n]{0,300}\]\($/.exec(text.slice(Math.max(0, at - 305), at));
      if (link !== null && text[end] === ')') {
        start = at - link[0].length;
        end += 1;
      }
      spans.push({ start, end, source });
    }
  }
  spans.sort((a, b) => a.start - b.start || b.end - a.end);
  const out: UrlCitation[] = [];
  let last = -1;
  for (const span of spans) {
    if (span.start < last) continue; // nested in a span already cited
    last = span.end;
    out.push({
      type: 'url_citation',
      url: span.source.url,
      title: span.source.title,
      start_index: codePoints(text, span.start),
      end_index: codePoints(text, span.end),
    });
  }
  return out;
}

/** A quote shorter than this is too likely to match by chance (a common phrase) to count as citing the file. */
const MIN_QUOTE = 40;

/**
 * The `file_citation` annotations of an answer: each sentence of it at least
 * 40 characters long that appears word for word in one of the request's
 * files. Only exact quotes count; a paraphrase is not attributed.
 */
export function fileCitationsOf(text: string, files: FileTexts): FileCitation[] {
  if (files.size === 0 || text.length < MIN_QUOTE) return [];
  const out: FileCitation[] = [];
  // Sentences, and clauses after a colon or semicolon: "The policy says: <quote>." quotes what follows the colon.
  for (const m of text.matchAll(/[^.!?\n:;]+[.!?]?/g)) {
    if (out.length >= MAX_CITATIONS) break;
    const raw = m[0];
    const sentence = raw.trim().replace(/^["'“‘«]+|["'”’»]+$/g, '').trim();
    if (sentence.length < MIN_QUOTE) continue;
    for (const [id, file] of files) {
      if (!file.text.includes(sentence)) continue;
      const end = m.index + raw.trimEnd().length;
      out.push({ type: 'file_citation', file_id: id, filename: file.filename, index: codePoints(text, end) });
      break;
    }
  }
  return out;
}
