import { and, eq, inArray, sql, type SQL } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/client.ts';
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
  /** The conversation was created by this response's admission. */
  newConversation: boolean;
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

/**
 * Rows go to the database as one JSON parameter per statement, unpacked by
 * jsonb_to_recordset: building and sending one parameter costs a fraction of
 * one per value, which matters on the hot path of every request.
 */
const recordset = (rows: object[], columns: string) => sql`jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(${sql.raw(columns)})`;

/** Rows per statement: bounds the size of one parameter. */
const CHUNK = 500;

const chunks = <T>(all: T[], size = CHUNK): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < all.length; i += size) out.push(all.slice(i, i + size));
  return out;
};

const RESPONSE_COLUMNS =
  'id uuid, user_id uuid, organization_id uuid, conversation_id uuid, project_id uuid, api_key_id uuid, model text, status text, ' +
  'input_tokens int, output_tokens int, cached_tokens int, reasoning_tokens int, total_tokens int, created_at timestamptz, ' +
  'completed_at timestamptz, first_token_ms int, duration_ms int, body jsonb, error jsonb, instance_id uuid, pending jsonb';
const RESPONSE_NAMES = RESPONSE_COLUMNS.split(', ')
  .map((c) => c.split(' ')[0])
  .join(', ');

function responseRow(r: FinishRecord | StartRecord, end: FinishRecord | null) {
  const start = end === null ? (r as StartRecord) : null;
  return {
    id: r.responseId,
    user_id: r.userId,
    organization_id: r.organizationId,
    conversation_id: end?.conversationId ?? start!.conversation.id,
    project_id: r.projectId,
    api_key_id: r.keyId,
    model: r.model,
    status: end?.status ?? 'in_progress',
    input_tokens: end?.usage.inputTokens ?? 0,
    output_tokens: end?.usage.outputTokens ?? 0,
    cached_tokens: end?.usage.cachedTokens ?? 0,
    reasoning_tokens: end?.usage.reasoningTokens ?? 0,
    total_tokens: end?.usage.totalTokens ?? 0,
    created_at: new Date(r.createdAt).toISOString(),
    completed_at: end === null || end.completedAt === null ? null : new Date(end.completedAt).toISOString(),
    first_token_ms: end?.firstTokenMs ?? null,
    duration_ms: end?.durationMs ?? null,
    body: r.body,
    error: r.body.error,
    instance_id: start?.instanceId ?? null,
    pending: start?.pending ?? null,
  };
}

/** Ends rows still in progress; returns the ids this batch ended (the others were recovered elsewhere). */
async function endResponses(tx: Db, finishes: FinishRecord[]): Promise<Set<string>> {
  const ended = new Set<string>();
  for (const part of chunks(finishes, 200)) {
    const rows = rowsOf<{ id: string }>(
      await tx.execute(sql`
        insert into responses (${sql.raw(RESPONSE_NAMES)})
        select ${sql.raw(RESPONSE_NAMES)} from ${recordset(
          part.map((f) => responseRow(f, f)),
          RESPONSE_COLUMNS,
        )}
        on conflict (id) do update set
          model = excluded.model, status = excluded.status, input_tokens = excluded.input_tokens,
          output_tokens = excluded.output_tokens, cached_tokens = excluded.cached_tokens,
          reasoning_tokens = excluded.reasoning_tokens, total_tokens = excluded.total_tokens,
          completed_at = excluded.completed_at, first_token_ms = excluded.first_token_ms,
          duration_ms = excluded.duration_ms, body = excluded.body, error = excluded.error,
          instance_id = null, pending = null
        where responses.status = 'in_progress'
        returning id`),
    );
    for (const r of rows) ended.add(r.id);
  }
  return ended;
}

interface ItemBatch {
  conversationId: string;
  responseId: string;
  items: StoredItem[];
  /** The conversation was made for this response: nobody else has written to it, its activity time is its creation. */
  isNew: boolean;
}

