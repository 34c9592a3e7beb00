import { and, desc, eq, sql } from 'drizzle-orm';
import type { Principal } from '../auth/key-auth.ts';
import type { Db } from '../db/client.ts';
import { conversationItems, conversations, conversationSummaries, responses } from '../db/schema.ts';
import { toStorable } from '../http/text.ts';
import { addUsage } from '../limits/ledger.ts';
import { claimReservations, estimateTokens, releaseDeltas, reserveTokens, usageDeltas, type Reservation } from '../limits/quota.ts';
import type { ChatMessage } from '../providers/types.ts';
import type { ModelConfig } from '../router/catalog.ts';
import { allowedCountries, residencyAllows } from '../router/residency.ts';
import { openCall, type CallDeps } from '../responses/attempts.ts';
import { countTokens } from '../tokens.ts';
import { eligible, MAX_SCANNED, type StoredCall, type StoredCallOutput, type StoredContent } from './store.ts';

/**
 * Incremental summaries of long conversations.
 *
 * When a request's history no longer fits the window of the model it goes
 * to, the newest turns are sent and the older ones are left out (the sliding
 * window). That request then asks for a summary (off its critical path: the
 * summary is made after the response is stored, for the requests after it).
 * The summariser folds the oldest turns not yet covered into the running
 * summary with one model call (the old summary plus those turns in, the new
 * summary out), keeping the newest turns (half of the history budget the
 * request had) as they are. The summary is stored with the position of the
 * last item it covers; later prompts send it, merged into the system
 * message, followed by the items after that position (context.ts).
 *
 * The call is metered like any other: its estimate is reserved in the
 * user's windows before it is made (no reservation, no summary: the sliding
 * window stays), and its usage is counted to the user and organisation
 * (as tokens, not as a request). It goes only to models the organisation's
 * residency policy allows. A summary stays consistent with what it
 * summarises: deleting a response or an item it covers drops it (it is made
 * again when needed).
 */

export interface SummarySettings {
  enabled: boolean;
  /** The catalog model tried first; otherwise models of the `fast` category, then the cheapest. */
  model: string | undefined;
  /** The longest summary, in tokens. */
  maxOutputTokens: number;
  /** Model calls one run may make to catch up with a long history. */
  maxCallsPerRun: number;
}

export interface Summary {
  text: string;
  /** The position of the last item the summary covers. */
  throughPosition: number;
  tokens: number;
}

export const SUMMARY_INTRO = 'Summary of the earlier part of this conversation (its older turns are not shown):';

/** Tokens a summary takes in a prompt, with its heading. */
export const summaryCost = (s: Summary) => s.tokens + countTokens(SUMMARY_INTRO) + 8;

export async function loadSummary(db: Db, conversationId: string): Promise<Summary | null> {
  const [row] = await db
    .select({ text: conversationSummaries.text, throughPosition: conversationSummaries.throughPosition, tokens: conversationSummaries.tokens })
    .from(conversationSummaries)
    .where(eq(conversationSummaries.conversationId, conversationId));
  return row ?? null;
}

/** The system prompt with the summary after it, as one system message (several confuse some chat templates). */
export function withSummary(head: ChatMessage[], summary: Summary): ChatMessage[] {
  const block = `${SUMMARY_INTRO}\n${summary.text}`;
  const system = head.find((m) => m.role === 'system');
  if (system === undefined) return [{ role: 'system', content: block }, ...head];
  return head.map((m) => (m === system ? { role: 'system', content: `${m.content}\n\n${block}` } : m));
}

/** Drops a conversation's summary when it covers a position at or after `from` (an item it summarised is gone). */
export async function dropSummaryFrom(db: Db, conversationId: string, from: number): Promise<void> {
  await db
    .delete(conversationSummaries)
    .where(and(eq(conversationSummaries.conversationId, conversationId), sql`${conversationSummaries.throughPosition} >= ${from}`));
}

interface Item {
  position: number;
  role: string;
  type: string;
  content: unknown;
  tokens: number;
}

/** The longest one item may be in a summary's input: a huge tool result is cut, not sent whole. */
const MAX_ITEM_CHARS = 6_000;

