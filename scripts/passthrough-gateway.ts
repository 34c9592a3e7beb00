// A minimal pass-through gateway, the peer `npm run bench` compares eugpt
// with: every POST under /v1 is forwarded to UPSTREAM_URL over a pooled
// undici connection and the answer is streamed back as it arrives, with no
// parsing, accounting or storage. It is what any proxy in front of a model
// server costs at the least. Prints its base URL on the first line.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Pool } from 'undici';

const upstream = new URL(process.env.UPSTREAM_URL ?? 'http://127.0.0.1:8000/v1');
const pool = new Pool(upstream.origin, { connections: Number(process.env.GATEWAY_CONNECTIONS ?? 512), pipelining: 1 });
const prefix = upstream.pathname.replace(/\/$/, '');

function forward(req: IncomingMessage, res: ServerResponse, body: Buffer) {
  const abort = new AbortController();
  res.on('close', () => abort.abort());
  pool
    .request({
      method: 'POST',
      path: `${prefix}${req.url!.slice(3)}`,
      headers: { 'content-type': req.headers['content-type'] ?? 'application/json', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) },
      body,
      signal: abort.signal,
    })
    .then(async (answer) => {
      const type = answer.headers['content-type'];
      res.writeHead(answer.statusCode, type === undefined ? {} : { 'content-type': type });
      await pipeline(answer.body, res);
    })
    .catch(() => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' }).end('{"error":{"message":"upstream unreachable","type":"server_error"}}');
      else res.destroy();
    });
}

const server = createServer((req, res) => {
  if (req.method !== 'POST' || !req.url?.startsWith('/v1/')) {
    res.writeHead(404).end();
    return;
  }
  // The request body is read whole and sent with its length, as a gateway that routes on the model name must.
  const parts: Buffer[] = [];
  req.on('data', (d: Buffer) => parts.push(d));
  req.on('end', () => forward(req, res, Buffer.concat(parts)));
});
// A deep accept queue: a burst of thousands of connections must not wait on TCP's SYN retries.
server.listen({ port: Number(process.env.GATEWAY_PORT ?? 0), host: '127.0.0.1', backlog: 4096 }, () => {
  process.stdout.write(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1\n`);
});
