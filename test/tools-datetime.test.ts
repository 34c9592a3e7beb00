import { describe, expect, it } from 'vitest';
import { currentDatetimeSchema } from '../src/tools/config.ts';
import { createCurrentDatetimeTool } from '../src/tools/current-datetime.ts';
import { ToolError, type ToolRunContext } from '../src/tools/types.ts';

function at(iso: string): ToolRunContext {
  return { signal: new AbortController().signal, now: () => Date.parse(iso) };
}

const utcTool = createCurrentDatetimeTool(currentDatetimeSchema.parse({}));

async function now(iso: string, timezone?: string, tool = utcTool): Promise<Record<string, unknown>> {
  const input = tool.input.parse(timezone === undefined ? {} : { timezone });
  return (await tool.run(input, at(iso))).result;
}

describe('current_datetime', () => {
  it('is described to the model and takes an optional zone', () => {
    expect(utcTool.name).toBe('current_datetime');
    expect(utcTool.description).toMatch(/Europe\/Berlin/);
    expect(utcTool.input.safeParse({}).success).toBe(true);
    expect(utcTool.input.safeParse({ timezone: 'Asia/Tokyo' }).success).toBe(true);
    expect(utcTool.input.safeParse({ timezone: '' }).success).toBe(false);
    expect(utcTool.input.safeParse({ timezone: 'x'.repeat(65) }).success).toBe(false);
  });

  it('tells the time in UTC by default, in whole seconds', async () => {
    expect(await now('2026-11-23T01:05:09.789Z')).toEqual({
      iso: '2026-11-23T01:05:09+00:00',
      timezone: 'UTC',
      weekday: 'Monday',
      date: '2026-11-23',
      time: '01:05:09',
      utc_offset: '+00:00',
      unix_ms: Date.parse('2026-11-23T01:05:09.789Z'),
    });
  });

  it('uses the configured default zone when the model names none', async () => {
    const berlin = createCurrentDatetimeTool(currentDatetimeSchema.parse({ default_timezone: 'Europe/Berlin' }));
    const result = await now('2026-11-23T01:05:09Z', undefined, berlin);
    expect(result.iso).toBe('2026-11-23T02:05:09+01:00');
    expect(result.timezone).toBe('Europe/Berlin');
    // The model's own zone still wins.
    expect((await now('2026-11-23T01:05:09Z', 'UTC', berlin)).iso).toBe('2026-11-23T01:05:09+00:00');
  });

  it('follows daylight saving time in Europe/Berlin', async () => {
    const winter = await now('2026-11-23T01:05:09Z', 'Europe/Berlin');
    expect(winter).toMatchObject({ iso: '2026-11-23T02:05:09+01:00', weekday: 'Monday', utc_offset: '+01:00' });
    const summer = await now('2026-07-01T12:00:00Z', 'Europe/Berlin');
    expect(summer).toMatchObject({ iso: '2026-07-01T14:00:00+02:00', weekday: 'Wednesday', utc_offset: '+02:00' });
  });

  it('gets the seconds around the switches right', async () => {
    // Spring: 02:00 local does not exist; the clock jumps from 01:59:59 to 03:00.
    expect((await now('2026-03-29T00:59:59Z', 'Europe/Berlin')).iso).toBe('2026-03-29T01:59:59+01:00');
    expect((await now('2026-03-29T01:00:00Z', 'Europe/Berlin')).iso).toBe('2026-03-29T03:00:00+02:00');
    // Autumn: 02:00 to 02:59 local happen twice, told apart by the offset.
    expect((await now('2026-10-25T00:59:59Z', 'Europe/Berlin')).iso).toBe('2026-10-25T02:59:59+02:00');
    expect((await now('2026-10-25T01:00:00Z', 'Europe/Berlin')).iso).toBe('2026-10-25T02:00:00+01:00');
  });

  it('handles offsets that are not whole hours and dates ahead of or behind UTC', async () => {
    expect(await now('2026-01-15T12:00:00Z', 'Pacific/Chatham')).toMatchObject({
      iso: '2026-01-16T01:45:00+13:45',
      weekday: 'Friday',
      date: '2026-01-16',
      utc_offset: '+13:45',
    });
    expect((await now('2026-07-15T12:00:00Z', 'Pacific/Chatham')).utc_offset).toBe('+12:45');
    expect(await now('2026-01-15T12:00:00Z', 'Asia/Kolkata')).toMatchObject({
      iso: '2026-01-15T17:30:00+05:30',
      timezone: 'Asia/Kolkata',
      weekday: 'Thursday',
    });
    expect((await now('2026-01-15T12:00:00Z', 'Asia/Kathmandu')).utc_offset).toBe('+05:45');
    expect((await now('2026-01-15T12:00:00Z', 'America/St_Johns')).iso).toBe('2026-01-15T08:30:00-03:30');
    expect(await now('2027-01-01T05:00:00Z', 'America/Los_Angeles')).toMatchObject({
      iso: '2026-12-31T21:00:00-08:00',
      weekday: 'Thursday',
    });
    expect((await now('2026-01-15T00:00:00Z', 'UTC')).time).toBe('00:00:00');
  });

  it('accepts a zone written in the wrong case', async () => {
    expect((await now('2026-01-15T12:00:00Z', 'europe/berlin')).timezone).toBe('Europe/Berlin');
  });

  it('names an unknown zone and shows what one looks like', async () => {
    for (const zone of ['Mars/Olympus', 'Berlin', 'CEST+1']) {
      const error = await now('2026-01-15T12:00:00Z', zone).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ToolError);
      expect((error as ToolError).message).toContain(`"${zone}"`);
      expect((error as ToolError).message).toContain('Europe/Berlin');
    }
  });

  it('refuses an unknown default zone when it is created', () => {
    expect(() => createCurrentDatetimeTool(currentDatetimeSchema.parse({ default_timezone: 'Nowhere/Special' }))).toThrow(
      /default_timezone.*"Nowhere\/Special"/,
    );
  });
});
