import { lt, sql } from 'drizzle-orm';
import type { Principal } from '../auth/key-auth.ts';
import { rowsOf, type Db } from '../db/client.ts';
import { rateWindows } from '../db/schema.ts';
import { ApiError } from '../http/api-error.ts';
import { secondsUntil } from './windows.ts';

/**
 * Requests per minute per API key, when the plan sets `requests_per_minute`:
 * a counter row per key and UTC minute, incremented only while under the
 * limit, in the shared database, so every instance counts the same requests.
 */
export async function checkRequestRate(db: Db, principal: Principal, now: number): Promise<void> {
  const limit = principal.policy.requestsPerMinute;
  if (limit === null) return;
  const minute = Math.floor(now / 60_000) * 60_000;
  const result = await db.execute(sql`
    insert into rate_windows (key_id, window_start, count)
    values (${principal.keyId}::uuid, ${new Date(minute).toISOString()}::timestamptz, 1)
    on conflict (key_id, window_start) do update
      set count = rate_windows.count + 1
      where rate_windows.count < ${limit}
    returning count`);
  if (rowsOf(result).length === 0) {
    const retry = secondsUntil(minute + 60_000, now);
    throw new ApiError(429, 'rate_limit_error', 'rate_limited', `at most ${limit} requests per minute per API key; retry in ${retry} s`, null, {
      'retry-after': String(retry),
    });
  }
}

/** Drops counters of past minutes; run now and then. */
export async function pruneRateWindows(db: Db, now: number): Promise<void> {
  await db.delete(rateWindows).where(lt(rateWindows.windowStart, new Date(now - 5 * 60_000)));
}
