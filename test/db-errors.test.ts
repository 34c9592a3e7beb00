import { describe, expect, it } from 'vitest';
import { isDatabaseUnavailable, unavailableReason } from '../src/db/errors.ts';

/** As drizzle reports a driver's failure: its own error, the driver's as `cause`. */
const wrapped = (cause: Error) => Object.assign(new Error('Failed query: select 1 where x = $1'), { cause });

describe('database errors', () => {
  it('name why the database is unavailable without quoting the driver message', () => {
    const timeout = wrapped(new Error('Connection terminated due to connection timeout'));
    expect(unavailableReason(timeout)).toBe('connection terminated');
    expect(unavailableReason(wrapped(Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' })))).toBe('57014');
    expect(unavailableReason(wrapped(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })))).toBe('ECONNREFUSED');
    expect(isDatabaseUnavailable(timeout)).toBe(true);
  });

  it('say nothing of a bad statement or bad data', () => {
    const bad = wrapped(Object.assign(new Error('invalid input syntax for type uuid: "secret text"'), { code: '22P02' }));
    expect(unavailableReason(bad)).toBeUndefined();
    expect(isDatabaseUnavailable(bad)).toBe(false);
    expect(unavailableReason(new Error('plain'))).toBeUndefined();
  });
});
