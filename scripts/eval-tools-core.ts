// The tools evaluation without its setting: load the labelled prompts, send
// each to a running server's POST /v1/responses, score what came back, and
// print the scores. `npm run eval:tools` (scripts/eval-tools.ts) and its test
// build the server around it.
import { readFileSync } from 'node:fs';
import { answerUsesResult, type AnswerCheck, type ToolName } from './eval-tools-checks.ts';

export type { ToolName } from './eval-tools-checks.ts';
export const TOOLS: ToolName[] = ['calculator', 'current_datetime', 'web_search', 'web_fetch'];

/** One labelled prompt of test/fixtures/tools-eval.json. */
export interface EvalCase {
  id: string;
  lang: string;
  prompt: string;
  expect_tool: ToolName | null;
  /** The call the fake model makes in fake mode; `arguments` may hold `{{port}}`, the fake web's port. */
  fake_call?: { name: ToolName; arguments: Record<string, unknown> };
  answer_check?: AnswerCheck;
}

export const FIXTURE = new URL('../test/fixtures/tools-eval.json', import.meta.url);

/** Reads the set and refuses one that cannot be scored, naming every problem. */
export function loadCases(path: URL | string = FIXTURE): EvalCase[] {
  const raw: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (!Array.isArray(raw)) throw new Error('the eval set must be a JSON array');
  const problems: string[] = [];
  const ids = new Set<string>();
  const cases = raw as EvalCase[];
  cases.forEach((c, i) => {
    const at = `case ${i} (${String(c.id)})`;
    if (typeof c.id !== 'string' || c.id === '') problems.push(`${at}: no id`);
    else if (ids.has(c.id)) problems.push(`${at}: duplicate id`);
    ids.add(c.id);
    if (typeof c.lang !== 'string' || !/^[a-z]{2}$/.test(c.lang)) problems.push(`${at}: lang must be a two-letter code`);
    if (typeof c.prompt !== 'string' || c.prompt.trim() === '') problems.push(`${at}: no prompt`);
    if (c.expect_tool !== null && !TOOLS.includes(c.expect_tool)) problems.push(`${at}: expect_tool must be one of ${TOOLS.join(', ')} or null`);
    if (c.expect_tool === null && c.fake_call !== undefined) problems.push(`${at}: a case that needs no tool has no fake_call`);
    const args: unknown = c.fake_call?.arguments;
    if (c.expect_tool !== null && (c.fake_call?.name !== c.expect_tool || typeof args !== 'object' || args === null || Array.isArray(args))) {
      problems.push(`${at}: fake_call must call ${c.expect_tool} with an arguments object`);
    }
    const check = c.answer_check;
    if (check !== undefined) {
      if (c.expect_tool === null) problems.push(`${at}: a case that needs no tool has no answer_check`);
      if (check.kind === 'regex') {
        try {
          new RegExp(check.pattern, 'iu');
        } catch {
          problems.push(`${at}: answer_check.pattern is not a regular expression`);
        }
      } else if (check.kind !== 'contains_result') problems.push(`${at}: answer_check.kind must be contains_result or regex`);
    }
  });
  if (problems.length > 0) throw new Error(`the eval set has problems:\n${problems.join('\n')}`);
  return cases;
}

/** The set's spread: per expected tool (`none` for no tool) and per language. */
export function coverage(cases: EvalCase[]): { byTool: Record<ToolName | 'none', number>; languages: string[] } {
  const byTool = { calculator: 0, current_datetime: 0, web_search: 0, web_fetch: 0, none: 0 };
  for (const c of cases) byTool[c.expect_tool ?? 'none']++;
  return { byTool, languages: [...new Set(cases.map((c) => c.lang))].sort() };
}

// ---- running a case ------------------------------------------------------------

export type Mode = 'fake' | 'real';

export interface Target {
  /** The server's origin, e.g. http://127.0.0.1:8080. */
  baseUrl: string;
  key: string;
  /** The `model` of each request; the router chooses when left out. */
  model?: string | undefined;
  /** The built-ins named in each request (the request then gets exactly these). */
  tools: ToolName[];
  /** Replace `{{name}}` in prompts and fake calls. */
  vars: Record<string, string>;
  timeoutMs: number;
}

/** What one response came to, read from its event stream. */
export interface Observation {
  /** Set when there was no complete response: the HTTP error or the transport failure. */
  error?: string;
  status?: string;
  calls: { name: string; status: string; output: string }[];
  text: string;
  /** Model calls made, counted from the stream: a new step begins with the first item after tool results. */
  steps: number;
  latencyMs: number;
}

const fill = (text: string, vars: Record<string, string>) => text.replace(/\{\{(\w+)\}\}/g, (whole, name: string) => vars[name] ?? whole);

