import { randomUUID } from 'node:crypto';
import { and, eq, lt, sql } from 'drizzle-orm';
import type { Limits, Principal } from '../auth/key-auth.ts';
import { rowsOf, type Db } from '../db/client.ts';
import { reservations, usageTotals } from '../db/schema.ts';
import { ApiError } from '../http/api-error.ts';
import { secondsUntil, type Window, type WindowKind } from './windows.ts';

/**
 * Token quotas that hold under any concurrency and any number of instances
 * (issue 5). Admission reserves the request's estimate in every window that
 * has a limit with one conditional upsert per window, all in one transaction
 * and always in the same order (user day, user month, organisation day,
 * organisation month), so concurrent admissions serialise on the rows and a
 * window can never hold more than its limit in used + reserved tokens. The
 * response's real usage replaces the estimate when it is stored
 * (saveResponse), or the estimate is released when no upstream was called.
 *
 * The bound: for every window, used ≤ limit + Σ max(0, actual − estimate)
 * over the requests it admitted. The estimate is the prompt counted with
 * o200k_base × INPUT_MARGIN + FRAMING_MARGIN, plus the whole output budget
 * (the upstream's max_tokens), so the slack is zero unless an upstream counts
 * a prompt more than 25% + 64 tokens above our tokenizer, or reports more
 * output than the max_tokens it was sent.
 *
 * Each reservation is also a row with an expiry, deleted by whoever gives it
 * back (reconcile or release, in their own transaction), so it is given back
 * exactly once; one left behind by a process that died is given back by
 * releaseExpired once it expires.
 */
export const INPUT_MARGIN = 1.25;
export const FRAMING_MARGIN = 64;

export const estimateTokens = (promptTokens: number, outputBudget: number) =>
  Math.ceil(promptTokens * INPUT_MARGIN) + FRAMING_MARGIN + outputBudget;

export interface WindowLimit {
  subjectType: 'user' | 'organization';
  subjectId: string;
  window: Window;
  limit: number;
}

export interface WindowState extends WindowLimit {
  used: number;
  reserved: number;
}

export interface Reservation {
  /** The reservation's row; null when no window has a limit. */
  id: string | null;
  estimate: number;
  windows: { day: Window; month: Window };
  /** The windows this request holds `estimate` tokens in. */
  held: WindowLimit[];
  states: WindowState[];
}

const LIMIT_OF: Record<WindowLimit['subjectType'], Record<WindowKind, keyof Limits>> = {
  user: { day: 'userDay', month: 'userMonth' },
  organization: { day: 'orgDay', month: 'orgMonth' },
};

/** The windows with a limit, in the one order every transaction takes them. */
export function limitedWindows(principal: Principal, windows: { day: Window; month: Window }): WindowLimit[] {
  const out: WindowLimit[] = [];
  for (const subjectType of ['user', 'organization'] as const) {
    for (const window of [windows.day, windows.month]) {
      const limit = principal.policy.limits[LIMIT_OF[subjectType][window.kind]];
      const subjectId = subjectType === 'user' ? principal.userId : principal.organizationId;
      if (limit !== null) out.push({ subjectType, subjectId, window, limit });
    }
  }
  return out;
}

async function stateOf(db: Db, w: WindowLimit): Promise<WindowState> {
  const [row] = await db
    .select({ used: usageTotals.totalTokens, reserved: usageTotals.reservedTokens })
    .from(usageTotals)
    .where(
      and(
        eq(usageTotals.subjectType, w.subjectType),
        eq(usageTotals.subjectId, w.subjectId),
        eq(usageTotals.window, w.window.kind),
        eq(usageTotals.windowStart, w.window.start),
      ),
    );
  return { ...w, used: Number(row?.used ?? 0), reserved: Number(row?.reserved ?? 0) };
}

/** The SPEC's headers for the tightest window: the one with the fewest tokens left. */
export function rateHeaders(states: WindowState[], now: number): Record<string, string> {
  if (states.length === 0) return {};
  const left = (s: WindowState) => Math.max(0, s.limit - s.used - s.reserved);
  const tightest = states.reduce((a, b) => (left(b) < left(a) ? b : a));
  return {
    'x-ratelimit-limit-tokens': String(tightest.limit),
    'x-ratelimit-remaining-tokens': String(left(tightest)),
    'x-ratelimit-reset-tokens': String(secondsUntil(tightest.window.resetAt, now)),
  };
}

/** Current headers, without reserving anything (answers refused before admission). */
export async function snapshotHeaders(db: Db, principal: Principal, windows: { day: Window; month: Window }, now: number) {
  const limited = limitedWindows(principal, windows);
  if (limited.length === 0) return {};
  return rateHeaders(await Promise.all(limited.map((w) => stateOf(db, w))), now);
}

