import { sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/client.ts';
import type { Embedder } from './embeddings.ts';
import { hasVector } from './vector.ts';

/**
 * Retrieval over a project's corpus: full-text search (each language present
 * in the project's chunks with its own stemming, ranked by cover density)
 * and, when the chunks have embeddings, vector similarity (in the database
 * with pgvector, otherwise in the server over at most `MAX_SCAN` chunks).
 * The two rankings are fused by reciprocal rank fusion, an optional rerank
 * hook reorders the result, and passages are taken in that order while they
 * fit the token budget. Only chunks of files that are indexed and still in
 * the project are ever read.
 */

export interface RetrievedChunk {
  id: number;
  fileId: string;
  filename: string;
  seq: number;
  page: number | null;
  heading: string | null;
  text: string;
  tokens: number;
  /** Its fused score (higher is better). */
  score: number;
}

/**
 * Reorders candidates, e.g. with a cross-encoder model; it may drop some but
 * must not add any. The default keeps the fused order.
 */
export type Reranker = (query: string, chunks: RetrievedChunk[]) => Promise<RetrievedChunk[]>;

export const keepOrder: Reranker = async (_query, chunks) => chunks;

export interface RetrieveOptions {
  projectId: string;
  query: string;
  /** Passages at most. */
  limit: number;
  /** Tokens all passages may take together. */
  budgetTokens: number;
  /** The query's embedding, and the model it came from (only chunks embedded by that model are compared). */
  queryVector?: { vector: number[]; model: string } | null | undefined;
  rerank?: Reranker | undefined;
}

/** The reciprocal rank fusion constant: how much a top rank outweighs the next ones. */
export const RRF_K = 60;
/** Chunks compared in the server at most when the database has no pgvector. */
export const MAX_SCAN = 20_000;
/** Characters of a query used: a long paste is cut, not refused. */
const MAX_QUERY_CHARS = 2000;

const inProject = (projectId: string) => sql`
  from project_files pf
  join file_indexes fi on fi.file_id = pf.file_id and fi.status = 'indexed'
  join file_chunks c on c.file_id = pf.file_id
  where pf.project_id = ${projectId}`;

/**
 * The query as words for websearch_to_tsquery, whose terms are then OR-ed:
 * a question's words rarely all appear in one passage, and ranking sorts out
 * the passages that hold more of them. A leading minus is dropped, since
 * "not this word" OR-ed with the rest would match nearly everything.
 */
const searchText = (query: string) => query.slice(0, MAX_QUERY_CHARS).replace(/(^|\s)-+/g, '$1');

async function fullText(db: Db, projectId: string, query: string, n: number): Promise<number[]> {
  const rows = rowsOf<{ id: string | number }>(
    await db.execute(sql`
      with q as (
        select l.language, replace(websearch_to_tsquery(l.language::regconfig, ${searchText(query)})::text, ' & ', ' | ') as qt
        from (select distinct fi.language from project_files pf join file_indexes fi on fi.file_id = pf.file_id
              where pf.project_id = ${projectId} and fi.status = 'indexed' and fi.language is not null) l
      )
      select c.id
      from q
      join file_chunks c on c.language = q.language
      join file_indexes fi on fi.file_id = c.file_id and fi.status = 'indexed'
      join project_files pf on pf.file_id = c.file_id and pf.project_id = ${projectId}
      where q.qt <> '' and c.tsv @@ q.qt::tsquery
      order by ts_rank_cd(c.tsv, q.qt::tsquery, 1) desc, c.id
      limit ${n}`),
  );
  return rows.map((r) => Number(r.id));
}

async function bySimilarity(db: Db, projectId: string, q: { vector: number[]; model: string }, n: number): Promise<number[]> {
  const sameModel = sql`and fi.embedding_model = ${q.model} and c.embedding is not null and array_length(c.embedding, 1) = ${q.vector.length}`;
  if (await hasVector(db)) {
    const rows = rowsOf<{ id: string | number }>(
      await db.execute(sql`select c.id ${inProject(projectId)} ${sameModel}
        order by c.embedding::vector <=> ${`[${q.vector.join(',')}]`}::vector, c.id limit ${n}`),
    );
    return rows.map((r) => Number(r.id));
  }
  const rows = rowsOf<{ id: string | number; embedding: number[] }>(
    await db.execute(sql`select c.id, c.embedding ${inProject(projectId)} ${sameModel} limit ${MAX_SCAN}`),
  );
  const qn = norm(q.vector);
  return rows
    .map((r) => ({ id: Number(r.id), sim: dot(q.vector, r.embedding) / (qn * norm(r.embedding) || 1) }))
    .sort((a, b) => b.sim - a.sim || a.id - b.id)
    .slice(0, n)
    .map((r) => r.id);
}

const dot = (a: number[], b: number[]) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};
const norm = (a: number[]) => Math.sqrt(dot(a, a));

