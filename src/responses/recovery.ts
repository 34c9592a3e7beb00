import { eq, inArray, sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/client.ts';
import { instances, responses } from '../db/schema.ts';
import { addUsage } from '../limits/ledger.ts';
import { claimReservations, usageDeltas } from '../limits/quota.ts';
import type { ResponseBuilder } from './builder.ts';
import type { Cancels } from './cancels.ts';
import { outputTextOf, toolCallsOf, usageOf, type ResponseObject } from './object.ts';
import { storedOutput } from './store.ts';
import type { PendingState } from './records.ts';
import { appendItems } from './statements.ts';

/**
 * Crash safety for responses in progress. Each instance
 * - beats: its row in `instances` carries a heartbeat every `heartbeatMs`;
 * - checkpoints: every `checkpointMs`, the output so far of each response it
 *   is producing is written into the response's row (one statement for all),
 *   so a crash loses at most that much text;
 * - recovers: every few seconds it looks for responses left `in_progress` by
 *   an instance whose heartbeat is older than `staleMs` (killed, crashed,
 *   partitioned), and finalises them as `incomplete` with their checkpointed
 *   output: the prompt and the delivered tokens are counted and the
 *   reservation is given back, in one transaction. The row lock and the
 *   status check make this exactly once, also against a late final write of
 *   an instance that was only slow (responses/writer.ts counts only the rows
 *   it ended itself).
 * Heartbeat ages are compared on the database's clock, so instances with
 * skewed clocks agree.
 */

export interface RecoveryOptions {
  heartbeatMs: number;
  staleMs: number;
  checkpointMs: number;
  onError(what: string, err: unknown): void;
  onRecovered(count: number): void;
  /** Responses running here; cancels written by other instances reach them through pollCancels. */
  cancels?: Cancels | undefined;
}

/** Responses checkpointed per statement. */
const CHECKPOINT_SLICE = 250;

/** The reason recorded on a response whose instance died while producing it. */
export const INTERRUPTED = 'interrupted';

export class Recovery {
  private readonly live = new Map<string, { builder: ResponseBuilder; saved: number; store: boolean }>();
  private timers: NodeJS.Timeout[] = [];
  private checkpointing = false;

  constructor(
    private readonly db: Db,
    readonly instanceId: string,
    private readonly opts: RecoveryOptions,
  ) {}

  async start(): Promise<void> {
    await this.beat();
    const every = (ms: number, fn: () => Promise<unknown>, what: string) => {
      const t = setInterval(() => {
        fn().catch((err: unknown) => this.opts.onError(what, err));
      }, ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.opts.heartbeatMs, () => this.beat(), 'heartbeat');
    every(this.opts.checkpointMs, () => this.checkpoint(), 'checkpoint');
    every(this.opts.checkpointMs, () => this.pollCancels(), 'cancel poll');
    every(Math.max(1_000, Math.floor(this.opts.staleMs / 2)), () => this.sweep(), 'recovery');
  }

  /** Stops the timers; with `forget`, removes this instance's row (a clean exit: nothing of it is left in progress). */
  async stop(forget: boolean): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (forget) await this.db.delete(instances).where(eq(instances.id, this.instanceId));
  }

  /** `store` false: checkpoints write only the usage so far, never the output (the row has no body). */
  track(builder: ResponseBuilder, store = true): void {
    this.live.set(builder.id, { builder, saved: 0, store });
  }

  untrack(id: string): void {
    this.live.delete(id);
  }

  private async beat(): Promise<void> {
    await this.db.execute(sql`
      insert into instances (id) values (${this.instanceId}::uuid)
      on conflict (id) do update set heartbeat_at = now()`);
  }

  /** Writes the output so far of every tracked response whose text grew since its last checkpoint. */
  async checkpoint(): Promise<number> {
    if (this.checkpointing) return 0;
    const due = [...this.live.values()].filter((l) => l.builder.status === 'in_progress' && l.builder.revision > l.saved);
    if (due.length === 0) return 0;
    this.checkpointing = true;
    try {
      // In slices, so that thousands of streams never build one huge statement (and its copies) at once.
      for (let i = 0; i < due.length; i += CHECKPOINT_SLICE) {
        const rows = due.slice(i, i + CHECKPOINT_SLICE).map((l) => {
          const u = l.builder.usage;
          const used = { inputTokens: u?.inputTokens ?? 0, outputTokens: u?.outputTokens ?? 0, inFlight: l.builder.inFlightPromptTokens };
          return { l, revision: l.builder.revision, id: l.builder.id, model: l.builder.model, body: l.store ? l.builder.snapshot() : null, used };
        });
        // `used`: the usage of the model calls already finished (a tool loop makes several), and the prompt of the one under way.
        // A row without a body (`store: false`) keeps none.
        await this.db.execute(sql`
          update responses set body = case when responses.body is null then null else x.body end, model = x.model,
            pending = responses.pending || jsonb_build_object('used', x.used)
          from jsonb_to_recordset(${JSON.stringify(rows.map((r) => ({ id: r.id, body: r.body, model: r.model, used: r.used })))}::jsonb)
            as x(id uuid, body jsonb, model text, used jsonb)
          where responses.id = x.id and responses.status = 'in_progress'`);
        for (const r of rows) r.l.saved = r.revision;
      }
      return due.length;
    } finally {
      this.checkpointing = false;
    }
  }

  /** Cancels the responses running here whose cancel was written to their row by another instance. */
  async pollCancels(): Promise<number> {
    const ids = this.opts.cancels?.ids() ?? [];
    if (ids.length === 0) return 0;
    const asked = rowsOf<{ id: string }>(
      await this.db.execute(sql`
        select id from responses
        where id in (select value::uuid from jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))
          and status = 'in_progress' and (pending->>'cancel') = 'true'`),
    );
    for (const { id } of asked) this.opts.cancels?.cancelHere(id);
    return asked.length;
  }

  /** Finalises responses of dead instances; returns how many. */
  async sweep(batch = 100): Promise<number> {
    const count = await this.db.transaction(async (tx) => {
      const orphans = rowsOf<{ id: string }>(
        await tx.execute(sql`
          select r.id from responses r
          where r.status = 'in_progress'
            -- An instance is alive to itself: after a pause longer than staleMs it must not end its own streams.
            and r.instance_id is distinct from ${this.instanceId}::uuid
            and not exists (
              select 1 from instances i
              where i.id = r.instance_id and i.heartbeat_at > now() - make_interval(secs => ${this.opts.staleMs / 1000}))
          order by r.id
          limit ${batch}
          for update of r skip locked`),
      );
      if (orphans.length === 0) return 0;
      const rows = await tx
        .select()
        .from(responses)
        .where(
          inArray(
            responses.id,
            orphans.map((o) => o.id),
          ),
        );
      await finalise(tx, rows);
      return rows.length;
    });
    if (count > 0) this.opts.onRecovered(count);
    await this.db.execute(sql`delete from instances where heartbeat_at < now() - interval '1 day'`);
    return count;
  }
}

type Row = typeof responses.$inferSelect;

/** Ends orphaned rows as incomplete, with their checkpointed output, counting what they used. */
async function finalise(tx: Db, rows: Row[]): Promise<void> {
  const now = Date.now();
  const ended = rows.map((row) => {
    const pending = row.pending as PendingState | null;
    // Just read: changing it in place changes nothing else. Null for a `store: false` response, which ends with its usage alone.
    const body = row.body as ResponseObject | null;
    const output = body?.output ?? [];
    for (const item of output) if (item.status === 'in_progress') item.status = 'incomplete';
    // Finished calls count as their upstream reported, the interrupted one its prompt; output by our count when
    // that is more. Tool results are input of the next call, not output.
    const used = pending?.used;
    const inputTokens = used === undefined ? (pending?.promptTokens ?? 0) : used.inputTokens + used.inFlight;
    const made = storedOutput(output).filter((item) => item.origin === 'output' && item.type !== 'function_call_output');
    const outputTokens = Math.max(used?.outputTokens ?? 0, made.reduce((n, item) => n + item.tokens, 0));
    const usage = usageOf(inputTokens, outputTokens);
    if (body === null) return { row, pending, body, output, usage };
    Object.assign(body, {
      status: 'incomplete',
      completed_at: now,
      output_text: outputTextOf(output),
      tool_calls: toolCallsOf(output),
      usage,
      incomplete_details: { reason: INTERRUPTED },
    });
    return { row, pending, body, output, usage };
  });

  const claimed = await claimReservations(
    tx,
    ended.map((e) => e.pending?.reservationId).filter((id): id is string => typeof id === 'string'),
  );
  const deltas = ended.flatMap((e) =>
    e.pending === null
      ? []
      : usageDeltas(
          { userId: e.row.userId, organizationId: e.row.organizationId },
          e.pending.windows,
          { inputTokens: e.usage.input_tokens, outputTokens: e.usage.output_tokens, totalTokens: e.usage.total_tokens },
          e.pending.reservationId === null ? null : claimed.get(e.pending.reservationId) ?? null,
        ),
  );
  for (const e of ended) {
    await tx
      .update(responses)
      .set({
        status: 'incomplete',
        inputTokens: e.usage.input_tokens,
        outputTokens: e.usage.output_tokens,
        totalTokens: e.usage.total_tokens,
        completedAt: new Date(now),
        durationMs: now - e.row.createdAt.getTime(),
        body: e.body,
        instanceId: null,
        pending: null,
      })
      .where(eq(responses.id, e.row.id));
  }
  await appendItems(
    tx,
    ended
      .filter((e) => e.row.conversationId !== null)
      .map((e) => ({
        conversationId: e.row.conversationId!,
        responseId: e.row.id,
        isNew: false,
        items: [...(e.pending?.input ?? []), ...storedOutput(e.output)],
      })),
  );
  // Usage rows last, in the writer's lock order (responses, conversations, usage).
  await addUsage(tx, deltas);
}
