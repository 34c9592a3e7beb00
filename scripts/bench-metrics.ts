// `npx tsx scripts/bench-metrics.ts`: what the metrics add to one request, in
// microseconds. Records exactly what one `POST /v1/responses` (stream:false,
// no tools) records on the hot path, many times over, with tracing off (the
// default); then the same with a scrape every 10,000 requests. Prints one
// line per case. Times are CPU time of this process (process.cpuUsage), so a
// machine busy with other work inflates them less than wall-clock time would;
// a reference line (a response-sized JSON round trip) gives the scale.
import { exposition, recordBatch, recordConnectionWait, recordFirstToken, recordHttp, recordResponse, recordTokens, recordUpstreamCall } from '../src/observability/metrics.ts';
import { startSpan } from '../src/observability/tracing.ts';

const N = Number(process.env.BENCH_N ?? 200_000);
const models = ['llama-small', 'mistral-large', 'claude'];

function oneRequest(i: number): void {
  const model = models[i % models.length]!;
  // The spans the request would open are no-ops while tracing is off.
  startSpan('response.admit').end();
  recordBatch('admissions', 1, [0.0002], 0.001);
  recordConnectionWait('local', 0);
  startSpan('model.call').end();
  recordFirstToken(model, false, 0.05);
  recordTokens(model, 120, 40);
  recordUpstreamCall(model, 'success');
  recordBatch('endings', 1, [0.0001], 0.001);
  recordResponse(model, 'completed', false, 0.06);
  recordHttp('/v1/responses', 'POST', 200, 0.07);
}

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

async function run(label: string, each: (i: number) => unknown, scrapeEvery = 0): Promise<void> {
  for (let i = 0; i < 20_000; i++) each(i); // warm-up: JIT, label maps
  const start = cpuUs();
  for (let i = 0; i < N; i++) {
    each(i);
    if (scrapeEvery > 0 && i % scrapeEvery === 0) await exposition();
  }
  console.log(`${label}: ${((cpuUs() - start) / N).toFixed(2)} µs CPU per request (${N} requests)`);
}

/** What the server does anyway for one answer, for scale: a response document to JSON and back. */
const doc = {
  id: 'resp_0123456789',
  object: 'response',
  status: 'completed',
  model: 'llama-small',
  output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Hello, world. '.repeat(20), annotations: [] }] }],
  usage: { input_tokens: 120, output_tokens: 40, total_tokens: 160 },
  metadata: {},
};
await run('reference: one response document to JSON and back', () => JSON.parse(JSON.stringify(doc)));
await run('metrics recorded', oneRequest);
await run('metrics recorded, scraped every 10,000 requests', oneRequest, 10_000);
const t = process.hrtime.bigint();
const { text } = await exposition();
console.log(`one scrape: ${(Number(process.hrtime.bigint() - t) / 1e6).toFixed(2)} ms, ${text.length} bytes`);
