// Whether an answer used what its tool returned. A model rephrases: it writes
// 397,80 € for 397.8, "donderdag" for Thursday, a summary in German of an
// English page. Each check therefore looks for a normalised form of the
// result rather than the raw JSON, and stays strict enough that an answer
// made up without the tool rarely passes by luck.

export type ToolName = 'calculator' | 'current_datetime' | 'web_search' | 'web_fetch';

/** The case's own check, or one that follows from the tool. */
export type AnswerCheck = { kind: 'contains_result' } | { kind: 'regex'; pattern: string };

/** Lower case, one space between words, no punctuation: how answers and results are compared. */
export function words(text: string): string {
  return text
    .toLocaleLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim();
}

/** Whitespace of any kind (no-break and thin spaces too) as one plain space, case folded. */
const flat = (text: string) => text.toLocaleLowerCase().replace(/[\s\u00a0\u202f]+/gu, ' ');

/**
 * Whether `answer` passes `check` against the outputs (JSON strings) of the
 * tool's completed calls; `lang` is the language the answer is likely in.
 */
export function answerUsesResult(tool: ToolName, outputs: string[], answer: string, check: AnswerCheck, lang: string): boolean {
  if (check.kind === 'regex') return new RegExp(check.pattern, 'iu').test(answer);
  return outputs.some((raw) => {
    const output = parseObject(raw);
    if (output === undefined) return false;
    switch (tool) {
      case 'calculator':
        return usesNumber(output.result, answer);
      case 'current_datetime':
        return datetimeForms(output, lang).some((form) => flat(answer).includes(form));
      case 'web_search':
        return usesSearch(output, answer);
      case 'web_fetch':
        return usesPage(output, answer);
    }
  });
}

