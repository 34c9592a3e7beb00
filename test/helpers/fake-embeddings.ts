import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for an embeddings model: a real HTTP server speaking OpenAI's
 * `POST /v1/embeddings`, whose vectors are hashed bags of words and
 * character trigrams (deterministic, no model behind it). Texts that share
 * words or word pieces come out similar; it knows nothing of meaning or of
 * translation, so it is no measure of what a real model does.
 */

export interface FakeEmbeddings {
  /** The /v1 root to configure as base_url. */
  url: string;
  /** Answer 503 to every request while true (a model that is down). */
  down: boolean;
  /** Requests answered, and inputs embedded. */
  calls: number;
  inputs: number;
  close(): Promise<void>;
}

export const HASH_DIMENSIONS = 256;

function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function hashEmbedding(text: string, dims = HASH_DIMENSIONS): number[] {
  const v = new Array<number>(dims).fill(0);
  const words = text.toLowerCase().normalize('NFKD').replace(/\p{M}/gu, '').match(/[\p{L}\p{N}]{2,}/gu) ?? [];
  for (const w of words) {
    v[fnv(w) % dims]! += 1;
    const padded = ` ${w} `;
    for (let i = 0; i + 3 <= padded.length; i++) v[fnv(padded.slice(i, i + 3)) % dims]! += 0.5;
  }
  const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
  return v.map((x) => x / n);
}

export async function startFakeEmbeddings(): Promise<FakeEmbeddings> {
  const state = { down: false, calls: 0, inputs: 0 };
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (raw += d));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/embeddings') return void res.writeHead(404).end();
      if (fake.down) return void res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"message":"model loading"}}');
      const body = JSON.parse(raw || '{}') as { input?: string | string[]; model?: string; dimensions?: number };
      const input = typeof body.input === 'string' ? [body.input] : (body.input ?? []);
      fake.calls++;
      fake.inputs += input.length;
      const data = input.map((t, index) => ({ object: 'embedding', index, embedding: hashEmbedding(t, body.dimensions ?? HASH_DIMENSIONS) }));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data, model: body.model ?? 'hash', usage: { prompt_tokens: 0, total_tokens: 0 } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const fake: FakeEmbeddings = Object.assign(state, {
    url: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
  return fake;
}
