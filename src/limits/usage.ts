import { and, eq, inArray, or } from 'drizzle-orm';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { usageTotals } from '../db/schema.ts';
import type { Window } from './windows.ts';

export const usageLine = z
  .object({
    input_tokens: z.number().int(),
    output_tokens: z.number().int(),
    total_tokens: z.number().int(),
    requests: z.number().int(),
    reserved_tokens: z.number().int().describe('Held by requests in flight'),
    limit: z.number().int().nullable().describe('null: no limit'),
    remaining: z.number().int().nullable(),
  })
  .meta({ id: 'UsageLine' });

export const usageWindow = (subjects: readonly ('user' | 'organization')[]) =>
  z.object({
    start: z.string().describe('First day of the window (UTC), YYYY-MM-DD'),
    resets_at: z.string().describe('ISO 8601'),
    ...Object.fromEntries(subjects.map((s) => [s, usageLine])),
  });

export type UsageLine = z.infer<typeof usageLine>;

export interface Subject {
  type: 'user' | 'organization';
  id: string;
  limits: { day: number | null; month: number | null };
}

/** Usage and limits of the given subjects for the current UTC day and month, in one query. */
export async function usageReport(db: Db, subjects: Subject[], windows: { day: Window; month: Window }) {
  const rows = await db
    .select()
    .from(usageTotals)
    .where(
      and(
        inArray(
          usageTotals.subjectId,
          subjects.map((s) => s.id),
        ),
        or(
          and(eq(usageTotals.window, 'day'), eq(usageTotals.windowStart, windows.day.start)),
          and(eq(usageTotals.window, 'month'), eq(usageTotals.windowStart, windows.month.start)),
        ),
      ),
    );
  const line = (s: Subject, w: Window): UsageLine => {
    const r = rows.find((x) => x.subjectType === s.type && x.subjectId === s.id && x.window === w.kind);
    const used = Number(r?.totalTokens ?? 0);
    const reserved = Number(r?.reservedTokens ?? 0);
    const limit = s.limits[w.kind];
    return {
      input_tokens: Number(r?.inputTokens ?? 0),
      output_tokens: Number(r?.outputTokens ?? 0),
      total_tokens: used,
      requests: r?.requests ?? 0,
      reserved_tokens: reserved,
      limit,
      remaining: limit === null ? null : Math.max(0, limit - used - reserved),
    };
  };
  const window = (w: Window) => ({
    start: w.start,
    resets_at: new Date(w.resetAt).toISOString(),
    ...Object.fromEntries(subjects.map((s) => [s.type, line(s, w)])),
  });
  return { day: window(windows.day), month: window(windows.month) };
}
