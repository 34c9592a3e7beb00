// A zero-latency OpenAI-compatible upstream for benchmarks: every answer is
// ANSWER_TOKENS one-token chunks, on FAKE_PORT (default: any free port).
// Prints its base URL on the first line.
import { startFakeUpstream } from '../test/helpers/fake-openai.ts';

const tokens = Number(process.env.ANSWER_TOKENS ?? 200);
const upstream = await startFakeUpstream(
  { chunks: Array.from({ length: tokens }, (_, i) => (i === 0 ? 'tok' : ' tok')) },
  Number(process.env.FAKE_PORT ?? 0),
);
// Benchmarks send many requests: keep no per-request record.
setInterval(() => (upstream.requests.length = 0), 1000).unref();
process.stdout.write(`${upstream.url}\n`);
