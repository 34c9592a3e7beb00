import { and, eq, inArray, sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/client.ts';
import { Batcher } from '../db/batcher.ts';
import { isDatabaseUnavailable } from '../db/errors.ts';
import { conversationItems, conversations, reservations, responses } from '../db/schema.ts';
import { applyDeltas, lockUsage, writeUsage, type UsageDelta } from '../limits/ledger.ts';
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
import type { ResponseObject } from './object.ts';

/**
 * Every write of a response's life goes through one group-commit queue
 * (db/batcher.ts), in three kinds of job:
 *
 * - admit: before any model is called, the token reservation (when the
 *   caller has limits) and the response's row, `in_progress`, with what is
 *   needed to finish it if this process dies (recovery.ts). A request whose
 *   record cannot be written never reaches a model.
 * - finish: the final row, the conversation items, the usage (and the
 *   reservation given back), once the response ended.
 * - release: no model was reached: the row goes and the reservation is given back.
 *
 * One batch is one transaction; rows are locked in one order (reservations,
 * responses, usage rows sorted, conversations sorted), so concurrent batches
 * on several instances cannot deadlock. A finish only counts usage if it is
 * the one that ended the row (a row recovered by another instance meanwhile
 * is left as recovered), so no usage is ever counted twice.
 */

export interface StoredItem {
  role: string;
  content: unknown;
  tokens: number;
}

/** What a response in progress keeps in its row for recovery. */
export interface PendingState {
  input: StoredItem[];
  promptTokens: number;
  reservationId: string | null;
  windows: { day: { start: string }; month: { start: string } };
}

interface Owner {
  userId: string;
  organizationId: string;
  keyId: string;
}

export interface StartRecord extends Owner {
  responseId: string;
  instanceId: string;
  projectId: string | null;
  conversation: { id: string; isNew: boolean; title: string | null; instructions: string | null; instructionTokens: number };
  model: string;
  createdAt: number;
  body: ResponseObject;
  pending: PendingState;
}

export interface FinishRecord extends Owner {
  responseId: string;
  conversationId: string;
  projectId: string | null;
  model: string;
  status: 'completed' | 'failed' | 'incomplete';
  usage: { inputTokens: number; outputTokens: number; cachedTokens: number; reasoningTokens: number; totalTokens: number };
  createdAt: number;
  completedAt: number | null;
  firstTokenMs: number | null;
  durationMs: number;
  body: ResponseObject;
  items: StoredItem[];
  reservationId: string | null;
  windows: { day: { start: string }; month: { start: string } };
}

export interface ReleaseRecord {
  responseId: string;
  conversationId: string;
  newConversation: boolean;
  reservationId: string | null;
}

type Job =
  | { kind: 'admit'; ask: AdmissionAsk | null; start: StartRecord; result?: AdmissionResult }
  | { kind: 'finish'; record: FinishRecord; counted?: boolean }
  | { kind: 'release'; record: ReleaseRecord };

/** Rows per multi-row statement: well below PostgreSQL's 65,535 parameters with the widest row. */
const CHUNK = 500;

const chunks = <T>(all: T[], size = CHUNK): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < all.length; i += size) out.push(all.slice(i, i + size));
  return out;
};

function responseRow(r: FinishRecord | StartRecord, end: FinishRecord | null) {
  const start = end === null ? (r as StartRecord) : null;
  return {
    id: r.responseId,
    userId: r.userId,
    organizationId: r.organizationId,
    conversationId: end?.conversationId ?? start!.conversation.id,
    projectId: r.projectId,
    apiKeyId: r.keyId,
    model: r.model,
    status: end?.status ?? ('in_progress' as const),
    inputTokens: end?.usage.inputTokens ?? 0,
    outputTokens: end?.usage.outputTokens ?? 0,
    cachedTokens: end?.usage.cachedTokens ?? 0,
    reasoningTokens: end?.usage.reasoningTokens ?? 0,
    totalTokens: end?.usage.totalTokens ?? 0,
    createdAt: new Date(r.createdAt),
    completedAt: end === null || end.completedAt === null ? null : new Date(end.completedAt),
    firstTokenMs: end?.firstTokenMs ?? null,
    durationMs: end?.durationMs ?? null,
    body: r.body,
    error: r.body.error,
    instanceId: start?.instanceId ?? null,
    pending: start?.pending ?? null,
  };
}