/** Appends items to conversations, each after the conversation's last position, under the conversation's row lock. */
export async function appendItems(tx: Db, batches: ItemBatch[]): Promise<void> {
  const withItems = batches.filter((b) => b.items.length > 0);
  if (withItems.length === 0) return;
  const ids = [...new Set(withItems.map((b) => b.conversationId))].sort();
  // The row locks order concurrent writers of one conversation, so positions never collide.
  const last = rowsOf<{ id: string; max: number | string | null }>(
    await tx.execute(sql`
      select c.id, (select max(i.position) from conversation_items i where i.conversation_id = c.id) as max
      from conversations c
      where c.id in (select value::uuid from jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))
      order by c.id
      for no key update of c`),
  );
  const next = new Map(ids.map((id) => [id, 0]));
  for (const r of last) if (r.max !== null) next.set(r.id, Number(r.max) + 1);
  const rows = withItems.flatMap((b) =>
    b.items.map((it) => {
      const position = next.get(b.conversationId)!;
      next.set(b.conversationId, position + 1);
      return { conversation_id: b.conversationId, position, role: it.role, content: it.content, tokens: it.tokens, response_id: b.responseId };
    }),
  );
  for (const part of chunks(rows)) {
    await tx.execute(sql`
      insert into conversation_items (conversation_id, position, role, content, tokens, response_id)
      select conversation_id, position, role, content, tokens, response_id
      from ${recordset(part, 'conversation_id uuid, position int, role text, content jsonb, tokens int, response_id uuid')}`);
  }
  const touched = [...new Set(withItems.filter((b) => !b.isNew).map((b) => b.conversationId))];
  if (touched.length > 0) await tx.update(conversations).set({ updatedAt: new Date() }).where(inArray(conversations.id, touched));
}

