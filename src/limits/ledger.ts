import { sql } from 'drizzle-orm';
import { executePrepared, rowsOf, type Db } from '../db/client.ts';

/**
 * The usage_totals rows, read and written a whole batch at a time. Admission
 * locks and reads the rows it decides on (lockUsage); stored responses,
 * released and expired reservations and recovered responses add to them
 * (addUsage). Either way the rows are locked in one statement and in one
 * global order (usageKey), so writers on several instances never deadlock,
 * and a tenant's rows are locked once per batch rather than once per request.
 */

export interface UsageKey {
  subjectType: 'user' | 'organization';
  subjectId: string;
  window: 'day' | 'month';
  /** YYYY-MM-DD */
  windowStart: string;
}

export interface UsageRow extends UsageKey {
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
  requests: number;
  reservedTokens: number;
}

export const usageKey = (k: UsageKey) => `${k.subjectType}|${k.subjectId}|${k.window}|${k.windowStart}`;

interface RawRow {
  subject_type: UsageKey['subjectType'];
  subject_id: string;
  window: UsageKey['window'];
  window_start: string | Date;
  input_tokens: string | number;
  output_tokens: string | number;
  total_tokens: string | number;
  requests: string | number;
  reserved_tokens: string | number;
}

const dateOf = (v: string | Date) => (typeof v === 'string' ? v.slice(0, 10) : v.toISOString().slice(0, 10));

/**
 * Locks the rows of the given keys (creating the missing ones) in the global
 * order and returns their current values, keyed by usageKey. Must run inside
 * a transaction; the locks hold until it ends.
 */
export async function lockUsage(tx: Db, keys: UsageKey[]): Promise<Map<string, UsageRow>> {
  const unique = [...new Map(keys.map((k) => [usageKey(k), k])).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const out = new Map<string, UsageRow>();
  if (unique.length === 0) return out;
  const values = sql.join(
    unique.map(([, k]) => sql`(${k.subjectType}, ${k.subjectId}::uuid, ${k.window}, ${k.windowStart}::date)`),
    sql`, `,
  );
  // The no-op update takes the row lock of an existing row; rows are locked in the VALUES order.
  const rows = rowsOf<RawRow>(
    await tx.execute(sql`
      insert into usage_totals (subject_type, subject_id, "window", window_start)
      values ${values}
      on conflict (subject_type, subject_id, "window", window_start) do update set requests = usage_totals.requests
      returning subject_type, subject_id, "window", window_start, input_tokens, output_tokens, total_tokens, requests, reserved_tokens`),
  );
  for (const r of rows) {
    const row: UsageRow = {
      subjectType: r.subject_type,
      subjectId: r.subject_id,
      window: r.window,
      windowStart: dateOf(r.window_start),
      inputTokens: Number(r.input_tokens),
      outputTokens: Number(r.output_tokens),
      totalTokens: Number(r.total_tokens),
      requests: Number(r.requests),
      reservedTokens: Number(r.reserved_tokens),
    };
    out.set(usageKey(row), row);
  }
  return out;
}

/** What one finished response (or one given-back reservation) changes in one row. */
export interface UsageDelta extends UsageKey {
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
  requests: number;
  /** Negative: tokens of a reservation given back. */
  reservedTokens: number;
}

/**
 * Adds deltas to their rows (creating missing ones) in one statement: the
 * rows are summed per key first and written in the global order, so the
 * statement takes its row locks in the same order as every other writer.
 * The rows are sent as one JSON parameter, which costs far less to build and
 * send than a parameter per value.
 */
export async function addUsage(tx: Db, deltas: UsageDelta[]): Promise<void> {
  if (deltas.length === 0) return;
  const summed = new Map<string, UsageDelta>();
  for (const d of deltas) {
    const key = usageKey(d);
    const s = summed.get(key);
    if (s === undefined) summed.set(key, { ...d });
    else {
      s.inputTokens += d.inputTokens;
      s.outputTokens += d.outputTokens;
      s.totalTokens += d.totalTokens;
      s.requests += d.requests;
      s.reservedTokens += d.reservedTokens;
    }
  }
  const rows = [...summed.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, d]) => ({ st: d.subjectType, sid: d.subjectId, w: d.window, ws: d.windowStart, i: d.inputTokens, o: d.outputTokens, t: d.totalTokens, r: d.requests, res: d.reservedTokens }));
  // A negative reserved delta gives back a reservation, which was held in an existing row: it never lands on a new one.
  await executePrepared(tx, sql`
    insert into usage_totals (subject_type, subject_id, "window", window_start, input_tokens, output_tokens, total_tokens, requests, reserved_tokens)
    select st, sid, w, ws, i, o, t, r, res
    from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
      as x(st text, sid uuid, w text, ws date, i bigint, o bigint, t bigint, r int, res bigint)
    order by st, sid, w, ws
    on conflict (subject_type, subject_id, "window", window_start) do update set
      input_tokens = usage_totals.input_tokens + excluded.input_tokens,
      output_tokens = usage_totals.output_tokens + excluded.output_tokens,
      total_tokens = usage_totals.total_tokens + excluded.total_tokens,
      requests = usage_totals.requests + excluded.requests,
      reserved_tokens = greatest(0, usage_totals.reserved_tokens + excluded.reserved_tokens)`);
}