const excluded = (column: string) => sql.raw(`excluded.${column}`);

/** Ends rows still in progress; returns the ids this batch ended (the others were recovered elsewhere). */
async function endResponses(tx: Db, finishes: FinishRecord[]): Promise<Set<string>> {
  const ended = new Set<string>();
  for (const part of chunks(finishes, 200)) {
    const rows = await tx
      .insert(responses)
      .values(part.map((f) => responseRow(f, f)))
      .onConflictDoUpdate({
        target: responses.id,
        set: {
          model: excluded('model'),
          status: excluded('status'),
          inputTokens: excluded('input_tokens'),
          outputTokens: excluded('output_tokens'),
          cachedTokens: excluded('cached_tokens'),
          reasoningTokens: excluded('reasoning_tokens'),
          totalTokens: excluded('total_tokens'),
          completedAt: excluded('completed_at'),
          firstTokenMs: excluded('first_token_ms'),
          durationMs: excluded('duration_ms'),
          body: excluded('body'),
          error: excluded('error'),
          instanceId: sql`null`,
          pending: sql`null`,
        },
        setWhere: sql`${responses.status} = 'in_progress'`,
      })
      .returning({ id: responses.id });
    for (const r of rows) ended.add(r.id);
  }
  return ended;
}

/** Appends items to conversations, each after the conversation's last position, under the conversation's row lock. */
export async function appendItems(tx: Db, batches: { conversationId: string; responseId: string; items: StoredItem[] }[]): Promise<void> {
  const withItems = batches.filter((b) => b.items.length > 0);
  if (withItems.length === 0) return;
  const ids = [...new Set(withItems.map((b) => b.conversationId))].sort();
  // The row locks order concurrent writers of one conversation, so positions never collide.
  await tx.execute(sql`select id from conversations where id in (${sql.join(
    ids.map((id) => sql`${id}::uuid`),
    sql`, `,
  )}) order by id for no key update`);
  const last = rowsOf<{ conversation_id: string; max: number | string | null }>(
    await tx.execute(sql`
      select conversation_id, max(position) as max from conversation_items
      where conversation_id in (${sql.join(
        ids.map((id) => sql`${id}::uuid`),
        sql`, `,
      )})
      group by conversation_id`),
  );
  const next = new Map(ids.map((id) => [id, 0]));
  for (const r of last) if (r.max !== null) next.set(r.conversation_id, Number(r.max) + 1);
  const rows = withItems.flatMap((b) =>
    b.items.map((it) => {
      const position = next.get(b.conversationId)!;
      next.set(b.conversationId, position + 1);
      return { conversationId: b.conversationId, position, role: it.role, content: it.content, tokens: it.tokens, responseId: b.responseId };
    }),
  );
  for (const part of chunks(rows)) await tx.insert(conversationItems).values(part);
  await tx.update(conversations).set({ updatedAt: new Date() }).where(inArray(conversations.id, ids));
}