const clip = (text: string) => (text.length > MAX_ITEM_CHARS ? `${text.slice(0, MAX_ITEM_CHARS)} […]` : text);

/** One item as a transcript line for the summariser. */
function lineOf(item: Item): string {
  if (item.type === 'function_call') {
    const c = item.content as StoredCall;
    return `Assistant called the tool ${c.name} with ${clip(c.arguments)}`;
  }
  if (item.type === 'function_call_output') return `Tool result: ${clip((item.content as StoredCallOutput).output)}`;
  const text = (item.content as StoredContent)
    .map((p) => {
      if (p.type === 'input_file' && 'file_id' in p) return `[file ${(p as { filename?: string }).filename ?? p.file_id}]`;
      if (p.type === 'input_image') return '[an image]';
      return (p as { text: string }).text;
    })
    .join('\n');
  return `${item.role === 'assistant' ? 'Assistant' : 'User'}: ${clip(text)}`;
}

const instructionsFor = (maxTokens: number) =>
  'You keep a running summary of a conversation between a user and an assistant, so that the conversation can go on when its older turns no longer fit. ' +
  'Write the updated summary: keep every fact, name, number, date, decision, instruction and preference the user gave, what the assistant answered or did ' +
  '(tool results that matter included), and the questions still open. Write in the language of the conversation, as plain prose or short points, without a preamble, ' +
  `in at most about ${Math.floor(maxTokens * 0.6)} words.`;

/**
 * The turns to fold into the summary: everything older than the newest turns
 * worth `keepTokens`. The kept part opens with a user message, like the
 * sliding window, so a question and its answer stay together.
 */
export function splitForSummary(newestFirst: Item[], keepTokens: number): Item[] {
  let kept = 0;
  let cut = 0;
  while (cut < newestFirst.length && kept + newestFirst[cut]!.tokens + 4 <= keepTokens) kept += newestFirst[cut++]!.tokens + 4;
  // Move the cut newer until the oldest kept item is a user message.
  while (cut > 0 && !(newestFirst[cut - 1]!.role === 'user' && newestFirst[cut - 1]!.type === 'message')) cut--;
  return newestFirst.slice(cut).reverse();
}

/** What a model call needs (attempts.ts), and the summaries' settings. */
export interface SummariserDeps extends CallDeps {
  settings: SummarySettings;
}

interface Job {
  principal: Principal;
  keepTokens: number;
}

/** Conversations waiting at most; past it a request is dropped (the sliding window stays, the next overflow asks again). */
const MAX_WAITING = 1_000;
/** Runs at once on one instance. */
const MAX_RUNNING = 2;

