import { randomUUID } from 'node:crypto';
import { and, eq, inArray, lt, sql } from 'drizzle-orm';
import type { Limits, Principal } from '../auth/key-auth.ts';
import type { Db } from '../db/client.ts';
import { reservations, usageTotals } from '../db/schema.ts';
import { ApiError } from '../http/api-error.ts';
import { addUsage, lockUsage, usageKey, type UsageDelta, type UsageKey, type UsageRow } from './ledger.ts';
import { secondsUntil, windowsAt, type Window, type WindowKind } from './windows.ts';

/**
 * Token quotas that hold under any concurrency and any number of instances.
 * Admission reserves the request's estimate in every window that has a
 * limit. Admissions are written in batches (responses/writer.ts): a batch
 * locks every usage row it needs in one global order, decides its requests
 * one after the other against the locked values, and commits once, so a
 * window can never hold more than its limit in used + reserved tokens, and a
 * busy tenant pays one row lock per batch instead of one per request. The
 * response's real usage replaces the estimate when it is stored, or the
 * estimate is given back when no upstream was called.
 *
 * The bound: for every window, used ≤ limit + Σ max(0, actual − estimate)
 * over the requests it admitted. The estimate is the prompt counted with
 * o200k_base × INPUT_MARGIN + FRAMING_MARGIN, plus the whole output budget
 * (the upstream's max_tokens), so the slack is zero unless an upstream counts
 * a prompt more than 25% + 64 tokens above our tokenizer, or reports more
 * output than the max_tokens it was sent.
 *
 * A response that makes several model calls (a tool loop) reserves each call
 * before it is made (extendReservation), so the bound holds per call: the
 * sum runs over every call of every admitted request.
 *
 * Each reservation is also a row with an expiry, deleted by whoever gives it
 * back (the stored response, a release, recovery of a dead instance's
 * response, or expiry), so it is given back exactly once.
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

/** The x-ratelimit-*-tokens headers for the tightest window: the one with the fewest tokens left. */
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

/** A usage row as a reservation's `held` list stores it. */
export type HeldRow = UsageKey;

export const heldRows = (held: WindowLimit[]): HeldRow[] =>
  held.map((w) => ({ subjectType: w.subjectType, subjectId: w.subjectId, window: w.window.kind, windowStart: w.window.start }));

/** A request waiting for admission: its estimate checked against every limited window at once. */
export interface AdmissionAsk {
  /** The reservation's row id, made by the caller. */
  id: string;
  estimate: number;
  windows: { day: Window; month: Window };
  limited: WindowLimit[];
  expiresAt: Date;
  now: number;
}

export type AdmissionResult = { admitted: true; reservation: Reservation } | { admitted: false; refusal: ApiError };

/**
 * Decides one ask against rows locked by the batch (ledger.lockUsage), in
 * arrival order, and holds its estimate in them when it fits. The rows stay
 * locked until the batch commits, so two batches (or two instances) can never
 * both spend the same tokens: the bound above holds as it did with one
 * transaction per request.
 */
export function decideAdmission(rows: Map<string, UsageRow>, ask: AdmissionAsk, changed: Set<string>): AdmissionResult {
  const stateOfRow = (w: WindowLimit): WindowState => {
    const row = rows.get(usageKey(heldRows([w])[0]!))!;
    return { ...w, used: row.totalTokens, reserved: row.reservedTokens };
  };
  const states = ask.limited.map(stateOfRow);
  const over = states.find((s) => ask.estimate > s.limit - s.used - s.reserved);
  if (over !== undefined) return { admitted: false, refusal: refusal(over, ask.estimate, ask.now, states) };
  for (const w of heldRows(ask.limited)) {
    const key = usageKey(w);
    rows.get(key)!.reservedTokens += ask.estimate;
    changed.add(key);
  }
  return {
    admitted: true,
    reservation: { id: ask.id, estimate: ask.estimate, windows: ask.windows, held: ask.limited, states: ask.limited.map(stateOfRow) },
  };
}

/** The four rows a response counts in (the user's and the organisation's day and month), with its usage. */
export function usageDeltas(
  ids: { userId: string; organizationId: string },
  windows: { day: { start: string }; month: { start: string } },
  usage: { inputTokens: number; outputTokens: number; totalTokens: number },
  givenBack: { held: HeldRow[]; estimate: number } | null,
): UsageDelta[] {
  const out: UsageDelta[] = [];
  for (const subjectType of ['user', 'organization'] as const) {
    for (const window of ['day', 'month'] as const) {
      const key: UsageKey = {
        subjectType,
        subjectId: subjectType === 'user' ? ids.userId : ids.organizationId,
        window,
        windowStart: windows[window].start,
      };
      const held = givenBack !== null && givenBack.held.some((h) => usageKey(h) === usageKey(key));
      out.push({ ...key, ...usage, requests: 1, reservedTokens: held ? -givenBack.estimate : 0 });
    }
  }
  return out;
}

