/** UTC calendar windows (issue 5): a day from 00:00 UTC, a month from the 1st, 00:00 UTC. */

export type WindowKind = 'day' | 'month';

export interface Window {
  kind: WindowKind;
  /** The window's first day, YYYY-MM-DD (the usage_totals key). */
  start: string;
  /** When the next window starts, epoch ms. */
  resetAt: number;
}

export function windowsAt(now: number): { day: Window; month: Window } {
  const d = new Date(now);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  const day = d.getUTCDate();
  const iso = (t: number) => new Date(t).toISOString().slice(0, 10);
  const dayStart = Date.UTC(y, m, day);
  const monthStart = Date.UTC(y, m, 1);
  return {
    day: { kind: 'day', start: iso(dayStart), resetAt: Date.UTC(y, m, day + 1) },
    month: { kind: 'month', start: iso(monthStart), resetAt: Date.UTC(y, m + 1, 1) },
  };
}

/** Whole seconds until `at`, at least 1 (for retry-after). */
export const secondsUntil = (at: number, now: number) => Math.max(1, Math.ceil((at - now) / 1000));
