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
