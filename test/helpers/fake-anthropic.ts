import type { ServerResponse } from 'node:http';
import { callsOf, eachChunk, player, startFakeServer, type FakeUpstream, type Script } from './fake-server.ts';

/**
 * A fake Anthropic upstream: the Messages API's real event stream on
 * /v1/messages (message_start, content_block_*, ping, message_delta, message_stop).
 */

const event = (res: ServerResponse, type: string, payload: Record<string, unknown>) =>
  res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...payload })}\n\n`);

const play = player(async (script, seen, res) => {
  const usage = script.usage === null ? { prompt_tokens: 0, completion_tokens: 0 } : (script.usage ?? { prompt_tokens: 11, completion_tokens: (script.chunks ?? [1, 2, 3]).length });
  event(res, 'message_start', {
    message: {
      id: 'msg_fake',
      type: 'message',
      role: 'assistant',
      content: [],
      model: String(seen.body.model),
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: usage.prompt_tokens, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    },
  });
  event(res, 'content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
  event(res, 'ping', {});
  const calls = callsOf(script, seen);
  // A call asked for in the prompt comes without text, as a model calling a tool usually answers.
  const whole = await eachChunk({ ...script, chunks: script.chunks ?? (calls.length > 0 ? [] : undefined) }, res, (text) => event(res, 'content_block_delta', { index: 0, delta: { type: 'text_delta', text } }));
  if (!whole) return;
  event(res, 'content_block_stop', { index: 0 });
  for (const [i, call] of calls.entries()) {
    const index = i + 1;
    event(res, 'content_block_start', { index, content_block: { type: 'tool_use', id: `toolu_${index}`, name: call.name, input: {} } });
    const half = Math.ceil(call.arguments.length / 2);
    for (const partial_json of [call.arguments.slice(0, half), call.arguments.slice(half)]) {
      event(res, 'content_block_delta', { index, delta: { type: 'input_json_delta', partial_json } });
    }
    event(res, 'content_block_stop', { index });
  }
  event(res, 'message_delta', {
    delta: { stop_reason: script.finish === 'length' ? 'max_tokens' : calls.length > 0 ? 'tool_use' : 'end_turn', stop_sequence: null },
    usage: { output_tokens: usage.completion_tokens },
  });
  event(res, 'message_stop', {});
  res.end();
  seen.finished = true;
});

export function startFakeAnthropic(fallback: Script = {}): Promise<FakeUpstream> {
  return startFakeServer('/v1/messages', play, fallback);
}
