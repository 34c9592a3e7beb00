import { context, trace, type Context } from '@opentelemetry/api';
import { recordBatch } from '../observability/metrics.ts';
import { endWithError, startSpan, tracingOn } from '../observability/tracing.ts';
import { isDatabaseUnavailable } from './errors.ts';

/**
 * Group commit: jobs queued while a batch is being written go together in
 * the next one, so under load one transaction (one commit, one round of row
 * locks) serves many requests, and with no load a job is written at once,
 * with no timer to wait for.
 *
 * A batch that fails because the database is unreachable is retried whole,
 * with backoff, for as long as `retryJob` says a job is worth waiting for;
 * the others are rejected at once (a request that has not reached a model
 * yet is better answered 503 than kept waiting). A batch that fails for any
 * other reason (bad data, a constraint) is split in halves and each half
 * retried, down to the single job that cannot be written, which is rejected
 * alone, so one bad record never sinks the others.
 */

export interface BatcherOptions<J> {
  /** Writes the jobs in one transaction; throws if nothing was written. */
  write(jobs: J[]): Promise<void>;
  maxBatch: number;
  /** Whether a job should wait through a database outage (true) or fail at once (false). */
  retryJob(job: J): boolean;
  /** Backoff between retries of an unreachable database: doubles from `minMs` to `maxMs`. */
  backoff?: { minMs: number; maxMs: number };
  /** A retry after a database outage, for the log. */
  onRetry?(err: unknown, attempt: number, jobs: number): void;
  /** The queue's name in metrics and traces. */
  name?: string;
  /**
   * Batches written at once (default 1). More than one start only while the
   * writer falls behind: when `parallelAt` jobs (default `maxBatch`) wait
   * behind a batch being written. Under normal load one batch at a time
   * keeps batches large; when the event loop is so busy that every round
   * trip of a transaction waits a long turn, overlapping batches keeps the
   * queue from growing without bound. Safe wherever concurrent batches of
   * several instances are (rows locked in one order).
   */
  concurrency?: number;
  parallelAt?: number;
  /**
   * When an idle queue starts its first batch: `turn` (default) on the next
   * turn of the event loop, `now` right after the current callback. See
   * schedule().
   */
  start?: 'turn' | 'now';
}

interface Entry<J> {
  job: J;
  /** Set once resolved or rejected: a retry after a split never writes a job twice. */
  settled: boolean;
  /** Set once committed. */
  written: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
  /** When it was queued (performance.now()), for the queue-wait metric. */
  queuedAt: number;
  /** The trace context of the request that queued it, when tracing is on. */
  trace: Context | undefined;
}

export class Batcher<J> {
  private queue: Entry<J>[] = [];
  /** Batches being written. */
  private inFlight = 0;
  private scheduled = false;
  private idleWaiters: (() => void)[] = [];
  private closed = false;
  /** Set while the last write found the database unreachable; cleared by the next that commits. */
  private unreachable = false;

  constructor(private readonly opts: BatcherOptions<J>) {}