function parseObject(raw: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(raw);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

// ---- calculator -------------------------------------------------------------

/**
 * Numbers as people write them: with grouped thousands (1,234.5, 1.234,5,
 * 1 234,5, 1'234.5) and plain (1234.5, 1234,5). Both are collected, since
 * "7 437,5" may be one number or two; a group of three digits must end the
 * whole part, or "26.0975" would be read as 26.097 and 5.
 */
const GROUPED = /-?\d{1,3}(?:[ .,'\u00a0\u202f]\d{3})+(?!\d)(?:[.,]\d+)?/gu;
const PLAIN = /-?\d+(?:[.,]\d+)?/gu;

const numbersIn = (text: string) => [...(text.match(GROUPED) ?? []), ...(text.match(PLAIN) ?? [])];

/** The values a written number may stand for, with the number of decimals it shows (how far it was rounded). */
export function readings(written: string): { value: number; decimals: number }[] {
  const plain = written.replace(/[ '\u00a0\u202f]/gu, '');
  const out: { value: number; decimals: number }[] = [];
  const add = (digits: string, decimals: number) => {
    const value = Number(digits);
    if (Number.isFinite(value)) out.push({ value, decimals });
  };
  const dots = (plain.match(/\./g) ?? []).length;
  const commas = (plain.match(/,/g) ?? []).length;
  if (dots > 0 && commas > 0) {
    // Both kinds: the last one written is the decimal mark.
    const mark = plain.lastIndexOf('.') > plain.lastIndexOf(',') ? '.' : ',';
    const [whole, fraction = ''] = plain.split(mark);
    add(`${whole!.replace(/[.,]/g, '')}.${fraction}`, fraction.length);
  } else if (dots + commas === 0) {
    add(plain, 0);
  } else {
    const mark = dots > 0 ? '.' : ',';
    const parts = plain.split(mark);
    // Several marks of one kind can only group thousands.
    if (parts.length > 2) add(parts.join(''), 0);
    else {
      add(`${parts[0]}.${parts[1]}`, parts[1]!.length);
      // "1.234" or "1,234": a decimal in one language, a thousand in another.
      if (parts[1]!.length === 3) add(parts.join(''), 0);
    }
  }
  return out;
}

/**
 * The calculator's result (a number, or text such as "26.09 mi" that starts
 * with one) appears in the answer, rounded at most to what the answer shows
 * and within 1% of it: 397.8 matches "397,80" and "398" but 0.4 never "0".
 */
export function usesNumber(result: unknown, answer: string): boolean {
  const target = typeof result === 'number' ? result : typeof result === 'string' ? readings(result.match(PLAIN)?.[0] ?? '')[0]?.value : undefined;
  if (target === undefined) return false;
  for (const written of numbersIn(answer)) {
    for (const { value, decimals } of readings(written)) {
      const off = Math.abs(value - target);
      if (off === 0 || (off <= 0.5 * 10 ** -decimals + 1e-9 && off <= 0.01 * Math.abs(target))) return true;
    }
  }
  return false;
}

// ---- current_datetime -------------------------------------------------------

/**
 * The ways an answer may state the tool's date or time: the weekday and the
 * day with its month name in English and in the case's language, the date in
 * numbers (ISO, European and US order), and the time of day.
 */
export function datetimeForms(output: Record<string, unknown>, lang: string): string[] {
  const forms = new Set<string>();
  const { weekday, date, time, unix_ms: at, timezone } = output;
  if (typeof weekday === 'string') forms.add(weekday);
  if (typeof date === 'string') {
    const [y, m, d] = date.split('-');
    if (y !== undefined && m !== undefined && d !== undefined) {
      forms.add(date);
      const day = String(Number(d));
      const month = String(Number(m));
      for (const sep of ['.', '/', '-']) {
        forms.add(`${d}${sep}${m}${sep}${y}`);
        forms.add(`${day}${sep}${month}${sep}${y}`);
      }
      forms.add(`${month}/${day}/${y}`);
    }
  }
  if (typeof time === 'string') {
    const [h, min] = time.split(':');
    if (h !== undefined && min !== undefined) {
      for (const hour of new Set([h, String(Number(h))])) for (const sep of [':', '.', 'h', ' h ']) forms.add(`${hour}${sep}${min}`);
    }
  }
  if (typeof at === 'number' && typeof timezone === 'string') {
    for (const locale of new Set(['en', 'en-GB', lang])) {
      try {
        forms.add(new Intl.DateTimeFormat(locale, { timeZone: timezone, weekday: 'long' }).format(at));
        forms.add(new Intl.DateTimeFormat(locale, { timeZone: timezone, day: 'numeric', month: 'long' }).format(at));
      } catch {
        // An unknown locale or zone: the forms above still count.
      }
    }
  }
  return [...forms].map(flat).filter((form) => form.length > 0);
}

// ---- web_search and web_fetch ------------------------------------------------

/** The answer names one of the results: its title, or its URL (with or without the scheme and the last slash). */
function usesSearch(output: Record<string, unknown>, answer: string): boolean {
  const results = Array.isArray(output.results) ? (output.results as unknown[]) : [];
  const text = flat(answer);
  return results.some((r) => {
    if (typeof r !== 'object' || r === null) return false;
    const { title, url } = r as { title?: unknown; url?: unknown };
    if (typeof title === 'string' && title.length >= 4 && text.includes(flat(title))) return true;
    if (typeof url !== 'string') return false;
    const bare = url.replace(/^https?:\/\//, '').replace(/\/$/, '').toLocaleLowerCase();
    return bare.length > 0 && text.includes(bare);
  });
}

/** How many words in a row the answer must share with the page for it to count as quoting it. */
const PHRASE_WORDS = 5;

/** The answer holds the page's title or a run of its words. */
function usesPage(output: Record<string, unknown>, answer: string): boolean {
  const said = ` ${words(answer)} `;
  if (typeof output.title === 'string' && words(output.title).length >= 8 && said.includes(` ${words(output.title)} `)) return true;
  const page = typeof output.content === 'string' ? words(output.content).split(' ') : [];
  for (let i = 0; i + PHRASE_WORDS <= page.length; i++) {
    if (said.includes(` ${page.slice(i, i + PHRASE_WORDS).join(' ')} `)) return true;
  }
  return false;
}