async function writeBatch(tx: Db, jobs: Job[]): Promise<void> {
  const admits = jobs.filter((j): j is Extract<Job, { kind: 'admit' }> => j.kind === 'admit');
  const finishes = jobs.filter((j): j is Extract<Job, { kind: 'finish' }> => j.kind === 'finish');
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
  const limitedKeys = admits.flatMap((a) => (a.ask === null ? [] : heldRows(a.ask.limited)));
  const rows = await lockUsage(tx, [...deltas, ...limitedKeys]);
  const changed = applyDeltas(rows, deltas);
  for (const a of admits) {
    a.result = a.ask === null ? { admitted: true, reservation: unlimited(a.start) } : decideAdmission(rows, a.ask, changed);
  }
  await writeUsage(
    tx,
    [...changed].map((k) => rows.get(k)!),
  );

  const admitted = admits.filter((a) => a.result!.admitted);
  const asks = admitted.flatMap((a) => (a.ask === null ? [] : [a.ask]));
  if (asks.length > 0) {
    await tx.insert(reservations).values(asks.map((a) => ({ id: a.id, estimate: a.estimate, held: heldRows(a.limited), expiresAt: a.expiresAt })));
  }
  const fresh = admitted.map((a) => a.start).filter((s) => s.conversation.isNew);
  if (fresh.length > 0) {
    await tx
      .insert(conversations)
      .values(fresh.map((s) => ({ id: s.conversation.id, userId: s.userId, organizationId: s.organizationId, hidden: true, title: s.conversation.title })))
      .onConflictDoNothing();
    const system = fresh.filter((s) => s.conversation.instructions !== null && s.conversation.instructions !== '');
    if (system.length > 0) {
      await tx.insert(conversationItems).values(
        system.map((s) => ({
          conversationId: s.conversation.id,
          position: 0,
          role: 'system',
          content: [{ type: 'input_text', text: s.conversation.instructions }],
          tokens: s.conversation.instructionTokens,
        })),
      );
    }
  }
  for (const part of chunks(admitted, 200)) await tx.insert(responses).values(part.map((a) => responseRow(a.start, null)));

  await appendItems(
    tx,
    finishes.filter((f) => f.counted).map((f) => ({ conversationId: f.record.conversationId, responseId: f.record.responseId, items: f.record.items })),
  );

  if (releases.length > 0) {
    await tx.delete(responses).where(and(inArray(responses.id, releases.map((r) => r.responseId)), eq(responses.status, 'in_progress')));
    const dropped = releases.filter((r) => r.newConversation).map((r) => r.conversationId);
    if (dropped.length > 0) await tx.delete(conversations).where(and(inArray(conversations.id, dropped), eq(conversations.hidden, true)));
  }
}

function unlimited(start: StartRecord): Reservation {
  return { id: null, estimate: 0, windows: start.pending.windows as Reservation['windows'], held: [], states: [] };
}

export interface ResponseWriterOptions {
  maxBatch?: number;
  onRetry?(err: unknown, attempt: number, jobs: number): void;
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
  private readonly batcher: Batcher<Job>;
  private readonly onBare: (record: FinishRecord, err: unknown) => void;

  constructor(db: Db, opts: ResponseWriterOptions = {}) {
    this.onBare = (record, err) => opts.onBare?.(record, err);
    this.batcher = new Batcher<Job>({
      write: (jobs) => db.transaction((tx) => writeBatch(tx, jobs)),
      maxBatch: opts.maxBatch ?? 256,
      // A request not yet at a model is answered 503 at once; a finished response waits out an outage.
      retryJob: (job) => job.kind !== 'admit',
      onRetry: (err, attempt, jobs) => opts.onRetry?.(err, attempt, jobs),
    });
  }

  /** Reserves tokens (when `ask` is given) and writes the response's in-progress row, in one commit. */
  async admit(ask: AdmissionAsk | null, start: StartRecord): Promise<AdmissionResult> {
    const job: Job = { kind: 'admit', ask, start };
    await this.batcher.add(job);
    return job.result!;
  }

  /**
   * Stores a finished response. `stored`: as it is; `bare`: its content could
   * not be stored (the database refused it), so only its facts were: status
   * failed, no output, and its usage, which is always counted.
   */
  async finish(record: FinishRecord): Promise<'stored' | 'bare'> {
    try {
      await this.batcher.add({ kind: 'finish', record });
      return 'stored';
    } catch (err) {
      if (isDatabaseUnavailable(err)) throw err;
      this.onBare(record, err);
      await this.batcher.add({ kind: 'finish', record: bare(record) });
      return 'bare';
    }
  }

  async release(record: ReleaseRecord): Promise<void> {
    await this.batcher.add({ kind: 'release', record });
  }

  get pending(): number {
    return this.batcher.pending;
  }

  idle(): Promise<void> {
    return this.batcher.idle();
  }

  close(graceMs: number): Promise<void> {
    return this.batcher.close(graceMs);
  }
}
