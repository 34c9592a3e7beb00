import { sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/client.ts';
import { JobPool } from '../db/job-pool.ts';
import { chunkText, type Chunk, type ChunkOptions } from './chunk.ts';
import { EmbeddingsError, type Embedder } from './embeddings.ts';
import { detectLanguage, textSearchConfigs } from './language.ts';

/**
 * Indexing of project files as a job in `file_indexes`, which any instance
 * can take, as text extraction does in `files`: a claim sets a lease
 * (`locked_until`) and counts an attempt in one statement with `for update
 * skip locked`, so two instances never index the same file at once, and a
 * lease left by a process that died expires and is claimed again. A file is
 * claimed once its text is extracted. Its chunks are replaced in one
 * transaction, so retrieval sees the old chunks or the new ones, never a mix.
 *
 * Embeddings are optional: when the model fails, the file is still indexed
 * for full-text search (`embedding_model` null, `details` says why) and its
 * vectors are tried again later by the same sweep.
 */

export const MAX_ATTEMPTS = 3;
/** Tries at filling the vectors of a file indexed without them, `embedRetryMs` apart. */
export const MAX_EMBED_ATTEMPTS = 10;
/** Chunks per insert statement. */
const INSERT_BATCH = 500;

export interface IndexerOptions {
  chunking: ChunkOptions;
  embedder?: Embedder | undefined;
  pollMs: number;
  /** How long a claim is held before another instance may take the file. */
  leaseMs?: number;
  embedRetryMs: number;
  /** Files indexed at once on this instance. */
  concurrency?: number;
  onError?: (err: unknown, fileId: string) => void;
}

interface Claimed {
  file_id: string;
  attempts: number;
  status: 'pending' | 'indexed';
}

/** A vector as PostgreSQL's array literal, for a `real[]` column. */
export const arrayLiteral = (v: number[]) => `{${v.join(',')}}`;

export class ProjectIndexer extends JobPool<Claimed> {
  private readonly leaseMs: number;

  constructor(
    private readonly db: Db,
    private readonly opts: IndexerOptions,
  ) {
    super(opts.concurrency ?? 1, opts.pollMs, (err, id) => opts.onError?.(err, id));
    this.leaseMs = opts.leaseMs ?? 10 * 60_000;
  }

  /** A file was just added to a project: indexes it now rather than at the next sweep (in the background). */
  kick(): void {
    void this.sweep();
  }

  /** Gives up on files whose attempts are used up, then takes files while there is room; resolves when those are done. */
  async sweep(): Promise<void> {
    try {
      await this.db.execute(sql`
        update file_indexes set status = 'error', locked_until = null,
          details = coalesce(details, 'indexing failed ' || attempts || ' times')
        where status = 'pending' and attempts >= ${MAX_ATTEMPTS} and (locked_until is null or locked_until < now())`);
      // Each claim counts an attempt or ends a backfill's turn, so the loop ends when nothing is claimable.
      for (;;) {
        const jobs: Promise<void>[] = [];
        for (let taken = await this.take(); taken !== undefined; taken = await this.take()) jobs.push(taken.job);
        if (jobs.length === 0) break;
        await Promise.allSettled(jobs);
      }
    } catch (err) {
      this.onError(err, '');
    }
  }

  protected idOf(job: Claimed): string {
    return job.file_id;
  }

  /** The oldest file waiting (its text extracted or failed), or, with an embeddings model, a file indexed without vectors whose retry is due. */
  protected async claim(): Promise<Claimed | undefined> {
    const lease = `${this.leaseMs} milliseconds`;
    const free = sql`(fi.locked_until is null or fi.locked_until < now())`;
    const backfill =
      this.opts.embedder === undefined
        ? sql`false`
        : sql`(fi.status = 'indexed' and fi.embedding_model is null and fi.chunks > 0 and fi.attempts < ${MAX_EMBED_ATTEMPTS})`;
    const result = await this.db.execute(sql`
      update file_indexes set attempts = attempts + 1, locked_until = now() + ${lease}::interval
      where file_id = (
        select fi.file_id from file_indexes fi join files f on f.id = fi.file_id
        where ${free} and f.status <> 'uploaded'
          and ((fi.status = 'pending' and fi.attempts < ${MAX_ATTEMPTS}) or ${backfill})
        order by fi.status desc, fi.created_at limit 1
        for update of fi skip locked)
      returning file_id, attempts, status`);
    return rowsOf<Claimed>(result)[0];
  }

  protected async process(job: Claimed): Promise<void> {
    try {
      if (job.status === 'indexed') return await this.backfill(job);
      await this.index(job);
    } catch (err) {
      this.onError(err, job.file_id);
      // The lease is given back so that the next sweep tries again (or gives up after the last attempt).
      await this.db.execute(sql`update file_indexes set locked_until = null where file_id = ${job.file_id} and status = ${job.status}`).catch(() => undefined);
    }
  }

  private async index(job: Claimed): Promise<void> {
    const [file] = rowsOf<{ status: string; text: string | null; status_details: string | null }>(
      await this.db.execute(sql`select status, text, status_details from files where id = ${job.file_id}`),
    );
    if (file === undefined) return; // deleted meanwhile: its index row went with it
    if (file.status === 'error' || file.text === null) {
      await this.db.execute(sql`
        update file_indexes set status = 'error', locked_until = null, chunks = 0,
          details = ${`the file's text could not be extracted: ${file.status_details ?? 'no text'}`}
        where file_id = ${job.file_id} and status = 'pending'`);
      return;
    }
    const language = detectLanguage(file.text, await textSearchConfigs(this.db));
    const chunks = chunkText(file.text, this.opts.chunking);
    let vectors: number[][] | null = null;
    let details: string | null = null;
    if (this.opts.embedder !== undefined && chunks.length > 0) {
      try {
        vectors = await this.opts.embedder.embed(chunks.map(embeddable), this.stop.signal);
      } catch (err) {
        if (!(err instanceof EmbeddingsError)) throw err;
        details = `indexed for full-text search only: ${err.message}; the vectors will be tried again`;
      }
    }
    await this.db.transaction(async (tx) => {
      const [row] = rowsOf<{ status: string }>(await tx.execute(sql`select status from file_indexes where file_id = ${job.file_id} for update`));
      if (row?.status !== 'pending') return;
      await tx.execute(sql`delete from file_chunks where file_id = ${job.file_id}`);
      for (let i = 0; i < chunks.length; i += INSERT_BATCH) await insertChunks(tx, job.file_id, language, chunks.slice(i, i + INSERT_BATCH), vectors?.slice(i, i + INSERT_BATCH) ?? null);
      const embedded = vectors === null ? null : this.opts.embedder!.model;
      // Without vectors, the retry of the embeddings waits `embedRetryMs`, and counts from one attempt.
      const retryAt = vectors === null && this.opts.embedder !== undefined ? sql`now() + ${`${this.opts.embedRetryMs} milliseconds`}::interval` : sql`null`;
      await tx.execute(sql`
        update file_indexes set status = 'indexed', language = ${language}, chunks = ${chunks.length}, embedding_model = ${embedded},
          details = ${details}, attempts = ${vectors === null && this.opts.embedder !== undefined ? 1 : 0}, locked_until = ${retryAt}, indexed_at = now()
        where file_id = ${job.file_id}`);
    });
  }

  /** Vectors for the chunks of a file indexed without them. */
  private async backfill(job: Claimed): Promise<void> {
    const embedder = this.opts.embedder!;
    const chunks = rowsOf<{ id: number; text: string; heading: string | null }>(
      await this.db.execute(sql`select id, text, heading from file_chunks where file_id = ${job.file_id} order by seq`),
    );
    let vectors: number[][];
    try {
      vectors = await embedder.embed(chunks.map(embeddable), this.stop.signal);
    } catch (err) {
      if (!(err instanceof EmbeddingsError)) throw err;
      const last = job.attempts >= MAX_EMBED_ATTEMPTS;
      const details = `indexed for full-text search only: ${err.message}; ${last ? `gave up on the vectors after ${job.attempts} tries` : 'the vectors will be tried again'}`;
      await this.db.execute(sql`
        update file_indexes set details = ${details}, locked_until = now() + ${`${this.opts.embedRetryMs} milliseconds`}::interval
        where file_id = ${job.file_id}`);
      return;
    }
    await this.db.transaction(async (tx) => {
      const rows = chunks.map((c, i) => ({ id: c.id, embedding: arrayLiteral(vectors[i]!) }));
      for (let i = 0; i < rows.length; i += INSERT_BATCH) {
        await tx.execute(sql`
          update file_chunks c set embedding = r.embedding::real[]
          from jsonb_to_recordset(${JSON.stringify(rows.slice(i, i + INSERT_BATCH))}::jsonb) as r(id bigint, embedding text)
          where c.id = r.id and c.file_id = ${job.file_id}`);
      }
      await tx.execute(sql`
        update file_indexes set embedding_model = ${embedder.model}, details = null, attempts = 0, locked_until = null
        where file_id = ${job.file_id} and status = 'indexed'`);
    });
  }
}

/** What is embedded of a chunk: its heading gives the passage its context. */
const embeddable = (c: { text: string; heading: string | null }) => (c.heading === null ? c.text : `${c.heading}\n\n${c.text}`);

type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

async function insertChunks(tx: Tx, fileId: string, language: string, chunks: Chunk[], vectors: number[][] | null): Promise<void> {
  const rows = chunks.map((c, i) => ({
    seq: c.seq,
    text: c.text,
    heading: c.heading,
    page: c.page,
    tokens: c.tokens,
    embedding: vectors === null ? null : arrayLiteral(vectors[i]!),
  }));
  await tx.execute(sql`
    insert into file_chunks (file_id, seq, text, heading, page, tokens, language, tsv, embedding)
    select ${fileId}, r.seq, r.text, r.heading, r.page, r.tokens, ${language},
      to_tsvector(${language}::regconfig, coalesce(r.heading, '') || ' ' || r.text), r.embedding::real[]
    from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as r(seq int, text text, heading text, page int, tokens int, embedding text)`);
}
