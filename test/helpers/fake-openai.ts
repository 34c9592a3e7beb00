import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A fake OpenAI-compatible upstream: a real HTTP server on port 0 that speaks
 * streamed chat completions, with scripted answers and faults.
 */

export interface Script {
  /** Text chunks, one `delta.content` each. */
  chunks?: string[];
  /** Answer with this status and body instead of a stream. */
  status?: number;
  errorBody?: string;
  delayFirstMs?: number;
  delayBetweenMs?: number;
  /** `null`: send no usage chunk. Default: counts of the fake's own. */
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
  finish?: 'stop' | 'length';
  /** Destroy the connection after this many text chunks. */
  dropAfter?: number;
  /** Accept the request and never answer. */
  hang?: boolean;
}

export interface SeenRequest {
  body: Record<string, unknown> & { messages: { role: string; content: string }[] };
  headers: IncomingMessage['headers'];
  /** Resolves when the server saw the connection of this request close. */
  closed: Promise<void>;
  /** True once the response was ended by the fake itself. */
  finished: boolean;
}

export interface FakeUpstream {
  url: string;
  requests: SeenRequest[];
  /** The script for the next requests, in order; after the queue, `fallback`. */
  queue: Script[];
  fallback: Script;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function chunk(res: ServerResponse, payload: unknown) {
  res.write(`data: ${JSON.stringify(payload)}\n\n`);
}

async function play(script: Script, seen: SeenRequest, res: ServerResponse) {
  if (script.hang === true) return;
  if (script.delayFirstMs !== undefined) await sleep(script.delayFirstMs);
  if (script.status !== undefined) {
    res.writeHead(script.status, { 'content-type': 'application/json' });
    res.end(script.errorBody ?? JSON.stringify({ error: { message: 'scripted failure', type: 'server_error' } }));
    seen.finished = true;
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const base = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1, model: String(seen.body.model) };
  chunk(res, { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
  const chunks = script.chunks ?? ['Hello', ', world', '.'];
  for (const [i, text] of chunks.entries()) {
    if (i > 0 && script.delayBetweenMs !== undefined) await sleep(script.delayBetweenMs);
    if (res.destroyed) return;
    if (script.dropAfter === i) {
      await sleep(50); // let what was written reach the client first
      res.socket?.destroy();
      return;
    }
    chunk(res, { ...base, choices: [{ index: 0, delta: { content: text }, finish_reason: null }] });
  }
  chunk(res, { ...base, choices: [{ index: 0, delta: {}, finish_reason: script.finish ?? 'stop' }] });
  if (script.usage !== null) {
    const usage = script.usage ?? { prompt_tokens: 11, completion_tokens: chunks.length };
    chunk(res, { ...base, choices: [], usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } });
  }
  res.write('data: [DONE]\n\n');
  res.end();
  seen.finished = true;
}

export async function startFakeUpstream(fallback: Script = {}, port = 0): Promise<FakeUpstream> {
  const requests: SeenRequest[] = [];
  const fake: Omit<FakeUpstream, 'url' | 'close'> = { requests, queue: [], fallback };
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (raw += d));
    req.on('end', () => {
      const seen: SeenRequest = {
        body: JSON.parse(raw) as SeenRequest['body'],
        headers: req.headers,
        closed: new Promise((resolve) => res.on('close', () => resolve())),
        finished: false,
      };
      requests.push(seen);
      if (req.url !== '/v1/chat/completions' || req.method !== 'POST') {
        res.writeHead(404).end();
        return;
      }
      const script = fake.queue.shift() ?? fake.fallback;
      void play(script, seen, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const bound = (server.address() as AddressInfo).port;
  return Object.assign(fake, {
    url: `http://127.0.0.1:${bound}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}
