import type { ServerResponse } from 'node:http';
import { eachChunk, player, startFakeServer, type FakeUpstream, type Script } from './fake-server.ts';

/** A fake OpenAI-compatible upstream: streamed chat completions on /v1/chat/completions. */

export type { FakeUpstream, Script, SeenRequest } from './fake-server.ts';

const chunk = (res: ServerResponse, payload: unknown) => res.write(`data: ${JSON.stringify(payload)}\n\n`);

const play = player(async (script, seen, res) => {
  const base = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1, model: String(seen.body.model) };
  chunk(res, { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
  const whole = await eachChunk(script, res, (text) => chunk(res, { ...base, choices: [{ index: 0, delta: { content: text }, finish_reason: null }] }));
  if (!whole) return;
  chunk(res, { ...base, choices: [{ index: 0, delta: {}, finish_reason: script.finish ?? 'stop' }] });
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