  /** Resolves when the job is committed; rejects with the database's error if it cannot be. */
  add(job: J): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the writer is closed'));
    return new Promise<void>((resolve, reject) => {
      const entry: Entry<J> = {
        job,
        settled: false,
        written: false,
        resolve: () => {
          entry.settled = true;
          entry.written = true;
          resolve();
        },
        reject: (err) => {
          entry.settled = true;
          reject(err instanceof Error ? err : new Error(String(err)));
        },
        queuedAt: performance.now(),
        trace: tracingOn() ? context.active() : undefined,
      };
      this.queue.push(entry);
      this.schedule();
    });
  }

  /**
   * Whether the database is failing the writes (the last attempt found it
   * unreachable and none has committed since), as opposed to the writes
   * merely being slow or queued.
   */
  get failing(): boolean {
    return this.unreachable;
  }

  /** Jobs waiting, and batches being written. */
  get pending(): number {
    return this.queue.length + this.inFlight;
  }

  /** Resolves when every job queued so far has been written or rejected. */
  async idle(): Promise<void> {
    if (this.inFlight === 0 && this.queue.length === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Writes what is queued, then refuses new jobs. Past `graceMs` a database
   * outage is no longer waited out: the jobs still retrying are rejected.
   */
  async close(graceMs: number): Promise<void> {
    const timer = setTimeout(() => {
      this.closed = true;
    }, graceMs);
    try {
      await this.idle();
    } finally {
      clearTimeout(timer);
      this.closed = true;
    }
  }

  /**
   * Starts a batch on the next turn of the event loop, if one may start
   * (else the end of one being written starts the next at once). The turn
   * matters when the queue was idle: an embedded database answers without real I/O, so a batch started at once would be
   * written before any other request's data is even read, and every batch
   * would hold one job; after one turn, the jobs of every request whose data
   * was waiting go together. A database over the network needs no such wait
   * (`start: 'now'`): the jobs that come while the first batch is on the wire
   * make the next one. And it must not wait: under a saturated event loop one
   * turn can take seconds, because the poll phase runs the callbacks of every
   * ready socket (tens of thousands) before the turn ends.
   */
  private schedule(): void {
    if (this.scheduled || !this.mayStart()) return;
    this.scheduled = true;
    const go = () => {
      this.scheduled = false;
      this.startBatch();
    };
    if (this.opts.start === 'now') queueMicrotask(go);
    else setImmediate(go);
  }

  /** Whether a batch may start now: jobs wait, and no batch is being written, or the writer falls behind. */
  private mayStart(): boolean {
    if (this.queue.length === 0) return false;
    if (this.inFlight === 0) return true;
    return this.inFlight < (this.opts.concurrency ?? 1) && this.queue.length >= (this.opts.parallelAt ?? this.opts.maxBatch);
  }

  private startBatch(): void {
    if (!this.mayStart()) return;
    const batch = this.queue.splice(0, this.opts.maxBatch);
    this.inFlight++;
    // A backlog past `parallelAt` may start another on the next turn.
    this.schedule();
    const started = performance.now();
    const span = this.batchSpan(batch);
    void this.writeWithRetry(batch).finally(() => {
      const queue = this.opts.name ?? 'other';
      recordBatch(queue, batch.length, batch.map((e) => (started - e.queuedAt) / 1000), (performance.now() - started) / 1000);
      if (span !== undefined) {
        const failed = batch.filter((e) => !e.written).length;
        span.setAttribute('eugpt.batch.failed', failed);
        if (failed > 0) endWithError(span, 'jobs_failed');
        else span.end();
      }
      this.inFlight--;
      if (this.queue.length === 0) {
        if (this.inFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      } else {
        // The jobs queued while this batch was written go at once, not on a later turn (see schedule()).
        this.startBatch();
      }
    });
  }

  /**
   * One span per batch: a child of the first job's request, linked to the
   * others', since one transaction serves them all.
   */
  private batchSpan(batch: Entry<J>[]) {
    const first = batch[0]?.trace;
    if (first === undefined) return undefined;
    const links = batch.slice(1).flatMap((e) => {
      const ctx = e.trace === undefined ? undefined : trace.getSpanContext(e.trace);
      return ctx === undefined ? [] : [{ context: ctx }];
    });
    return startSpan('db.batch', { 'eugpt.queue': this.opts.name ?? 'other', 'eugpt.batch.size': batch.length }, links, first);
  }

  private async writeWithRetry(batch: Entry<J>[]): Promise<void> {
    const { minMs, maxMs } = this.opts.backoff ?? { minMs: 50, maxMs: 2_000 };
    let live = batch;
    for (let attempt = 1; live.length > 0; attempt++) {
      try {
        await this.writeSplitting(live);
        return;
      } catch (err) {
        // Only an unreachable database gets here (writeSplitting settles every other failure).
        const waiting: Entry<J>[] = [];
        for (const e of live) {
          if (e.settled) continue;
          if (!this.closed && this.opts.retryJob(e.job)) waiting.push(e);
          else e.reject(err);
        }
        live = waiting;
        if (live.length === 0) return;
        this.opts.onRetry?.(err, attempt, live.length);
        await new Promise((r) => setTimeout(r, Math.min(maxMs, minMs * 2 ** (attempt - 1))));
      }
    }
  }

  /** Writes the batch, halving it around jobs that cannot be written; rethrows only an unreachable database. */
  private async writeSplitting(batch: Entry<J>[]): Promise<void> {
    try {
      await this.opts.write(batch.map((e) => e.job));
      this.unreachable = false;
      for (const e of batch) e.resolve();
    } catch (err) {
      if (isDatabaseUnavailable(err)) {
        this.unreachable = true;
        throw err;
      }
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      const half = Math.ceil(batch.length / 2);
      await this.writeSplitting(batch.slice(0, half));
      await this.writeSplitting(batch.slice(half));
    }
  }
}
