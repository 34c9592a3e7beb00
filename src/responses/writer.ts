import { and, eq, inArray, sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { Batcher } from '../db/batcher.ts';
import { isDatabaseUnavailable } from '../db/errors.ts';
import { conversations, responses } from '../db/schema.ts';
import { addUsage, lockUsage, type UsageDelta } from '../limits/ledger.ts';
import {
  claimReservations,
  decideAdmission,
  heldRows,
  releaseDeltas,
  usageDeltas,
  type AdmissionAsk,
  type AdmissionResult,
  type Reservation,
} from '../limits/quota.ts';
import type { FinishRecord, ReleaseRecord, StartRecord } from './records.ts';
import { appendItems, endResponses, insertStarts, recordset } from './statements.ts';

/**
 * Every write of a response's life goes through two group-commit queues
 * (db/batcher.ts):
 *
 * - admissions: before any model is called, the token reservation (when the
 *   caller has limits) and the response's row, `in_progress`, with what is
 *   needed to finish it if this process dies (recovery.ts). A request whose
 *   record cannot be written never reaches a model. Their own queue, so a
 *   request about to call a model never waits behind finished answers.
 * - endings: a finished response (the final row, the conversation items, the
 *   usage, the reservation given back), or a release (no model was reached:
 *   the row goes and the reservation is given back).
 *
 * One batch is one transaction; rows are locked in one order (reservations,
 * responses, conversations sorted, usage rows sorted), so concurrent batches
 * on several instances cannot deadlock. A finish only counts usage if it is
 * the one that ended the row (a row recovered by another instance meanwhile
 * is left as recovered), so no usage is ever counted twice.
 */

interface AdmitJob {
  ask: AdmissionAsk | null;
  start: StartRecord;
  result?: AdmissionResult;
}

type EndJob = { kind: 'finish'; record: FinishRecord; counted?: boolean } | { kind: 'release'; record: ReleaseRecord };

/** Reservations and in-progress rows of requests about to call a model. */
async function writeAdmissions(tx: Db, admits: AdmitJob[]): Promise<void> {
  const limitedKeys = admits.flatMap((a) => (a.ask === null ? [] : heldRows(a.ask.limited)));
  const rows = await lockUsage(tx, limitedKeys);
  const changed = new Set<string>();
  for (const a of admits) {
    a.result = a.ask === null ? { admitted: true, reservation: unlimited(a.start) } : decideAdmission(rows, a.ask, changed);
  }
  const admitted = admits.filter((a) => a.result!.admitted);
  const asks = admitted.flatMap((a) => (a.ask === null ? [] : [a.ask]));
  // The reserved tokens and the reservations' rows go in the same statement as the in-progress rows.
  const reserved = [...changed].map((k) => rows.get(k)!);
  const before: SQL[] = [];
  if (reserved.length > 0) {
    before.push(sql`reserved as (
      update usage_totals u set reserved_tokens = x.res
      from ${recordset(
        reserved.map((r) => ({ st: r.subjectType, sid: r.subjectId, w: r.window, ws: r.windowStart, res: r.reservedTokens })),
        'st text, sid uuid, w text, ws date, res bigint',
      )}
      where u.subject_type = x.st and u.subject_id = x.sid and u."window" = x.w and u.window_start = x.ws)`);
  }
  if (asks.length > 0) {
    before.push(sql`held as (
      insert into reservations (id, estimate, held, expires_at)
      select id, estimate, held, expires_at
      from ${recordset(
        asks.map((a) => ({ id: a.id, estimate: a.estimate, held: heldRows(a.limited), expires_at: a.expiresAt.toISOString() })),
        'id uuid, estimate bigint, held jsonb, expires_at timestamptz',
      )})`);
  }
  if (admitted.length > 0 || before.length > 0) {
    await insertStarts(
      tx,
      admitted.map((a) => a.start),
      before,
    );
  }
}

/** Admissions of callers without token limits: nothing to decide, only rows to write (one statement holds 200). */
const unlimitedOnly = (jobs: AdmitJob[]) => jobs.length <= 200 && jobs.every((j) => j.ask === null);

/** Finished responses and released admissions. */
async function writeEndings(tx: Db, jobs: EndJob[]): Promise<void> {
  const finishes = jobs.filter((j): j is Extract<EndJob, { kind: 'finish' }> => j.kind === 'finish');
  const releases = jobs.flatMap((j) => (j.kind === 'release' ? [j.record] : []));
  const claimed = await claimReservations(tx, [
    ...finishes.map((f) => f.record.reservationId),
    ...releases.map((r) => r.reservationId),
  ].filter((id): id is string => id !== null));
  const ended = await endResponses(
    tx,
    finishes.map((f) => f.record),
  );
  for (const f of finishes) f.counted = ended.has(f.record.responseId);

  const deltas: UsageDelta[] = [];
  for (const f of finishes) {
    if (!f.counted) continue;
    const r = f.record;
    deltas.push(...usageDeltas(r, r.windows, r.usage, r.reservationId === null ? null : claimed.get(r.reservationId) ?? null));
  }
  for (const r of releases) {
    const c = r.reservationId === null ? undefined : claimed.get(r.reservationId);
    if (c !== undefined) deltas.push(...releaseDeltas(c.held, c.estimate));
  }
  await appendItems(
    tx,
    finishes
      .filter((f) => f.counted)
      .map((f) => ({
        conversationId: f.record.conversationId,
        responseId: f.record.responseId,
        // `store: false`: the conversation gets nothing of the turn (the row's body is dropped in statements.ts).
        items: f.record.store === false ? [] : f.record.items,
        isNew: f.record.newConversation,
      })),
  );

  if (releases.length > 0) {
    await tx.delete(responses).where(and(inArray(responses.id, releases.map((r) => r.responseId)), eq(responses.status, 'in_progress')));
    const dropped = releases.filter((r) => r.newConversation).map((r) => r.conversationId);
    if (dropped.length > 0) await tx.delete(conversations).where(and(inArray(conversations.id, dropped), eq(conversations.hidden, true)));
  }

  // Last, so that a tenant's usage rows, which every batch of that tenant (admissions too) needs, stay locked for the fewest round trips.
  await addUsage(tx, deltas);
}

function unlimited(start: StartRecord): Reservation {
  return { id: null, estimate: 0, windows: start.pending.windows as Reservation['windows'], held: [], states: [] };
}

export interface ResponseWriterOptions {
  maxBatch?: number;
  onRetry?(err: unknown, attempt: number, jobs: number): void;
  /** When an idle queue starts its first batch (db/batcher.ts): `now` for PostgreSQL, `turn` for the embedded database. */
  start?: 'turn' | 'now';
  /** A finished response whose content the database refused; only its facts and usage are stored. */
  onBare?(record: FinishRecord, err: unknown): void;
}

/** A finished response without any text of the client's or the model's: what is stored when the content is refused. */
function bare(record: FinishRecord): FinishRecord {
  const error = { code: 'storage_failed', message: 'the response content could not be stored' };
  return {
    ...record,
    status: 'failed',
    items: [],
    body: { ...record.body, status: 'failed', output: [], output_text: '', metadata: {}, instructions: null, error },
  };
}

export class ResponseWriter {
  private readonly admissions: Batcher<AdmitJob>;
  private readonly endings: Batcher<EndJob>;
  private readonly onBare: (record: FinishRecord, err: unknown) => void;

  constructor(db: Db, opts: ResponseWriterOptions = {}) {
    this.onBare = (record, err) => opts.onBare?.(record, err);
    const onRetry = (err: unknown, attempt: number, jobs: number) => opts.onRetry?.(err, attempt, jobs);
    const maxBatch = opts.maxBatch ?? 256;
    this.admissions = new Batcher<AdmitJob>({
      write: async (jobs) => {
        if (!unlimitedOnly(jobs)) return db.transaction((tx) => writeAdmissions(tx, jobs));
        // Without limits a batch is one statement, which needs no transaction around it.
        await insertStarts(
          db,
          jobs.map((j) => j.start),
        );
        for (const j of jobs) j.result = { admitted: true, reservation: unlimited(j.start) };
      },
      maxBatch,
      // A request not yet at a model is answered 503 at once; a finished response waits out an outage.
      retryJob: () => false,
      onRetry,
      name: 'admissions',
      start: opts.start,
    });
    // Endings take several round trips each: past a quarter batch of backlog a second one overlaps the first.
    this.endings = new Batcher<EndJob>({
      write: (jobs) => db.transaction((tx) => writeEndings(tx, jobs)),
      maxBatch,
      retryJob: () => true,
      onRetry,
      name: 'endings',
      start: opts.start,
      concurrency: 2,
      parallelAt: Math.max(1, Math.floor(maxBatch / 4)),
    });
  }

  /** Reserves tokens (when `ask` is given) and writes the response's in-progress row, in one commit. */
  async admit(ask: AdmissionAsk | null, start: StartRecord): Promise<AdmissionResult> {
    const job: AdmitJob = { ask, start };
    await this.admissions.add(job);
    return job.result!;
  }

  /**
   * Stores a finished response. `stored`: as it is; `bare`: its content could
   * not be stored (the database refused it), so only its facts were: status
   * failed, no output, and its usage, which is always counted.
   */
  async finish(record: FinishRecord): Promise<'stored' | 'bare'> {
    try {
      await this.endings.add({ kind: 'finish', record });
      return 'stored';
    } catch (err) {
      if (isDatabaseUnavailable(err)) throw err;
      this.onBare(record, err);
      await this.endings.add({ kind: 'finish', record: bare(record) });
      return 'bare';
    }
  }

  async release(record: ReleaseRecord): Promise<void> {
    await this.endings.add({ kind: 'release', record });
  }

  /** Whether finished responses wait because the database is failing, not merely because writes queue. */
  get failing(): boolean {
    return this.endings.failing;
  }

  get pending(): number {
    return this.admissions.pending + this.endings.pending;
  }

  async close(graceMs: number): Promise<void> {
    await Promise.all([this.admissions.close(graceMs), this.endings.close(graceMs)]);
  }
}