/**
 * The text sent for a case. In fake mode the fake model reads `[[call:…]]`
 * at the end of the prompt and makes that call; a case that needs no tool is
 * sent as written, so the fake answers in plain text.
 */
export function promptOf(c: EvalCase, mode: Mode, vars: Record<string, string>): string {
  const prompt = fill(c.prompt, vars);
  if (mode === 'real' || c.fake_call === undefined) return prompt;
  return `${prompt} [[call:${c.fake_call.name}:${fill(JSON.stringify(c.fake_call.arguments), vars)}]]`;
}

interface StreamEvent {
  type: string;
  item?: { type?: string; name?: string; status?: string; output?: string };
  response?: { status?: string; output_text?: string; error?: { message?: string } | null };
  message?: string;
}

/** The JSON events of a `text/event-stream` body (keep-alive comments and other lines are skipped). */
export function eventsOf(body: string): StreamEvent[] {
  const events: StreamEvent[] = [];
  for (const frame of body.split(/\r?\n\r?\n/)) {
    const data = frame
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).trimStart())
      .join('\n');
    if (data === '' || data === '[DONE]') continue;
    events.push(JSON.parse(data) as StreamEvent);
  }
  return events;
}

/** Reads a finished stream into an observation. */
export function observe(events: StreamEvent[], latencyMs: number): Observation {
  const calls: Observation['calls'] = [];
  let steps = 1;
  let afterTools = false;
  let status: string | undefined;
  let text = '';
  let error: string | undefined;
  for (const e of events) {
    if (e.type === 'response.output_item.added' && afterTools) {
      steps++;
      afterTools = false;
    } else if (e.type === 'response.output_item.done' && e.item?.type === 'function_call') {
      calls.push({ name: e.item.name ?? '', status: e.item.status ?? '', output: e.item.output ?? '' });
      afterTools = true;
    } else if (e.type === 'response.completed') {
      status = e.response?.status;
      text = e.response?.output_text ?? '';
    } else if (e.type === 'error') {
      error = `stream ended with an error: ${e.message ?? 'no message'}`;
    }
  }
  if (status === undefined) error ??= 'the stream ended without response.completed';
  return { ...(error === undefined ? {} : { error }), ...(status === undefined ? {} : { status }), calls, text, steps, latencyMs };
}

