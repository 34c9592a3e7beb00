import { Writable } from 'node:stream';
import { sql } from 'drizzle-orm';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loggerOptions } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import type { Database } from '../src/db/client.ts';
import { redactUrl } from '../src/http/log.ts';
import { openTestDatabase } from './helpers/db.ts';

let database: Database;
beforeAll(async () => {
  database = await openTestDatabase();
});
afterAll(async () => database.close());

function capture() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const log = pino(loggerOptions(loadConfig({ LOG_LEVEL: 'debug' })), sink);
  return { log, entries: () => lines.map((l) => JSON.parse(l) as Record<string, Record<string, unknown>>), text: () => lines.join('\n') };
}

describe('a database error in the log', () => {
  it('keeps the kind of a data exception but not the value the driver quotes', async () => {
    const value = 'not-a-uuid-7d3f9a';
    const err = await database.db.execute(sql`select ${value}::uuid`).catch((e: unknown) => e);
    expect((err as { cause: Error }).cause.message).toContain(value);
    const { log, entries, text } = capture();
    log.error({ err }, 'failed');
    log.error({ error: err }, 'failed under another name');
    expect(text()).not.toContain(value);
    const [first, second] = entries();
    expect(first!.err).toMatchObject({ type: 'DrizzleQueryError', code: '22P02', query: 'select $1::uuid' });
    expect(first!.err!.message).toBe('Failed query: select $1::uuid: invalid input syntax for type uuid: …');
    expect(first!.err).not.toHaveProperty('where');
    expect(second!.error).toMatchObject({ type: 'DrizzleQueryError', code: '22P02' });
  });

  it('leaves other errors as they are', () => {
    const { log, entries } = capture();
    log.error({ err: Object.assign(new Error('upstream timed out'), { code: 'ETIMEDOUT', model: 'm' }) }, 'failed');
    expect(entries()[0]!.err).toMatchObject({ type: 'Error', message: 'upstream timed out', code: 'ETIMEDOUT', model: 'm' });
  });
});

describe('a URL in the log', () => {
  const key = 'eugpt_0123456789ABCDEFGHIJabcdefghij0123456789abc';

  it.each([
    [`/v1/models?api_key=${key}`, '/v1/models?api_key=[redacted]'],
    ['/v1/models?access_token=abc&limit=5', '/v1/models?access_token=[redacted]&limit=5'],
    ['/v1/models?X-Api-Key=abc', '/v1/models?X-Api-Key=[redacted]'],
    [`/v1/models?q=${key}`, '/v1/models?q=[redacted]'],
    [`/v1/${key}/models`, '/v1/[redacted]/models'],
    [`/v1/models?q=${key.replace('_', '%5F')}`, '/v1/models?q=[redacted]'],
    [`/v1/models?q=${key.replace('e', '%65')}`, '/v1/models?q=[redacted]'],
    ['/v1/responses?limit=20&order=desc', '/v1/responses?limit=20&order=desc'],
    ['/v1/responses/%E0%A4%A', '/v1/responses/%E0%A4%A'],
  ])('%s is logged as %s', (url, logged) => {
    expect(redactUrl(url)).toBe(logged);
  });
});
