import { describe, expect, it } from 'vitest';
import { Batcher } from '../src/db/batcher.ts';

/** A driver error as pg reports them: a SQLSTATE in `code`. */
const sqlError = (code: string, message: string) => Object.assign(new Error(message), { code });

/** A stand-in for one table: a batch is committed whole or not at all, as a transaction is. */
function table(fail: (jobs: number[]) => Error | undefined) {
  const committed: number[] = [];
  const batches: number[][] = [];
  return {
    committed,
    batches,
    write: async (jobs: number[]) => {
      batches.push([...jobs]);
      await Promise.resolve();
      const err = fail(jobs);
      if (err !== undefined) throw err;
      committed.push(...jobs);
    },
  };
}

describe('group commit', () => {
  it('writes jobs of one tick together, and jobs queued during a write together in the next batch', async () => {
    const t = table(() => undefined);
    const b = new Batcher<number>({ write: t.write, maxBatch: 100, retryJob: () => true });
    const first = Promise.all(Array.from({ length: 20 }, (_, i) => b.add(i)));
    await new Promise((r) => setImmediate(r)); // the first batch is being written
    const second = Promise.all(Array.from({ length: 30 }, (_, i) => b.add(20 + i)));
    await Promise.all([first, second]);
    expect(t.committed.sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(t.batches.map((x) => x.length)).toEqual([20, 30]);
  });

  it('overlaps a second batch only while a backlog of parallelAt jobs waits, never more than its concurrency', async () => {
    // Writes that stay open until released, as transactions of a busy server do.
    const open: (() => void)[] = [];
    const batches: number[][] = [];
    let inFlight = 0;
    let most = 0;
    const write = async (jobs: number[]) => {
      batches.push([...jobs]);
      most = Math.max(most, ++inFlight);
      await new Promise<void>((r) => open.push(r));
      inFlight--;
    };
    const settle = () => new Promise((r) => setImmediate(r));
    const b = new Batcher<number>({ write, maxBatch: 10, retryJob: () => true, concurrency: 2, parallelAt: 5 });
    const all: Promise<void>[] = [b.add(0)];
    await settle(); // batch [0] is being written
    for (let i = 1; i <= 4; i++) all.push(b.add(i));
    await settle();
    expect(batches).toEqual([[0]]); // 4 waiting: below parallelAt, they wait for the first batch
    all.push(b.add(5));
    await settle();
    expect(batches).toEqual([[0], [1, 2, 3, 4, 5]]); // 5 waiting: a second batch overlaps
    for (let i = 6; i < 30; i++) all.push(b.add(i));
    await settle();
    expect(batches).toHaveLength(2); // at its concurrency: the backlog waits
    while (open.length > 0 || b.pending > 0) {
      open.shift()?.();
      await settle();
    }
    await Promise.all(all);
    expect(most).toBe(2);
    expect(batches.flat().sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });

  it("starts an idle queue's batch on the next turn, or with start: 'now' right after the current callback", async () => {
    for (const start of ['turn', 'now'] as const) {
      const t = table(() => undefined);
      const b = new Batcher<number>({ write: t.write, maxBatch: 100, retryJob: () => true, start });
      const done = Promise.all([b.add(1), b.add(2)]);
      await Promise.resolve();
      // Jobs of one callback go together either way; only 'now' has started before the event loop turns.
      expect(t.batches).toEqual(start === 'now' ? [[1, 2]] : []);
      await done;
      expect(t.batches).toEqual([[1, 2]]);
    }
  });

  it('caps a batch at maxBatch', async () => {
    const t = table(() => undefined);
    const b = new Batcher<number>({ write: t.write, maxBatch: 10, retryJob: () => true });
    await Promise.all(Array.from({ length: 31 }, (_, i) => b.add(i)));
    expect(Math.max(...t.batches.map((x) => x.length))).toBe(10);
    expect(t.committed).toHaveLength(31);
  });

  it('splits a batch around the one job the database refuses; the others are written once', async () => {
    const t = table((jobs) => (jobs.includes(13) ? sqlError('22021', 'invalid byte sequence') : undefined));
    const b = new Batcher<number>({ write: t.write, maxBatch: 100, retryJob: () => true });
    const results = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => b.add(i)));
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
    expect((results[13] as PromiseRejectedResult).reason).toMatchObject({ code: '22021' });
    expect(t.committed.sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i).filter((i) => i !== 13));
  });

  it('retries a batch while the database is unreachable, and fails at once the jobs that should not wait', async () => {
    let down = 3;
    const t = table(() => (down-- > 0 ? sqlError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432') : undefined));
    const retries: number[] = [];
    const b = new Batcher<number>({
      write: t.write,
      maxBatch: 100,
      retryJob: (job) => job % 2 === 0,
      backoff: { minMs: 1, maxMs: 4 },
      onRetry: (_err, attempt) => retries.push(attempt),
    });
    const results = await Promise.allSettled([0, 1, 2, 3].map((i) => b.add(i)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected']);
    expect(t.committed.sort()).toEqual([0, 2]);
    expect(retries.length).toBeGreaterThan(0);
  });

  it('says it is failing from a write that found the database unreachable until one commits; a refused record is not failing', async () => {
    let mode: 'down' | 'refuse' | 'up' = 'down';
    const t = table(() => (mode === 'down' ? sqlError('ECONNREFUSED', 'connect ECONNREFUSED') : mode === 'refuse' ? sqlError('22P05', 'bad text') : undefined));
    const b = new Batcher<number>({ write: t.write, maxBatch: 10, retryJob: () => true, backoff: { minMs: 5, maxMs: 5 } });
    expect(b.failing).toBe(false);
    let retried!: () => void;
    const retrying = new Promise<void>((r) => (retried = r));
    const b2 = new Batcher<number>({ write: t.write, maxBatch: 10, retryJob: () => true, backoff: { minMs: 5, maxMs: 5 }, onRetry: () => retried() });
    const waiting = b2.add(1);
    await retrying;
    expect(b2.failing).toBe(true);
    mode = 'up';
    await waiting;
    expect(b2.failing).toBe(false);
    mode = 'refuse';
    await expect(b.add(2)).rejects.toThrow(/bad text/);
    expect(b.failing).toBe(false);
  });

  it('never writes a job twice when an outage strikes after part of a split batch was written', async () => {
    let outage = false;
    const t = table((jobs) => {
      if (jobs.includes(3)) return sqlError('23505', 'duplicate key');
      if (outage && jobs.includes(7)) {
        outage = false;
        return sqlError('57P01', 'terminating connection due to administrator command');
      }
      if (jobs.includes(7) && jobs.length <= 4) outage = true;
      return undefined;
    });
    const b = new Batcher<number>({ write: t.write, maxBatch: 100, retryJob: () => true, backoff: { minMs: 1, maxMs: 2 } });
    await Promise.allSettled(Array.from({ length: 10 }, (_, i) => b.add(i)));
    const counts = new Map<number, number>();
    for (const j of t.committed) counts.set(j, (counts.get(j) ?? 0) + 1);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect([...counts.keys()].sort((x, y) => x - y)).toEqual([0, 1, 2, 4, 5, 6, 7, 8, 9]);
  });

  it('stops waiting out an outage when closed, and refuses new jobs after', async () => {
    const t = table(() => sqlError('ECONNREFUSED', 'connect ECONNREFUSED'));
    const b = new Batcher<number>({ write: t.write, maxBatch: 100, retryJob: () => true, backoff: { minMs: 5, maxMs: 5 } });
    const stuck = b.add(1);
    await b.close(30);
    await expect(stuck).rejects.toThrow(/ECONNREFUSED/);
    await expect(b.add(2)).rejects.toThrow(/closed/);
  });
});
