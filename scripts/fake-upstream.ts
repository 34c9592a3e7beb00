// An OpenAI-compatible upstream for benchmarks and the soak test: streamed
// chat completions on POST /v1/chat/completions, on FAKE_PORT (default: any
// free port). Prints its base URL on the first line.
//
// Every answer is ANSWER_TOKENS one-token chunks (default 200), TOKEN_DELAY_MS
// apart (default 0; the first token comes at once). A prompt may override both for its own request with
// `[[tokens:300]]` and `[[delay:20]]` anywhere in its last message, so one
// upstream serves runs of different shapes.
//
// Tools: a last user message holding `[[call:NAME:{json}]]` words is answered
// with those tool calls (streamed as chat-completions tool-call deltas); a
// last message that is a tool result is answered with a sentence quoting it,
// so a run can check that an answer used its tool's result.
//
// It is written for throughput rather than reused from the test fakes: it
// shares the benchmark machine's cores with the server under test, so a
// zero-delay answer is built once per shape and sent with a single write.
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const defaultTokens = Number(process.env.ANSWER_TOKENS ?? 200);
const defaultDelay = Number(process.env.TOKEN_DELAY_MS ?? 0);

interface Shape {
  tokens: number;
  delayMs: number;
  stream: boolean;
  model: string;
  calls: { name: string; arguments: string }[];
  /** The content of the last message when it is a tool result. */
  toolResult: string | undefined;
}

const sse = (payload: unknown) => `data: ${JSON.stringify(payload)}\n\n`;
const base = (model: string) => ({ id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1, model });
const textChunk = (model: string, text: string) => sse({ ...base(model), choices: [{ index: 0, delta: { content: text }, finish_reason: null }] });
const head = (model: string) => sse({ ...base(model), choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
const tail = (model: string, tokens: number) =>
  sse({ ...base(model), choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }) +
  sse({ ...base(model), choices: [], usage: { prompt_tokens: 11, completion_tokens: tokens, total_tokens: 11 + tokens } }) +
  'data: [DONE]\n\n';

/** Whole zero-delay answers by model and length: the benchmark asks for the same few again and again. */
const whole = new Map<string, string>();
function wholeAnswer(model: string, tokens: number): string {
  const key = `${model}\0${tokens}`;
  let text = whole.get(key);
  if (text === undefined) {
    text = head(model);
    for (let i = 0; i < tokens; i++) text += textChunk(model, i === 0 ? 'tok' : ' tok');
    text += tail(model, tokens);
    whole.set(key, text);
  }
  return text;
}

function shapeOf(raw: string): Shape {
  const body = JSON.parse(raw || '{}') as { model?: unknown; stream?: unknown; messages?: { role?: unknown; content?: unknown }[] };
  const lastMessage = body.messages?.at(-1);
  const last = lastMessage?.content;
  const prompt =
    typeof last === 'string' ? last : Array.isArray(last) ? last.map((p: { text?: unknown }) => (typeof p.text === 'string' ? p.text : '')).join(' ') : '';
  const tokens = /\[\[tokens:(\d+)\]\]/.exec(prompt);
  const delay = /\[\[delay:(\d+)\]\]/.exec(prompt);
  return {
    tokens: tokens ? Number(tokens[1]) : defaultTokens,
    delayMs: delay ? Number(delay[1]) : defaultDelay,
    stream: body.stream !== false,
    model: typeof body.model === 'string' ? body.model : 'fake',
    calls: lastMessage?.role === 'user' ? [...prompt.matchAll(/\[\[call:([\w-]+):(\{.*?\})\]\]/g)].map((m) => ({ name: m[1]!, arguments: m[2]! })) : [],
    toolResult: lastMessage?.role === 'tool' && typeof last === 'string' ? last : undefined,
  };
}

/** A streamed answer that calls tools, or quotes the tool result it was given. */
function toolAnswer(shape: Shape): string {
  const { model } = shape;
  let text = head(model);
  if (shape.calls.length === 0) {
    text += textChunk(model, `The tool said: ${shape.toolResult ?? ''}`);
    return text + tail(model, 8);
  }
  for (const [index, call] of shape.calls.entries()) {
    text += sse({ ...base(model), choices: [{ index: 0, delta: { tool_calls: [{ index, id: `call_${index}`, type: 'function', function: { name: call.name, arguments: call.arguments } }] }, finish_reason: null }] });
  }
  text += sse({ ...base(model), choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] });
  text += sse({ ...base(model), choices: [], usage: { prompt_tokens: 11, completion_tokens: 8, total_tokens: 19 } });
  return text + 'data: [DONE]\n\n';
}

async function play(shape: Shape, res: ServerResponse) {
  const { model, tokens } = shape;
  if (!shape.stream) {
    // Non-streamed chat completion, for clients (or gateways) that ask for one.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: 'chatcmpl-fake',
        object: 'chat.completion',
        created: 1,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: Array.from({ length: tokens }, (_, i) => (i === 0 ? 'tok' : ' tok')).join('') }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 11, completion_tokens: tokens, total_tokens: 11 + tokens },
      }),
    );
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  if (shape.calls.length > 0 || shape.toolResult !== undefined) {
    res.end(toolAnswer(shape));
    return;
  }
  if (shape.delayMs === 0) {
    res.end(wholeAnswer(model, tokens));
    return;
  }
  // The first token comes with the role chunk, as from a model whose prompt is processed: the delay is between tokens.
  res.write(head(model) + (tokens > 0 ? textChunk(model, 'tok') : ''));
  for (let i = 1; i < tokens; i++) {
    await new Promise((r) => setTimeout(r, shape.delayMs));
    if (res.destroyed) return;
    res.write(textChunk(model, ' tok'));
  }
  res.end(tail(model, tokens));
}

const server = createServer((req, res) => {
  let raw = '';
  req.setEncoding('utf8');
  req.on('data', (d: string) => (raw += d));
  req.on('end', () => {
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
      res.writeHead(404).end();
      return;
    }
    let shape: Shape;
    try {
      shape = shapeOf(raw);
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"message":"body is not JSON","type":"invalid_request_error"}}');
      return;
    }
    play(shape, res).catch(() => res.destroy());
  });
});
server.keepAliveTimeout = 65_000;
// A deep accept queue: a burst of thousands of connections must not wait on TCP's SYN retries.
server.listen({ port: Number(process.env.FAKE_PORT ?? 0), host: '127.0.0.1', backlog: 4096 }, () => {
  process.stdout.write(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1\n`);
});
