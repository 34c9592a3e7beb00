import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Scripted answers shared by the fake upstreams; each fake plays them in its own protocol. */
export interface Script {
  /** Text chunks, one delta each. */
  chunks?: string[];
  /** Answer with this status and body instead of a stream. */
  status?: number;
  errorBody?: string;
  /** Extra headers of that status answer, e.g. retry-after. */
  headers?: Record<string, string>;
  /** Send the first chunk, then wait for this before the rest: holds the connection open for as long as a test needs. */
  hold?: Promise<unknown>;
  delayFirstMs?: number;
  delayBetweenMs?: number;
  /** `null`: send no usage. Default: counts of the fake's own. */
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
  finish?: 'stop' | 'length';
  /** Destroy the connection after this many text chunks. */
  dropAfter?: number;
  /** Accept the request and never answer. */
  hang?: boolean;

  /**
   * Tool calls the answer makes after its text. Without them, a last user
   * message holding `[[call:NAME:{json}]]` words calls those tools (so a
   * follow-up call, whose last message is a tool result, answers in text).
   */
  calls?: { name: string; arguments: string }[];
}

/** The tool calls a request asks the fake for: the script's own, or the `[[call:…]]` words of its last user message. */
export function callsOf(script: Script, seen: SeenRequest): { name: string; arguments: string }[] {
  if (script.calls !== undefined) return script.calls;
  const last = seen.body.messages?.at(-1) as { role?: string; content?: unknown } | undefined;
  if (last?.role !== 'user') return [];
  const text =
    typeof last.content === 'string'
      ? last.content
      : Array.isArray(last.content)
        ? last.content.map((p: { text?: unknown }) => (typeof p.text === 'string' ? p.text : '')).join(' ')
        : '';
  return [...text.matchAll(/\[\[call:([\w-]+):(\{.*?\})\]\]/g)].map((m) => ({ name: m[1]!, arguments: m[2]! }));
}

export interface SeenRequest {
  url: string;
  body: Record<string, unknown> & { messages: { role: string; content: string }[] };
  headers: IncomingMessage['headers'];
  /** Resolves when the server saw the connection of this request close. */
  closed: Promise<void>;
  /** True once the response was ended by the fake itself. */
  finished: boolean;
  /** The client port of the connection: the same port twice means the connection was kept and reused. */
  remotePort: number | undefined;
}

export interface FakeUpstream {
  url: string;
  requests: SeenRequest[];
  /** Model-list requests (the server's reachability probes); they are answered and kept out of `requests`. */
  probes: number;
  /** The script for the next requests, in order; after the queue, `fallback`. */
  queue: Script[];
  fallback: Script;
  close(): Promise<void>;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type Player = (script: Script, seen: SeenRequest, res: ServerResponse) => Promise<void>;

/** Plays the common parts of a script (hang, delay, error status), then hands the stream to `stream`. */
export function player(stream: Player): Player {
  return async (script, seen, res) => {
    if (script.hang === true) return;
    if (script.delayFirstMs !== undefined) await sleep(script.delayFirstMs);
    if (script.status !== undefined) {
      res.writeHead(script.status, { 'content-type': 'application/json', ...script.headers });
      res.end(script.errorBody ?? JSON.stringify({ error: { message: 'scripted failure', type: 'server_error' } }));
      seen.finished = true;
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    await stream(script, seen, res);
  };
}

/** Sends the script's chunks through `send`, honouring delays and drops; false when the connection was dropped. */
export async function eachChunk(script: Script, res: ServerResponse, send: (text: string) => void): Promise<boolean> {
  const chunks = script.chunks ?? ['Hello', ', world', '.'];
  for (const [i, text] of chunks.entries()) {
    if (i === 1 && script.hold !== undefined) await script.hold;
    if (i > 0 && script.delayBetweenMs !== undefined) await sleep(script.delayBetweenMs);
    if (res.destroyed) return false;
    if (script.dropAfter === i) {
      await sleep(50); // let what was written reach the client first
      res.socket?.destroy();
      return false;
    }
    send(text);
  }
  return true;
}

export async function startFakeServer(path: string, play: Player, fallback: Script = {}, port = 0): Promise<FakeUpstream> {
  const requests: SeenRequest[] = [];
  const fake: Omit<FakeUpstream, 'url' | 'close'> = { requests, probes: 0, queue: [], fallback };
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/v1/models') {
      fake.probes++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data: [] }));
      return;
    }
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (raw += d));
    req.on('end', () => {
      const seen: SeenRequest = {
        url: req.url ?? '',
        body: JSON.parse(raw || '{}') as SeenRequest['body'],
        headers: req.headers,
        closed: new Promise((resolve) => res.on('close', () => resolve())),
        finished: false,
        remotePort: req.socket.remotePort,
      };
      requests.push(seen);
      if (req.url !== path || req.method !== 'POST') {
        res.writeHead(404).end();
        return;
      }
      void play(fake.queue.shift() ?? fake.fallback, seen, res);
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
