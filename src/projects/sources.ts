import type { FileTexts } from '../files/prompt.ts';
import { fileCitationsOf } from '../responses/citations.ts';
import type { FileCitation } from '../responses/object.ts';
import type { RetrievedChunk } from './retrieve.ts';

/**
 * The passages of a project's documents one response was given, numbered
 * once for the whole response (the prompt's passages first, then what the
 * file_search tool found; a passage found twice keeps its number). The answer
 * cites a passage by its number in brackets (`[2]`) or by quoting it word for
 * word; both become `file_citation` annotations.
 */

/** A passage as the response lists it in `sources`. */
export interface SourceView {
  type: 'file_passage';
  /** The number the model was shown, `[n]`. */
  index: number;
  file_id: string;
  filename: string;
  page: number | null;
  heading: string | null;
}

/** Passages listed at most per response. */
const MAX_SOURCES = 200;

const attr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

export class ProjectSources {
  private readonly byChunk = new Map<number, number>();
  private readonly passages: (RetrievedChunk & { index: number })[] = [];

  /** Numbers the chunks (new ones get the next numbers) and answers them with their numbers. */
  add(chunks: RetrievedChunk[]): (RetrievedChunk & { index: number })[] {
    const out: (RetrievedChunk & { index: number })[] = [];
    for (const c of chunks) {
      let index = this.byChunk.get(c.id);
      if (index === undefined) {
        if (this.passages.length >= MAX_SOURCES) continue;
        index = this.passages.length + 1;
        this.byChunk.set(c.id, index);
        this.passages.push({ ...c, index });
      }
      out.push({ ...c, index });
    }
    return out;
  }

  get size(): number {
    return this.passages.length;
  }

  list(): SourceView[] {
    return this.passages.map((p) => ({ type: 'file_passage', index: p.index, file_id: p.fileId, filename: p.filename, page: p.page, heading: p.heading }));
  }

  /** The passages' text by file, for citations by quote. */
  texts(): FileTexts {
    const out: FileTexts = new Map();
    for (const p of this.passages) {
      const had = out.get(p.fileId);
      out.set(p.fileId, { filename: p.filename, text: had === undefined ? p.text : `${had.text}\n\n${p.text}` });
    }
    return out;
  }

  /**
   * The annotations of an answer: each `[n]` (or `[n, m]`) naming a passage
   * it was given, at the end of the marker, and each sentence quoted from a
   * passage. Bounded like the other citations.
   */
  citations(text: string): FileCitation[] {
    if (this.passages.length === 0) return [];
    const marks: { at: number; p: RetrievedChunk }[] = [];
    for (const m of text.matchAll(/\[(\d{1,3}(?:\s*,\s*\d{1,3}){0,9})\]/g)) {
      if (marks.length >= 64) break;
      const end = m.index + m[0].length;
      for (const n of m[1]!.split(',')) {
        const p = this.passages[Number(n.trim()) - 1];
        if (p !== undefined) marks.push({ at: end, p });
      }
    }
    const byMarker: FileCitation[] = marks.map(({ at, p }) => ({ type: 'file_citation', file_id: p.fileId, filename: p.filename, index: codePoints(text, at) }));
    const quoted = fileCitationsOf(text, this.texts());
    return [...byMarker, ...quoted].sort((a, b) => a.index - b.index);
  }
}

function codePoints(text: string, end: number): number {
  return [...text.slice(0, end)].length;
}

/** How passages stand in a prompt: numbered, each with its file and page, so the answer can cite them. */
export function renderPassages(passages: (RetrievedChunk & { index: number })[]): string {
  return passages
    .map((p) => `<passage index="${p.index}" file="${attr(p.filename)}"${p.page === null ? '' : ` page="${p.page}"`}${p.heading === null ? '' : ` section="${attr(p.heading)}"`}>\n${p.text}\n</passage>`)
    .join('\n');
}

/** The system message that brings a project's passages into a prompt. */
export function passagesMessage(passages: (RetrievedChunk & { index: number })[], withSearch: boolean): string {
  return [
    "Passages from the project's documents that may help with the request. Base your answer on them when they are relevant,",
    'and cite each passage you use by its number in brackets, e.g. [1] or [2, 3]. Do not cite passages you did not use.',
    withSearch ? 'If they are not enough, search the documents again with the file_search tool.' : '',
    passages.length === 0 ? 'No passage matched the request.' : renderPassages(passages),
  ]
    .filter((l) => l !== '')
    .join('\n');
}