/** Reciprocal rank fusion of rankings of ids: each contributes 1 / (k + rank). */
export function fuse(rankings: number[][], k = RRF_K): { id: number; score: number }[] {
  const scores = new Map<number, number>();
  for (const ranking of rankings) ranking.forEach((id, i) => scores.set(id, (scores.get(id) ?? 0) + 1 / (k + i + 1)));
  return [...scores].map(([id, score]) => ({ id, score })).sort((a, b) => b.score - a.score || a.id - b.id);
}

export async function retrieve(db: Db, opts: RetrieveOptions): Promise<RetrievedChunk[]> {
  const query = opts.query.trim();
  if (query === '' || opts.limit <= 0 || opts.budgetTokens <= 0) return [];
  const n = Math.max(50, opts.limit * 5);
  const rankings = [await fullText(db, opts.projectId, query, n)];
  if (opts.queryVector !== undefined && opts.queryVector !== null) rankings.push(await bySimilarity(db, opts.projectId, opts.queryVector, n));
  const fused = fuse(rankings).slice(0, n);
  if (fused.length === 0) return [];
  const rows = rowsOf<{ id: string | number; file_id: string; filename: string; seq: number; page: number | null; heading: string | null; text: string; tokens: number }>(
    await db.execute(sql`select c.id, c.file_id, f.filename, c.seq, c.page, c.heading, c.text, c.tokens
      from file_chunks c join files f on f.id = c.file_id
      join project_files pf on pf.file_id = c.file_id and pf.project_id = ${opts.projectId}
      where c.id = any(${`{${fused.map((f) => f.id).join(',')}}`}::bigint[])`),
  );
  const byId = new Map(rows.map((r) => [Number(r.id), r]));
  const candidates: RetrievedChunk[] = [];
  for (const { id, score } of fused) {
    const r = byId.get(id);
    if (r === undefined) continue; // removed from the project meanwhile
    candidates.push({ id, fileId: r.file_id, filename: r.filename, seq: r.seq, page: r.page, heading: r.heading, text: r.text, tokens: r.tokens, score });
  }
  const ordered = await (opts.rerank ?? keepOrder)(query, candidates);
  const out: RetrievedChunk[] = [];
  let used = 0;
  for (const c of ordered) {
    if (out.length >= opts.limit) break;
    if (used + c.tokens > opts.budgetTokens) continue;
    out.push(c);
    used += c.tokens;
  }
  return out;
}

/** Retrieval as the server uses it: the query embedded when an embeddings model is configured (full-text only when it fails). */
export interface Retriever {
  search(projectId: string, query: string, bounds: { limit: number; budgetTokens: number }, signal?: AbortSignal): Promise<RetrievedChunk[]>;
}

export function createRetriever(db: Db, deps: { embedder?: Embedder | undefined; rerank?: Reranker | undefined; onEmbedError?: (err: unknown) => void }): Retriever {
  return {
    async search(projectId, query, bounds, signal) {
      let queryVector: RetrieveOptions['queryVector'] = null;
      if (deps.embedder !== undefined && query.trim() !== '') {
        try {
          const [vector] = await deps.embedder.embed([query.slice(0, MAX_QUERY_CHARS)], signal);
          queryVector = { vector: vector!, model: deps.embedder.model };
        } catch (err) {
          deps.onEmbedError?.(err);
        }
      }
      return retrieve(db, { projectId, query, ...bounds, queryVector, rerank: deps.rerank });
    },
  };
}
