import { and, eq, sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/client.ts';
import { JobPool } from '../db/job-pool.ts';
import { files } from '../db/schema.ts';
import { readAll, type BlobStores } from './blobs.ts';
import { Unusable } from './extract-errors.ts';
import { DEFAULT_LIMITS, type ExtractLimits } from './extract.ts';
import { runExtraction, type RunResult } from './extract-runner.ts';

/**
 * Text extraction as a job in the `files` table, which any instance can take.
 * Taking one sets `locked_until` (and counts an attempt) in one statement
 * with `for update skip locked`, so two instances never take the same file.
 * An instance that crashes mid-extraction leaves a lock that expires; the
 * timer of every instance then takes such files again. A file that failed
 * `MAX_ATTEMPTS` times for a passing reason (a dead process, the database) is
 * marked `error`; one that cannot be read (no text layer, a zip bomb, too
 * slow) is marked `error` at once.
 */

export const MAX_ATTEMPTS = 3;

export interface FileJobOptions {
  timeoutMs: number;
  memoryMb: number;
  limits?: ExtractLimits;
  /** How often this instance looks for files nobody is working on. */
  pollMs?: number;
  /** Extractions running at once on this instance (each is a process of up to `memoryMb`). */
  concurrency?: number;
  onError?: (err: unknown, fileId: string) => void;
}

interface Claimed {
  id: string;
  storage: 'database' | 's3';
  storage_key: string;
  attempts: number;
}

/** Text columns cannot hold NUL; a document's text has no use for it. */
const storable = (s: string) => s.replaceAll('\u0000', '');

export class FileJobs extends JobPool<Claimed> {
  private readonly limits: ExtractLimits;
  private readonly lockMs: number;

  constructor(
    private readonly db: Db,
    private readonly blobs: BlobStores,
    private readonly opts: FileJobOptions,
  ) {
    super(opts.concurrency ?? 2, opts.pollMs ?? 10_000, (err, id) => opts.onError?.(err, id));
    this.limits = opts.limits ?? DEFAULT_LIMITS;
    // Long enough for the extraction and reading the blob; a live instance finishes (or releases) well before.
    this.lockMs = opts.timeoutMs + 60_000;
  }

  /**
   * A file was just uploaded here: extracts it now rather than at the next
   * sweep. Resolves when it is done or after `waitMs`, whichever is first.
   */
  async kick(id: string, waitMs: number): Promise<void> {
    const taken = await this.take(id);
    if (taken === undefined || waitMs <= 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([taken.job, new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
  }

  /** Marks files that used up their attempts, then takes files waiting for extraction while there is room. */
  async sweep(): Promise<void> {
    try {
      await this.db.execute(sql`
        update files set status = 'error', locked_until = null,
          status_details = coalesce(status_details, 'text extraction failed ' || attempts || ' times')
        where status = 'uploaded' and attempts >= ${MAX_ATTEMPTS} and (locked_until is null or locked_until < now())`);
      while ((await this.take()) !== undefined);
    } catch (err) {
      this.onError(err, '');
    }
  }

  protected idOf(job: Claimed): string {
    return job.id;
  }

  /** The given file, or the oldest waiting. */
  protected async claim(id: string | undefined): Promise<Claimed | undefined> {
    const which = id === undefined ? sql`` : sql`and id = ${id}`;
    const result = await this.db.execute(sql`
      update files set attempts = attempts + 1, locked_until = now() + ${`${this.lockMs} milliseconds`}::interval
      where id = (
        select id from files
        where status = 'uploaded' and attempts < ${MAX_ATTEMPTS} and (locked_until is null or locked_until < now()) ${which}
        order by created_at limit 1
        for update skip locked)
      returning id, storage, storage_key, attempts`);
    return rowsOf<Claimed>(result)[0];
  }

  protected async process(job: Claimed): Promise<void> {
    let result: RunResult;
    try {
      const bytes = await readAll(this.blobs.of(job.storage).get(job.storage_key));
      result = await runExtraction(bytes, { timeoutMs: this.opts.timeoutMs, memoryMb: this.opts.memoryMb, limits: this.limits, signal: this.stop.signal });
    } catch (err) {
      if (err instanceof Unusable) return this.settle(job.id, { status: 'error', statusDetails: err.message });
      this.onError(err, job.id);
      if (this.stop.signal.aborted) return this.release(job.id, undefined);
      // Left `uploaded` with its lock expired: the next sweep (here or elsewhere) tries again, or gives up after the last attempt.
      return this.release(job.id, job.attempts >= MAX_ATTEMPTS ? `text extraction failed ${job.attempts} times; the last time: ${(err as Error).message}` : undefined);
    }
    await this.settle(job.id, { status: 'processed', text: storable(result.text), pages: result.pages, mimeType: result.mime, statusDetails: null });
  }

  private async settle(id: string, values: Partial<typeof files.$inferInsert>): Promise<void> {
    await this.db
      .update(files)
      .set({ ...values, lockedUntil: null, processedAt: new Date() })
      .where(and(eq(files.id, id), eq(files.status, 'uploaded')))
      .catch((err: unknown) => this.onError(err, id));
  }

  private async release(id: string, finalError: string | undefined): Promise<void> {
    if (finalError !== undefined) return this.settle(id, { status: 'error', statusDetails: finalError });
    await this.db
      .update(files)
      .set({ lockedUntil: null })
      .where(and(eq(files.id, id), eq(files.status, 'uploaded')))
      .catch((err: unknown) => this.onError(err, id));
  }
}
