import type { ServerResponse } from 'node:http';
import { callsOf, eachChunk, player, startFakeServer, type FakeUpstream, type Script } from './fake-server.ts';

/** A fake OpenAI-compatible upstream: streamed chat completions on /v1/chat/completions. */

export type { FakeUpstream, Script, SeenRequest } from './fake-server.ts';

const chunk = (res: ServerResponse, payload: unknown) => res.write(`data: ${JSON.stringify(payload)}\n\n`);

const play = player(async (script, seen, res) => {
  const base = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1, model: String(seen.body.model) };
  chunk(res, { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
  const calls = callsOf(script, seen);
  // A call asked for in the prompt comes without text, as a model calling a tool usually answers.
  const whole = await eachChunk({ ...script, chunks: script.chunks ?? (calls.length > 0 ? [] : undefined) }, res, (text) => chunk(res, { ...base, choices: [{ index: 0, delta: { content: text }, finish_reason: null }] }));
  if (!whole) return;
  for (const [index, call] of calls.entries()) {
    // The name first, then the arguments in two pieces, as streamed tool calls arrive.
    const half = Math.ceil(call.arguments.length / 2);
    const piece = (fn: object, first: boolean) =>
      chunk(res, { ...base, choices: [{ index: 0, delta: { tool_calls: [{ index, ...(first ? { id: `call_up${index}`, type: 'function' } : {}), function: fn }] }, finish_reason: null }] });
    piece({ name: call.name, arguments: '' }, true);
    piece({ arguments: call.arguments.slice(0, half) }, false);
    piece({ arguments: call.arguments.slice(half) }, false);
  }
  chunk(res, { ...base, choices: [{ index: 0, delta: {}, finish_reason: script.finish ?? (calls.length > 0 ? 'tool_calls' : 'stop') }] });
  if (script.usage !== null) {
    const usage = script.usage ?? { prompt_tokens: 11, completion_tokens: (script.chunks ?? [1, 2, 3]).length };
    chunk(res, { ...base, choices: [], usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } });
  }
  res.write('data: [DONE]\n\n');
  res.end();
  seen.finished = true;
});

export function startFakeUpstream(fallback: Script = {}, port = 0): Promise<FakeUpstream> {
  return startFakeServer('/v1/chat/completions', play, fallback, port);
}
