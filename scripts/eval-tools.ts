// `npm run eval:tools`: the labelled prompts of test/fixtures/tools-eval.json
// through POST /v1/responses with the server-side tools, scored per tool.
//
// Fake mode (the default; CI runs it): a fake model that calls the tool each
// case names, so the run checks the loop's mechanics, the tools themselves
// (against a fake SearXNG and fake web pages) and that the result reaches the
// answer. Every case must pass; exit code 1 otherwise.
//
// Real mode, EVAL_CONFIG=path/to/eugpt.yaml: the natural prompts to a real
// model, measuring whether it picks the right tool and uses what it returned.
// Settings: EVAL_MODEL (a model id of that config; default: the router's
// pick), EVAL_ONLY=calculator,current_datetime (offer only these tools and run
// only their cases and the no-tool ones), EVAL_TIMEOUT_MS per case (default
// 120000), EVAL_CONCURRENCY (default 1, so latencies are one request's own).
import { envNumber } from './harness.ts';
import { formatReport, headline, loadCases, runCases, TOOLS, type CaseResult, type EvalCase, type ToolName } from './eval-tools-core.ts';
import { startFakeServer, startRealServer, type EvalServer } from './eval-tools-server.ts';

const configPath = process.env.EVAL_CONFIG || undefined;
const only = parseOnly(process.env.EVAL_ONLY);
const concurrency = Math.max(1, envNumber('EVAL_CONCURRENCY', 1));

function parseOnly(raw: string | undefined): ToolName[] | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const names = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => !TOOLS.includes(n as ToolName));
  if (unknown.length > 0) throw new Error(`EVAL_ONLY: unknown tool ${unknown.join(', ')} (the tools are ${TOOLS.join(', ')})`);
  return names as ToolName[];
}

/** A dot per finished case on stderr, so a slow real model shows it is still going. */
const progress = (r: CaseResult) => process.stderr.write(r.reasons.length === 0 ? '.' : 'x');

async function main(): Promise<number> {
  let cases: EvalCase[] = loadCases();
  if (configPath === undefined) {
    if (only !== undefined) process.stderr.write('EVAL_ONLY applies to real mode only; fake mode runs every case\n');
    const server = await startFakeServer();
    try {
      const results = await runCases({ ...server.target, timeoutMs: envNumber('EVAL_TIMEOUT_MS', 30_000) }, cases, 'fake', concurrency, progress);
      process.stderr.write('\n');
      process.stdout.write(`${formatReport(headline('fake'), results)}\n`);
      return results.every((r) => r.reasons.length === 0) ? 0 : 1;
    } finally {
      await server.close();
    }
  }

  let server: (EvalServer & { offered: ToolName[] }) | undefined;
  try {
    server = await startRealServer({ configPath, model: process.env.EVAL_MODEL || undefined, only });
    const offered = server.offered;
    const notes: string[] = [];
    const skipped = cases.filter((c) => c.expect_tool !== null && !offered.includes(c.expect_tool));
    if (skipped.length > 0) {
      notes.push(`skipped ${skipped.length} cases of tools not offered (switched off in the config, or left out by EVAL_ONLY)`);
      cases = cases.filter((c) => !skipped.includes(c));
    }
    notes.push(`tools offered: ${offered.join(', ')}`);
    const results = await runCases({ ...server.target, timeoutMs: envNumber('EVAL_TIMEOUT_MS', 120_000) }, cases, 'real', concurrency, progress);
    process.stderr.write('\n');
    process.stdout.write(`${formatReport(headline('real', ` (${server.describe})`), results, notes)}\n`);
    // A measurement of a model, not a test of the server: a weak score is not a failure of the run.
    return 0;
  } finally {
    await server?.close();
  }
}

try {
  process.exitCode = await main();
} catch (err) {
  process.stderr.write(`eval:tools: ${(err as Error).message}\n`);
  process.exitCode = 2;
}