function refusal(state: WindowState, estimate: number, now: number, states: WindowState[]): ApiError {
  const left = Math.max(0, state.limit - state.used - state.reserved);
  const whose = state.subjectType === 'user' ? 'your' : "your organisation's";
  const period = state.window.kind === 'day' ? 'daily' : 'monthly';
  const message =
    estimate > state.limit
      ? `this request may use up to ${estimate} tokens, more than ${whose} ${period} limit of ${state.limit}; lower max_output_tokens`
      : `${whose} ${period} token limit of ${state.limit} is spent (${left} left, this request may use up to ${estimate}); it resets at ${new Date(state.window.resetAt).toISOString()}`;
  return new ApiError(429, 'rate_limit_error', `${period}_token_limit_exceeded`, message, null, {
    'retry-after': String(secondsUntil(state.window.resetAt, now)),
    ...rateHeaders(states, now),
  });
}

interface HeldRow {
  subjectType: 'user' | 'organization';
  subjectId: string;
  window: WindowKind;
  windowStart: string;
}

const heldRows = (held: WindowLimit[]): HeldRow[] =>
  held.map((w) => ({ subjectType: w.subjectType, subjectId: w.subjectId, window: w.window.kind, windowStart: w.window.start }));

/**
 * Reserves `estimate` tokens in every limited window, or throws the 429 of
 * the first window it would overflow. `ttlMs` bounds how long the request
 * can hold them: past it, releaseExpired gives them back.
 */
export async function reserve(
  db: Db,
  principal: Principal,
  estimate: number,
  windows: { day: Window; month: Window },
  now: number,
  ttlMs: number,
): Promise<Reservation> {
  const limited = limitedWindows(principal, windows);
  if (limited.length === 0) return { id: null, estimate, windows, held: [], states: [] };
  const id = randomUUID();
  let refused: WindowLimit | undefined;
  const states = await db
    .transaction(async (tx) => {
      const out: WindowState[] = [];
      for (const w of limited) {
        const rows = rowsOf<{ total_tokens: string | number; reserved_tokens: string | number }>(
          await tx.execute(sql`
            insert into usage_totals (subject_type, subject_id, "window", window_start, reserved_tokens)
            select ${w.subjectType}, ${w.subjectId}::uuid, ${w.window.kind}, ${w.window.start}::date, ${estimate}::bigint
            where ${estimate}::bigint <= ${w.limit}::bigint
            on conflict (subject_type, subject_id, "window", window_start) do update
              set reserved_tokens = usage_totals.reserved_tokens + excluded.reserved_tokens
              where usage_totals.total_tokens + usage_totals.reserved_tokens + excluded.reserved_tokens <= ${w.limit}::bigint
            returning total_tokens, reserved_tokens`),
        );
        const row = rows[0];
        if (row === undefined) {
          refused = w;
          throw new Error('quota'); // rolls back the windows reserved so far
        }
        out.push({ ...w, used: Number(row.total_tokens), reserved: Number(row.reserved_tokens) });
      }
      await tx.insert(reservations).values({ id, estimate, held: heldRows(limited), expiresAt: new Date(now + ttlMs) });
      return out;
    })
    .catch(async (err: unknown) => {
      if (refused === undefined) throw err;
      const current = await Promise.all(limited.map((w) => stateOf(db, w)));
      throw refusal(current.find((s) => s.window === refused!.window && s.subjectType === refused!.subjectType)!, estimate, now, current);
    });
  return { id, estimate, windows, held: limited, states };
}

/**
 * Claims a reservation inside a transaction: true when this caller is the one
 * to give it back (its row existed and is now gone), false when it already
 * was (it expired and releaseExpired took it).
 */
export async function claimReservation(tx: Db, id: string | null): Promise<boolean> {
  if (id === null) return false;
  const gone = await tx.delete(reservations).where(eq(reservations.id, id)).returning({ id: reservations.id });
  return gone.length > 0;
}

async function giveBack(tx: Db, held: HeldRow[], estimate: number): Promise<void> {
  for (const w of held) {
    await tx
      .update(usageTotals)
      .set({ reservedTokens: sql`greatest(0, ${usageTotals.reservedTokens} - ${estimate})` })
      .where(
        and(
          eq(usageTotals.subjectType, w.subjectType),
          eq(usageTotals.subjectId, w.subjectId),
          eq(usageTotals.window, w.window),
          eq(usageTotals.windowStart, w.windowStart),
        ),
      );
  }
}

/** Gives back a reservation that no upstream call used. */
export async function release(db: Db, reservation: Reservation): Promise<void> {
  if (reservation.id === null) return;
  await db.transaction(async (tx) => {
    if (await claimReservation(tx, reservation.id)) await giveBack(tx, heldRows(reservation.held), reservation.estimate);
  });
}

/**
 * Gives back reservations past their expiry (their process died, or a
 * request outlived every timeout). Safe to run on every instance at once:
 * each row is taken by one of them.
 */
export async function releaseExpired(db: Db, now: number, batch = 100): Promise<number> {
  return db.transaction(async (tx) => {
    const expired = await tx
      .select()
      .from(reservations)
      .where(lt(reservations.expiresAt, new Date(now)))
      .limit(batch)
      .for('update', { skipLocked: true });
    for (const r of expired) {
      await giveBack(tx, r.held as HeldRow[], r.estimate);
      await tx.delete(reservations).where(eq(reservations.id, r.id));
    }
    return expired.length;
  });
}