/** The deltas that give a reservation back without counting any usage. */
export const releaseDeltas = (held: HeldRow[], estimate: number): UsageDelta[] =>
  held.map((h) => ({ ...h, inputTokens: 0, outputTokens: 0, totalTokens: 0, requests: 0, reservedTokens: -estimate }));

/**
 * Claims reservations inside a transaction: the ids whose rows this caller
 * deleted, so it is the one to give them back (each is given back once: by
 * the stored response, a release, recovery, or expiry).
 */
export async function claimReservations(tx: Db, ids: string[]): Promise<Map<string, { held: HeldRow[]; estimate: number }>> {
  const out = new Map<string, { held: HeldRow[]; estimate: number }>();
  if (ids.length === 0) return out;
  const gone = await tx
    .delete(reservations)
    .where(inArray(reservations.id, ids))
    .returning({ id: reservations.id, held: reservations.held, estimate: reservations.estimate });
  for (const g of gone) out.set(g.id, { held: g.held as HeldRow[], estimate: Number(g.estimate) });
  return out;
}

/**
 * Gives back reservations past their expiry (a request outlived every
 * timeout, or its process died before recovery reached it). Safe to run on
 * every instance at once: each row is taken by one of them.
 */
export async function releaseExpired(db: Db, now: number, batch = 100): Promise<number> {
  return db.transaction(async (tx) => {
    const expired = await tx
      .select({ id: reservations.id })
      .from(reservations)
      .where(lt(reservations.expiresAt, new Date(now)))
      .limit(batch)
      .for('update', { skipLocked: true });
    const claimed = await claimReservations(
      tx,
      expired.map((r) => r.id),
    );
    await addUsage(
      tx,
      [...claimed.values()].flatMap((c) => releaseDeltas(c.held, c.estimate)),
    );
    return claimed.size;
  });
}

/**
 * Grows a held reservation by `extra` tokens before another model call of the
 * same response (a tool loop makes several), or refuses when a window cannot
 * hold it. Each call is reserved before it is made, so the bound above holds
 * per call: a response never spends tokens no window had room for. Runs in
 * its own transaction with the usage rows locked in the global order.
 */
export async function extendReservation(db: Db, reservation: Reservation, extra: number, now: number): Promise<boolean> {
  if (reservation.id === null || extra <= 0) return true;
  const id = reservation.id;
  return db.transaction(async (tx) => {
    const [row] = await tx.select({ id: reservations.id }).from(reservations).where(eq(reservations.id, id)).for('update');
    if (row === undefined) return false; // expired and given back: nothing left to grow
    const rows = await lockUsage(tx, heldRows(reservation.held));
    const fits = reservation.held.every((w) => {
      const r = rows.get(usageKey(heldRows([w])[0]!));
      return r !== undefined && extra <= w.limit - r.totalTokens - r.reservedTokens;
    });
    if (!fits) return false;
    await addUsage(tx, releaseDeltas(heldRows(reservation.held), -extra));
    await tx
      .update(reservations)
      .set({ estimate: sql`${reservations.estimate} + ${extra}`, expiresAt: new Date(now + EXTENSION_TTL_MS) })
      .where(eq(reservations.id, id));
    return true;
  });
}

/** How long a grown reservation is held from its last growth: a step's call and tools, with room to spare. */
const EXTENSION_TTL_MS = 30 * 60_000;

/**
 * Reserves `estimate` tokens for a call made outside a request (a
 * conversation's summary), in its own transaction, with the same rule as
 * admission: null when a window cannot hold it. The reservation is given
 * back like a response's (claimReservations), or by expiry after `ttlMs`.
 */
export async function reserveTokens(db: Db, principal: Principal, estimate: number, now: number, ttlMs: number): Promise<Reservation | null> {
  const windows = windowsAt(now);
  const limited = limitedWindows(principal, windows);
  if (limited.length === 0) return { id: null, estimate, windows, held: [], states: [] };
  const id = randomUUID();
  return db.transaction(async (tx) => {
    const rows = await lockUsage(tx, heldRows(limited));
    const result = decideAdmission(rows, { id, estimate, windows, limited, expiresAt: new Date(now + ttlMs), now }, new Set());
    if (!result.admitted) return null;
    await addUsage(tx, releaseDeltas(heldRows(limited), -estimate));
    await tx.insert(reservations).values({ id, estimate, held: heldRows(limited), expiresAt: new Date(now + ttlMs) });
    return result.reservation;
  });
}
