import { countTokens } from '../tokens.ts';

/**
 * A document's text in retrieval chunks of a few hundred tokens. Page
 * markers of the extracted text (`[page 3]`, `[slide 2]` lines) give each
 * chunk its page; Markdown headings (`# …` lines) give it the nearest
 * heading above it. A chunk never spans two pages or two sections, so its
 * page and heading are exact; inside a long section consecutive chunks
 * overlap by a paragraph or so, so a passage cut at a boundary is still
 * found whole in one of them.
 */

export interface Chunk {
  seq: number;
  text: string;
  heading: string | null;
  page: number | null;
  tokens: number;
}

export interface ChunkOptions {
  /** A chunk's size at most (a single longer sentence is cut to it). */
  maxTokens: number;
  /** Tokens repeated from the end of a chunk at the start of the next one in the same section. */
  overlapTokens: number;
  /** Chunks made at most; the rest of a huge document is left out. */
  maxChunks: number;
}

export const DEFAULT_CHUNKING: ChunkOptions = { maxTokens: 400, overlapTokens: 60, maxChunks: 20_000 };

const PAGE_MARK = /^\[(?:page|slide) (\d+)\]$/;
const HEADING = /^#{1,6}\s+(.+?)\s*#*$/;

interface Block {
  text: string;
  tokens: number;
  heading: string | null;
  page: number | null;
  /** Starts a section: the chunk before it ends here. */
  isHeading: boolean;
}

/** A paragraph longer than a chunk, in pieces of at most `max` tokens: at sentence ends, else at spaces. */
function split(text: string, max: number): string[] {
  const sentences = text.match(/[^.!?\n]+[.!?]*\s*|\n+/g) ?? [text];
  const out: string[] = [];
  let current = '';
  const push = () => {
    if (current.trim() !== '') out.push(current.trim());
    current = '';
  };
  for (const s of sentences) {
    if (countTokens(current + s) <= max) {
      current += s;
      continue;
    }
    push();
    if (countTokens(s) <= max) {
      current = s;
      continue;
    }
    // One sentence longer than a chunk: cut at spaces (or anywhere, for a run without any).
    let piece = '';
    for (const word of s.split(/(?<=\s)/)) {
      if (piece !== '' && countTokens(piece + word) > max) {
        out.push(piece.trim());
        piece = '';
      }
      piece += word.length > max * 8 ? word.slice(0, max * 4) : word;
    }
    current = piece;
  }
  push();
  return out;
}

function blocksOf(text: string, max: number): Block[] {
  const blocks: Block[] = [];
  let page: number | null = null;
  let heading: string | null = null;
  let para: string[] = [];
  const flush = () => {
    const t = para.join('\n').trim();
    para = [];
    if (t === '') return;
    const tokens = countTokens(t);
    if (tokens <= max) blocks.push({ text: t, tokens, heading, page, isHeading: false });
    else for (const piece of split(t, max)) blocks.push({ text: piece, tokens: countTokens(piece), heading, page, isHeading: false });
  };
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    const mark = PAGE_MARK.exec(line.trim());
    if (mark !== null) {
      flush();
      page = Number(mark[1]);
      blocks.push({ text: '', tokens: 0, heading, page, isHeading: true });
      continue;
    }
    const h = HEADING.exec(line.trim());
    if (h !== null) {
      flush();
      heading = h[1]!.slice(0, 300);
      blocks.push({ text: '', tokens: 0, heading, page, isHeading: true });
      continue;
    }
    if (line.trim() === '') flush();
    else para.push(line);
  }
  flush();
  return blocks;
}

export function chunkText(text: string, opts: ChunkOptions = DEFAULT_CHUNKING): Chunk[] {
  const chunks: Chunk[] = [];
  let parts: Block[] = [];
  let tokens = 0;
  const emit = () => {
    if (parts.length === 0) return;
    const first = parts[0]!;
    const body = parts.map((p) => p.text).join('\n\n');
    chunks.push({ seq: chunks.length, text: body, heading: first.heading, page: first.page, tokens: countTokens(body) });
  };
  for (const block of blocksOf(text, opts.maxTokens)) {
    if (chunks.length >= opts.maxChunks) break;
    if (block.isHeading) {
      emit();
      parts = [];
      tokens = 0;
      continue;
    }
    if (parts.length > 0 && tokens + block.tokens > opts.maxTokens) {
      emit();
      // The next chunk of the same section starts with the last paragraphs of this one, up to the overlap.
      const kept: Block[] = [];
      let keptTokens = 0;
      for (let i = parts.length - 1; i >= 0 && keptTokens + parts[i]!.tokens <= opts.overlapTokens; i--) {
        kept.unshift(parts[i]!);
        keptTokens += parts[i]!.tokens;
      }
      if (keptTokens + block.tokens > opts.maxTokens) {
        kept.length = 0;
        keptTokens = 0;
      }
      parts = kept;
      tokens = keptTokens;
    }
    parts.push(block);
    tokens += block.tokens;
  }
  if (chunks.length < opts.maxChunks) emit();
  return chunks;
}