/** Sends one case as a streamed request and reads the whole answer. */
export async function runCase(target: Target, c: EvalCase, mode: Mode): Promise<Observation> {
  const started = performance.now();
  const failed = (error: string): Observation => ({ error, calls: [], text: '', steps: 0, latencyMs: performance.now() - started });
  try {
    const res = await fetch(`${target.baseUrl}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${target.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        ...(target.model === undefined ? {} : { model: target.model }),
        input: promptOf(c, mode, target.vars),
        tools: target.tools.map((type) => ({ type })),
        stream: true,
      }),
      signal: AbortSignal.timeout(target.timeoutMs),
    });
    const body = await res.text();
    if (!res.ok) return failed(`HTTP ${res.status}: ${body.slice(0, 200)}`);
    return observe(eventsOf(body), performance.now() - started);
  } catch (err) {
    const timedOut = err instanceof Error && err.name === 'TimeoutError';
    return failed(timedOut ? `no answer within ${target.timeoutMs} ms` : `request failed: ${(err as Error).message}`);
  }
}

// ---- scoring ------------------------------------------------------------------

export interface CaseResult {
  id: string;
  lang: string;
  expect: ToolName | null;
  /** The first tool the model called, or null. */
  called: string | null;
  /** The right first call (or, when none was expected, no call at all). */
  selected: boolean;
  /** A call of the expected tool completed; null when the tool was not called. */
  toolOk: boolean | null;
  /** The answer used the result; null when there was no completed call to use. */
  usedResult: boolean | null;
  steps: number;
  latencyMs: number;
  /** Why the case failed; empty when it passed. */
  reasons: string[];
}

const errorOf = (output: string) => {
  try {
    const parsed = JSON.parse(output) as { error?: unknown };
    return typeof parsed.error === 'string' ? parsed.error : output.slice(0, 120);
  } catch {
    return output.slice(0, 120);
  }
};

export function score(c: EvalCase, o: Observation): CaseResult {
  const reasons: string[] = [];
  const called = o.calls[0]?.name ?? null;
  const selected = o.error === undefined && called === c.expect_tool;
  let toolOk: boolean | null = null;
  let usedResult: boolean | null = null;
  if (o.error !== undefined) reasons.push(o.error);
  else {
    if (o.status !== 'completed') reasons.push(`response ended ${o.status ?? 'without a status'}`);
    if (!selected) {
      reasons.push(c.expect_tool === null ? `called ${called} although no tool was needed` : called === null ? `called no tool, expected ${c.expect_tool}` : `called ${called} first, expected ${c.expect_tool}`);
    }
    const expected = c.expect_tool;
    const mine = o.calls.filter((call) => call.name === expected);
    if (expected !== null && mine.length > 0) {
      const done = mine.filter((call) => call.status === 'completed');
      toolOk = done.length > 0;
      if (!toolOk) reasons.push(`${expected} ${mine[0]!.status}: ${errorOf(mine[0]!.output)}`);
      else {
        usedResult = answerUsesResult(expected, done.map((call) => call.output), o.text, c.answer_check ?? { kind: 'contains_result' }, c.lang);
        if (!usedResult) reasons.push(`the answer did not use the result (${o.text.replace(/\s+/g, ' ').slice(0, 80)})`);
      }
    }
  }
  return { id: c.id, lang: c.lang, expect: c.expect_tool, called, selected, toolOk, usedResult, steps: o.steps, latencyMs: o.latencyMs, reasons };
}

/** Runs the cases, `concurrency` at a time, scoring each; results come back in the set's order. */
export async function runCases(target: Target, cases: EvalCase[], mode: Mode, concurrency = 1, onDone?: (r: CaseResult) => void): Promise<CaseResult[]> {
  const results = new Array<CaseResult>(cases.length);
  let next = 0;
  const worker = async () => {
    while (next < cases.length) {
      const i = next++;
      const c = cases[i]!;
      results[i] = score(c, await runCase(target, c, mode));
      onDone?.(results[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, cases.length)) }, worker));
  return results;
}

// ---- the report -----------------------------------------------------------------

export interface Row {
  name: string;
  cases: number;
  selected: number;
  /** Cases in which the expected tool was called, and in which one of its calls completed. */
  called: number;
  toolOk: number;
  /** Cases whose answer was checked (a completed call), and those that used the result. */
  checked: number;
  used: number;
  meanSteps: number;
  p50: number;
  p95: number;
}

const percentile = (values: number[], p: number) => {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

export function summarise(name: string, results: CaseResult[]): Row {
  const count = (pick: (r: CaseResult) => boolean) => results.filter(pick).length;
  const answered = results.filter((r) => r.steps > 0);
  return {
    name,
    cases: results.length,
    selected: count((r) => r.selected),
    called: count((r) => r.toolOk !== null),
    toolOk: count((r) => r.toolOk === true),
    checked: count((r) => r.usedResult !== null),
    used: count((r) => r.usedResult === true),
    meanSteps: answered.length === 0 ? NaN : answered.reduce((sum, r) => sum + r.steps, 0) / answered.length,
    p50: percentile(results.map((r) => r.latencyMs), 50),
    p95: percentile(results.map((r) => r.latencyMs), 95),
  };
}

/** Per expected tool, the no-tool cases, and all together. */
export function rows(results: CaseResult[]): Row[] {
  const out = [...TOOLS, null].map((tool) => summarise(tool ?? '(no tool)', results.filter((r) => r.expect === tool))).filter((r) => r.cases > 0);
  out.push(summarise('overall', results));
  return out;
}

/** The first line of the report: what ran and what its numbers mean. */
export function headline(mode: Mode, detail = ''): string {
  return mode === 'fake'
    ? `eval:tools, fake mode: loop mechanics only; the fake model is told which tool to call${detail}`
    : `eval:tools, real mode${detail}: does the model pick the expected tool, does the call succeed, does the answer use the result`;
}

export function formatReport(title: string, results: CaseResult[], notes: string[] = []): string {
  const rate = (n: number, d: number) => (d === 0 ? '–' : `${((100 * n) / d).toFixed(1)}% ${n}/${d}`);
  const ms = (v: number) => (Number.isNaN(v) ? '–' : v.toFixed(0));
  const header = ['tool', 'cases', 'tool selection', 'tool success', 'answer used result', 'steps (mean)', 'p50 ms', 'p95 ms'];
  const table = rows(results).map((r) => [
    r.name,
    String(r.cases),
    rate(r.selected, r.cases),
    rate(r.toolOk, r.called),
    rate(r.used, r.checked),
    Number.isNaN(r.meanSteps) ? '–' : r.meanSteps.toFixed(2),
    ms(r.p50),
    ms(r.p95),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  const failed = results.filter((r) => r.reasons.length > 0);
  const out = [title, ...notes, '', line(header), ...table.map(line), ''];
  out.push(`${results.length - failed.length}/${results.length} cases passed`);
  if (failed.length > 0) {
    out.push('failed:');
    for (const r of failed) out.push(`  ${r.id} [${r.expect ?? 'no tool'}]: ${r.reasons.join('; ')}`);
  }
  return out.join('\n');
}
