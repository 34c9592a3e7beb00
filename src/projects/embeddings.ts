import { Agent, request } from 'undici';
import type { EmbeddingsConfig } from './config.ts';

/**
 * A client of any OpenAI-compatible `POST /embeddings`: texts in batches,
 * vectors back in the same order. Every failure (unreachable, a status, a
 * malformed answer, a timeout) is an `EmbeddingsError` whose message names
 * no text and no key, so callers can keep it in a status detail.
 */

export class EmbeddingsError extends Error {
  override name = 'EmbeddingsError';
}

/** The connection was closed under the request: worth one more try. */
class Reset extends EmbeddingsError {}

export interface Embedder {
  model: string;
  embed(texts: string[], signal?: AbortSignal): Promise<number[][]>;
  close(): Promise<void>;
}

/** An answer larger than this is refused (a batch of 2048 vectors of 8192 floats as JSON fits). */
const MAX_ANSWER_BYTES = 256 * 1024 * 1024;

export function createEmbedder(config: EmbeddingsConfig & { apiKey: string | undefined }): Embedder {
  const url = `${config.base_url.replace(/\/+$/, '')}/embeddings`;
  // Idle connections are dropped before the usual 5 s keep-alive of servers, so a reused one is rarely closed under us.
  const agent = new Agent({ connections: 4, headersTimeout: config.timeout_ms, bodyTimeout: config.timeout_ms, keepAliveTimeout: 4_000 });

  async function batch(input: string[], signal: AbortSignal | undefined): Promise<number[][]> {
    const timeout = AbortSignal.timeout(config.timeout_ms);
    const both = signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
    let status: number;
    let text = '';
    try {
      const res = await request(url, {
        method: 'POST',
        dispatcher: agent,
        signal: both,
        headers: {
          'content-type': 'application/json',
          ...(config.apiKey === undefined ? {} : { authorization: `Bearer ${config.apiKey}` }),
        },
        body: JSON.stringify({ model: config.model, input, encoding_format: 'float', ...(config.dimensions === undefined ? {} : { dimensions: config.dimensions }) }),
      });
      status = res.statusCode;
      let bytes = 0;
      const parts: Buffer[] = [];
      for await (const piece of res.body as AsyncIterable<Buffer>) {
        bytes += piece.length;
        if (bytes > MAX_ANSWER_BYTES) {
          res.body.destroy();
          throw new EmbeddingsError('the embeddings answer was too large');
        }
        parts.push(piece);
      }
      text = Buffer.concat(parts).toString('utf8');
    } catch (err) {
      if (err instanceof EmbeddingsError) throw err;
      if (timeout.aborted) throw new EmbeddingsError(`the embeddings model did not answer within ${config.timeout_ms} ms`);
      const code = (err as { code?: string }).code;
      if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') throw new Reset(`the embeddings model could not be reached (${code})`);
      throw new EmbeddingsError(`the embeddings model could not be reached (${(err as { code?: string }).code ?? (err as Error).name})`);
    }
    if (status < 200 || status >= 300) throw new EmbeddingsError(`the embeddings model answered HTTP ${status}`);
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new EmbeddingsError('the embeddings answer is not JSON');
    }
    const rows = (data as { data?: unknown }).data;
    if (!Array.isArray(rows) || rows.length !== input.length) throw new EmbeddingsError('the embeddings answer does not have one vector per input');
    const out: number[][] = new Array<number[]>(input.length);
    for (const [i, row] of (rows as { index?: unknown; embedding?: unknown }[]).entries()) {
      const at = typeof row.index === 'number' ? row.index : i;
      const v = row.embedding;
      if (!Array.isArray(v) || v.length === 0 || v.length > 8192 || !v.every((x) => typeof x === 'number' && Number.isFinite(x)) || at < 0 || at >= input.length) {
        throw new EmbeddingsError('the embeddings answer holds a malformed vector');
      }
      out[at] = v as number[];
    }
    const dims = out[0]?.length;
    if (out.some((v) => v === undefined || v.length !== dims)) throw new EmbeddingsError('the embeddings answer has vectors of different sizes');
    return out;
  }

  return {
    model: config.model,
    async embed(texts, signal) {
      const out: number[][] = [];
      for (let i = 0; i < texts.length; i += config.batch_size) {
        const input = texts.slice(i, i + config.batch_size);
        // A kept-alive connection the server closed meanwhile fails at once: one more try on a new one.
        out.push(...(await batch(input, signal).catch((err: unknown) => (err instanceof Reset ? batch(input, signal) : Promise.reject(err as Error)))));
      }
      return out;
    },
    close: () => agent.close(),
  };
}