/** Reservations and in-progress rows of requests about to call a model. */
async function writeAdmissions(tx: Db, admits: Extract<Job, { kind: 'admit' }>[]): Promise<void> {
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

/**
 * The in-progress rows, with the hidden conversations (and their system
 * messages) of stateless requests, in one statement per chunk: the
 * conversations go in through CTEs of the same statement, whose foreign keys
 * are checked at its end. One statement is one round trip, and atomic alone.
 */
async function insertStarts(db: Db, starts: StartRecord[], before: SQL[] = []): Promise<void> {
  const parts = chunks(starts, 200);
  if (parts.length === 0) parts.push([]);
  for (const [i, part] of parts.entries()) {
    const fresh = part.filter((s) => s.conversation.isNew);
    const system = fresh.filter((s) => s.conversation.instructions !== null && s.conversation.instructions !== '');
    const ctes = [
      ...(i === 0 ? before : []),
      sql`new_conversations as (
        insert into conversations (id, user_id, organization_id, hidden, title)
        select id, user_id, organization_id, true, title
        from ${recordset(
          fresh.map((s) => ({ id: s.conversation.id, user_id: s.userId, organization_id: s.organizationId, title: s.conversation.title })),
          'id uuid, user_id uuid, organization_id uuid, title text',
        )}
        on conflict (id) do nothing)`,
      sql`system_messages as (
        insert into conversation_items (conversation_id, position, role, content, tokens)
        select conversation_id, 0, 'system', content, tokens
        from ${recordset(
          system.map((s) => ({
            conversation_id: s.conversation.id,
            content: [{ type: 'input_text', text: s.conversation.instructions }],
            tokens: s.conversation.instructionTokens,
          })),
          'conversation_id uuid, content jsonb, tokens int',
        )})`,
    ];
    await db.execute(sql`
      with ${sql.join(ctes, sql`, `)}
      insert into responses (${sql.raw(RESPONSE_NAMES)})
      select ${sql.raw(RESPONSE_NAMES)} from ${recordset(
        part.map((s) => responseRow(s, null)),
        RESPONSE_COLUMNS,
      )}`);
  }
}

/** Admissions of callers without token limits: nothing to decide, only rows to write. */
const unlimitedOnly = (jobs: Job[]) => jobs.length <= 200 && jobs.every((j) => j.kind === 'admit' && j.ask === null);

/** Finished responses and released admissions. */
async function writeEndings(tx: Db, finishes: Extract<Job, { kind: 'finish' }>[], releases: ReleaseRecord[]): Promise<void> {
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
  await addUsage(tx, deltas);

  await appendItems(
    tx,
    finishes
      .filter((f) => f.counted)
      .map((f) => ({ conversationId: f.record.conversationId, responseId: f.record.responseId, items: f.record.items, isNew: f.record.newConversation })),
  );

  if (releases.length > 0) {
    await tx.delete(responses).where(and(inArray(responses.id, releases.map((r) => r.responseId)), eq(responses.status, 'in_progress')));
    const dropped = releases.filter((r) => r.newConversation).map((r) => r.conversationId);
    if (dropped.length > 0) await tx.delete(conversations).where(and(inArray(conversations.id, dropped), eq(conversations.hidden, true)));
  }
}

async function writeBatch(tx: Db, jobs: Job[]): Promise<void> {
  const admits = jobs.filter((j): j is Extract<Job, { kind: 'admit' }> => j.kind === 'admit');
  const finishes = jobs.filter((j): j is Extract<Job, { kind: 'finish' }> => j.kind === 'finish');
  const releases = jobs.flatMap((j) => (j.kind === 'release' ? [j.record] : []));
  // Endings first: they give tokens back that admissions in the same batch may use.
  if (finishes.length > 0 || releases.length > 0) await writeEndings(tx, finishes, releases);
  if (admits.length > 0) await writeAdmissions(tx, admits);
}

function unlimited(start: StartRecord): Reservation {
  return { id: null, estimate: 0, windows: start.pending.windows as Reservation['windows'], held: [], states: [] };
}

export interface ResponseWriterOptions {
  maxBatch?: number;
  /** Batches of each queue written at once: above 1 only with a pool of connections (PostgreSQL). */
  concurrency?: number;
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
  /** Admissions have a queue of their own: a request about to call a model never waits behind a batch of finished answers. */
  private readonly admissions: Batcher<Job>;
  private readonly endings: Batcher<Job>;
  private readonly onBare: (record: FinishRecord, err: unknown) => void;

  constructor(db: Db, opts: ResponseWriterOptions = {}) {
    this.onBare = (record, err) => opts.onBare?.(record, err);
    const write = (jobs: Job[]) => db.transaction((tx) => writeBatch(tx, jobs));
    // Without limits an admission batch is one statement, which needs no transaction around it.
    const admit = async (jobs: Job[]) => {
      if (!unlimitedOnly(jobs)) return write(jobs);
      await insertStarts(
        db,
        jobs.map((j) => (j as Extract<Job, { kind: 'admit' }>).start),
      );
      for (const j of jobs) if (j.kind === 'admit') j.result = { admitted: true, reservation: unlimited(j.start) };
    };
    const onRetry = (err: unknown, attempt: number, jobs: number) => opts.onRetry?.(err, attempt, jobs);
    const concurrency = opts.concurrency ?? 1;
    // A request not yet at a model is answered 503 at once; a finished response waits out an outage.
    this.admissions = new Batcher<Job>({ write: admit, maxBatch: opts.maxBatch ?? 256, concurrency, retryJob: () => false, onRetry });
    this.endings = new Batcher<Job>({ write, maxBatch: opts.maxBatch ?? 256, concurrency, retryJob: () => true, onRetry });
  }

  /** Reserves tokens (when `ask` is given) and writes the response's in-progress row, in one commit. */
  async admit(ask: AdmissionAsk | null, start: StartRecord): Promise<AdmissionResult> {
    const job: Job = { kind: 'admit', ask, start };
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

  get pending(): number {
    return this.admissions.pending + this.endings.pending;
  }

  async idle(): Promise<void> {
    await Promise.all([this.admissions.idle(), this.endings.idle()]);
  }

  async close(graceMs: number): Promise<void> {
    await Promise.all([this.admissions.close(graceMs), this.endings.close(graceMs)]);
  }
}