export class Summariser {
  private readonly waiting = new Map<string, Job>();
  private readonly running = new Set<string>();
  private readonly stop = new AbortController();
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly deps: SummariserDeps) {}

  /** Asks for the conversation's summary to catch up, keeping its newest `keepTokens` of history as they are. */
  request(conversationId: string, principal: Principal, keepTokens: number): void {
    if (!this.deps.settings.enabled || this.stop.signal.aborted) return;
    if (!this.waiting.has(conversationId) && this.waiting.size >= MAX_WAITING) {
      this.deps.log.warn({ conversation_id: conversationId }, 'too many conversations waiting for a summary; this one keeps its sliding window');
      return;
    }
    this.waiting.set(conversationId, { principal, keepTokens });
    this.pump();
  }

  /** Resolves when nothing is waiting or running (tests, shutdown). */
  idle(): Promise<void> {
    if (this.waiting.size === 0 && this.running.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops taking work and aborts calls in flight; their reservations are given back. */
  async close(): Promise<void> {
    this.waiting.clear();
    this.stop.abort(new Error('server stopping'));
    await this.idle();
  }

  private pump(): void {
    for (const [id, job] of this.waiting) {
      if (this.running.size >= MAX_RUNNING) break;
      if (this.running.has(id)) continue;
      this.waiting.delete(id);
      this.running.add(id);
      this.run(id, job)
        .catch((err: unknown) => this.deps.log.warn({ error: (err as Error).message, conversation_id: id }, 'could not summarise a conversation'))
        .finally(() => {
          this.running.delete(id);
          this.pump();
          if (this.waiting.size === 0 && this.running.size === 0) {
            const waiters = this.idleWaiters;
            this.idleWaiters = [];
            for (const w of waiters) w();
          }
        });
    }
  }

  /** The models a summary may go to, best first. */
  private candidates(principal: Principal): ModelConfig[] {
    const allowed = allowedCountries(principal.policy.residency);
    const usable = this.deps.catalog.models.filter((m) => m.enabled && residencyAllows(m, allowed));
    const rank = (m: ModelConfig) => (m.id === this.deps.settings.model ? 0 : m.categories.includes('fast') ? 1 : 2);
    return usable.sort((a, b) => rank(a) - rank(b) || a.price.input - b.price.input);
  }

  private async run(conversationId: string, job: Job): Promise<void> {
    for (let call = 0; call < this.deps.settings.maxCallsPerRun; call++) {
      if (this.stop.signal.aborted) return;
      const more = await this.step(conversationId, job);
      if (!more) return;
    }
  }

  /** Folds one batch of old turns into the summary; true when older turns are still left uncovered. */
  private async step(conversationId: string, job: Job): Promise<boolean> {
    const { db, log } = this.deps;
    const summary = await loadSummary(db, conversationId);
    const after = summary?.throughPosition ?? -1;
    const newestFirst = await db
      .select({
        position: conversationItems.position,
        role: conversationItems.role,
        type: conversationItems.type,
        content: conversationItems.content,
        tokens: conversationItems.tokens,
      })
      .from(conversationItems)
      .leftJoin(responses, eq(responses.id, conversationItems.responseId))
      .where(eligible(conversationId, after))
      .orderBy(desc(conversationItems.position))
      .limit(MAX_SCANNED);
    const fold = splitForSummary(newestFirst, job.keepTokens);
    if (fold.length === 0) return false;
    const models = this.candidates(job.principal);
    if (models.length === 0) return false;

    const maxOut = Math.min(this.deps.settings.maxOutputTokens, ...models.map((m) => m.max_output_tokens));
    const system = instructionsFor(maxOut);
    const head = summary === null ? '' : `Summary so far:\n${summary.text}\n\n`;
    let through = after;
    let promptTokens = 0;
    const build = async (model: ModelConfig) => {
      // As many of the oldest uncovered turns as this model's window takes.
      let room = model.context_window - maxOut - countTokens(system) - countTokens(head) - 64;
      const lines: string[] = [];
      through = after;
      for (const item of fold) {
        const line = lineOf(item);
        const cost = countTokens(line) + 1;
        if (cost > room) break;
        room -= cost;
        lines.push(line);
        through = item.position;
      }
      if (lines.length === 0) throw new Error('no turn fits the summarising model');
      const user = `${head}Turns to add, oldest first:\n\n${lines.join('\n\n')}`;
      promptTokens = countTokens(system) + countTokens(user) + 8;
      const messages: ChatMessage[] = [
        { role: 'system', content: system },
        { role: 'user', content: user },
      ];
      return { model: model.upstream_model, messages, maxOutputTokens: maxOut, temperature: 0.2, promptTokens };
    };

    const window = Math.max(...models.map((m) => m.context_window - maxOut));
    const inputBound = Math.min(window, fold.reduce((n, it) => n + it.tokens + 8, 0) + (summary?.tokens ?? 0) + 400);
    const reservation = await reserveTokens(db, job.principal, estimateTokens(inputBound, maxOut), this.deps.now(), 10 * 60_000);
    if (reservation === null) {
      log.info({ conversation_id: conversationId }, 'no token allowance left for a summary; the sliding window stays');
      return false;
    }
    let text = '';
    let usage = { inputTokens: 0, outputTokens: 0, totalTokens: 0 };
    let reported = false;
    const opened = await openCall(this.deps, models, build, this.stop.signal).catch((err: unknown) => ({ type: 'failed' as const, error: err }));
    if (opened.type !== 'started') {
      await this.giveBack(reservation);
      if (opened.type === 'failed') log.warn({ conversation_id: conversationId, error: (opened.error as Error | undefined)?.message }, 'no model could summarise the conversation');
      return false;
    }
    const { call } = opened;
    try {
      let event = call.first;
      while (event !== undefined) {
        if (event.type === 'text' && text.length < maxOut * 16) text += event.text;
        if (event.type === 'usage') {
          reported = true;
          usage = { inputTokens: event.usage.inputTokens, outputTokens: event.usage.outputTokens, totalTokens: event.usage.inputTokens + event.usage.outputTokens };
        }
        const next = await call.rest.next();
        event = next.done === true ? undefined : next.value;
      }
      call.end({ type: 'success', latencyMs: this.deps.now() - call.startedAt });
    } catch (err) {
      call.end({ type: 'neutral' });
      // What the upstream produced before it failed is still counted.
      await this.settle(conversationId, job.principal, reservation, this.counted(reported, usage, promptTokens, text), null);
      throw err;
    }
    text = toStorable(text).trim();
    const counted = this.counted(reported, usage, promptTokens, text);
    call.count({ inputTokens: counted.inputTokens, outputTokens: counted.outputTokens, cachedTokens: 0, reasoningTokens: 0 });
    const next = text === '' ? null : { text, throughPosition: through, tokens: countTokens(text), model: call.model.id, previous: after };
    const stored = await this.settle(conversationId, job.principal, reservation, counted, next);
    log.info({ conversation_id: conversationId, through_position: through, tokens: next?.tokens ?? 0, model: call.model.id, stored }, 'conversation summary updated');
    return stored && through < fold.at(-1)!.position;
  }

  private counted(reported: boolean, usage: { inputTokens: number; outputTokens: number; totalTokens: number }, promptTokens: number, text: string) {
    if (reported) return usage;
    const output = countTokens(text);
    return { inputTokens: promptTokens, outputTokens: output, totalTokens: promptTokens + output };
  }

  private async giveBack(reservation: Reservation): Promise<void> {
    if (reservation.id === null) return;
    const id = reservation.id;
    await this.deps.db.transaction(async (tx) => {
      const claimed = await claimReservations(tx, [id]);
      const held = claimed.get(id);
      if (held !== undefined) await addUsage(tx, releaseDeltas(held.held, held.estimate));
    });
  }

  /**
   * In one transaction: the usage is counted (and the reservation given
   * back), and the summary replaces the one it was made from, unless another
   * run replaced it first or the conversation is gone. True when stored.
   */
  private async settle(
    conversationId: string,
    principal: Principal,
    reservation: Reservation,
    usage: { inputTokens: number; outputTokens: number; totalTokens: number },
    next: { text: string; throughPosition: number; tokens: number; model: string; previous: number } | null,
  ): Promise<boolean> {
    return this.deps.db.transaction(async (tx) => {
      const givenBack = reservation.id === null ? null : ((await claimReservations(tx, [reservation.id])).get(reservation.id) ?? null);
      const deltas = usageDeltas(principal, reservation.windows, usage, givenBack).map((d) => ({ ...d, requests: 0 }));
      await addUsage(tx, deltas);
      if (next === null) return false;
      // The conversation row is locked against deletion until the summary is in.
      const [alive] = await tx.select({ id: conversations.id }).from(conversations).where(eq(conversations.id, conversationId)).for('key share');
      if (alive === undefined) return false;
      const row = { conversationId, text: next.text, throughPosition: next.throughPosition, tokens: next.tokens, model: next.model, updatedAt: new Date(this.deps.now()) };
      // Only in place of the summary it was made from: a run that lost a race, or a summary dropped meanwhile, leaves things be.
      const written =
        next.previous === -1
          ? await tx.insert(conversationSummaries).values(row).onConflictDoNothing().returning({ through: conversationSummaries.throughPosition })
          : await tx
              .update(conversationSummaries)
              .set({ text: row.text, throughPosition: row.throughPosition, tokens: row.tokens, model: row.model, updatedAt: row.updatedAt })
              .where(and(eq(conversationSummaries.conversationId, conversationId), eq(conversationSummaries.throughPosition, next.previous)))
              .returning({ through: conversationSummaries.throughPosition });
      return written.length > 0;
    });
  }
}
