/**
 * Background jobs that live in a table: a job is claimed with a lease
 * (`locked_until`, taken with FOR UPDATE SKIP LOCKED), so every instance can
 * work the same queue and a job whose instance died is taken again once its
 * lease runs out. This class runs the claimed jobs of one instance: at most
 * `concurrency` at once, a sweep every `pollMs`, and a close that waits for
 * the jobs in flight. Subclasses say how to claim a job and what to do with
 * it (files/jobs.ts: text extraction; projects/indexer.ts: indexing).
 */
export abstract class JobPool<Job> {
  /** Aborted on close: long work (an extraction, an embeddings call) stops. */
  protected readonly stop = new AbortController();
  private readonly running = new Set<Promise<void>>();
  private busy = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly concurrency: number,
    private readonly pollMs: number,
    protected readonly onError: (err: unknown, id: string) => void,
  ) {}

  /** Looks for work now and then; a sweep may also be started at any time. */
  abstract sweep(): Promise<void>;
  /** Claims one job (the one `hint` names, or the next due), or undefined when there is none. */
  protected abstract claim(hint: string | undefined): Promise<Job | undefined>;
  protected abstract process(job: Job): Promise<void>;
  /** The id a job's errors are reported with. */
  protected abstract idOf(job: Job): string;

  start(): void {
    this.timer = setInterval(() => void this.sweep(), this.pollMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.stop.abort();
    await Promise.allSettled([...this.running]);
  }

  /**
   * Claims one job when this instance has room and starts it; answers the
   * running job (wrapped, since awaiting a promise of a promise would wait for
   * the job), or undefined when there was no room or no job.
   */
  protected async take(hint?: string): Promise<{ job: Promise<void> } | undefined> {
    if (this.busy >= this.concurrency || this.stop.signal.aborted) return undefined;
    // Counted before the claim's await, so that concurrent calls cannot overshoot the concurrency.
    this.busy++;
    const claimed = await this.claim(hint).catch((err: unknown) => {
      this.onError(err, hint ?? '');
      return undefined;
    });
    if (claimed === undefined) {
      this.busy--;
      return undefined;
    }
    const job: Promise<void> = this.process(claimed)
      .catch((err: unknown) => this.onError(err, this.idOf(claimed)))
      .finally(() => {
        this.busy--;
        this.running.delete(job);
      });
    this.running.add(job);
    return { job };
  }
}
