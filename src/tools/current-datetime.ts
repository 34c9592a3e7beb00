import { z } from 'zod';
import type { CurrentDatetimeConfig } from './config.ts';
import { ToolError, type Tool } from './types.ts';

/**
 * The `current_datetime` tool: the server's clock, read in an IANA time zone.
 * Models do not know the date; this is how they learn it. Time zone rules
 * (offsets, daylight saving) come from the ICU data built into Node.
 */

const DESCRIPTION = [
  'Returns the current date and time, optionally in a time zone, as {iso, timezone, weekday, date, time, utc_offset, unix_ms}.',
  'Use it whenever the answer depends on today\'s date or the current time.',
  'Time zones are IANA names such as "Europe/Berlin", "America/New_York", "Asia/Kolkata" or "UTC".',
].join(' ');

const inputSchema = z.object({
  timezone: z
    .string()
    .min(1)
    .max(64)
    .optional()
    .describe('An IANA time zone name such as "Europe/Berlin"; the server\'s default when left out.'),
});

export type CurrentDatetimeInput = z.infer<typeof inputSchema>;

/** The wall-clock fields of one instant in one zone. */
interface LocalTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  weekday: string;
}

export function createCurrentDatetimeTool(config: CurrentDatetimeConfig): Tool<CurrentDatetimeInput> {
  // A bad default is the operator's mistake: say so at start, not on every call.
  if (!formatterFor(config.default_timezone)) {
    throw new Error(
      `tools.current_datetime.default_timezone: unknown time zone "${config.default_timezone}" (use an IANA name such as "Europe/Berlin" or "UTC")`,
    );
  }
  return {
    name: 'current_datetime',
    description: DESCRIPTION,
    input: inputSchema,
    timeoutMs: 1_000,
    async run(input, context) {
      const zone = input.timezone?.trim() || config.default_timezone;
      const formatter = formatterFor(zone);
      if (!formatter) {
        throw new ToolError(
          `unknown time zone "${zone}": use an IANA name such as "Europe/Berlin", "America/New_York" or "UTC"`,
        );
      }
      return { result: describeInstant(context.now(), formatter, zone) };
    },
  };
}

/** Everything the tool returns for one instant in one zone. */
function describeInstant(unixMs: number, formatter: Intl.DateTimeFormat, zone: string): Record<string, unknown> {
  // Whole seconds: the result shows no fractions, and the offset below must
  // compare like with like.
  const instant = Math.floor(unixMs / 1000) * 1000;
  const local = localTime(formatter, instant);
  const asUtc = Date.UTC(local.year, local.month - 1, local.day, local.hour, local.minute, local.second);
  // The zone's offset at this instant is how far its wall clock is ahead of
  // UTC; reading it from the wall clock keeps daylight-saving edges and odd
  // offsets (+05:45, +13:45) exact without any table of our own.
  const offset = formatOffset(Math.round((asUtc - instant) / 60_000));
  const date = `${pad(local.year, 4)}-${pad(local.month)}-${pad(local.day)}`;
  const time = `${pad(local.hour)}:${pad(local.minute)}:${pad(local.second)}`;
  return {
    iso: `${date}T${time}${offset}`,
    timezone: canonicalName(formatter, zone),
    weekday: local.weekday,
    date,
    time,
    utc_offset: offset,
    unix_ms: unixMs,
  };
}

/** A formatter for the zone, or undefined when Intl does not know it. */
function formatterFor(zone: string): Intl.DateTimeFormat | undefined {
  try {
    return new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      // h23 so that midnight is 00, never 24.
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
      weekday: 'long',
    });
  } catch {
    return undefined;
  }
}

function localTime(formatter: Intl.DateTimeFormat, instant: number): LocalTime {
  const parts = new Map(formatter.formatToParts(instant).map((part) => [part.type, part.value]));
  const field = (type: Intl.DateTimeFormatPartTypes) => Number(parts.get(type));
  return {
    year: field('year'),
    month: field('month'),
    day: field('day'),
    hour: field('hour'),
    minute: field('minute'),
    second: field('second'),
    weekday: parts.get('weekday') ?? '',
  };
}

/**
 * The zone's name as Intl spells it when the model only got the case wrong
 * ("europe/berlin"); otherwise the model's own spelling, since Intl turns some
 * current names into older aliases (Asia/Kolkata into Asia/Calcutta).
 */
function canonicalName(formatter: Intl.DateTimeFormat, zone: string): string {
  const resolved = formatter.resolvedOptions().timeZone;
  return resolved.toLowerCase() === zone.toLowerCase() ? resolved : zone;
}

function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

function pad(value: number, width = 2): string {
  return String(value).padStart(width, '0');
}
