import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { unauthorized } from '../http/api-error.ts';
import { exposition } from './metrics.ts';

/**
 * Where Prometheus reads the metrics: `GET /metrics` on the main port behind
 * a bearer token of its own, and/or a plain listener on an address of its
 * own (by default the loopback interface) that needs no token.
 */

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Compares hashes, so the time taken says nothing about the token, its length included. */
function tokenMatches(header: string | undefined, expected: Buffer): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m !== null && timingSafeEqual(digest(m[1]!), expected);
}

export function metricsRoute(app: FastifyInstance, token: string): void {
  const expected = digest(token);
  // Hidden from the OpenAPI document: it is the operator's, not the API's.
  app.get('/metrics', { schema: { hide: true } }, async (req, reply) => {
    if (!tokenMatches(req.headers.authorization, expected)) {
      throw unauthorized('invalid_metrics_token', 'GET /metrics needs `Authorization: Bearer <EUGPT_METRICS_TOKEN>`');
    }
    const { text, contentType } = await exposition();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(text);
  });
}

export interface MetricsServer {
  address: AddressInfo;
  close(): Promise<void>;
}

/** A listener that answers `GET /metrics` and nothing else. */
export async function startMetricsServer(host: string, port: number): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('only GET /metrics is served here\n');
      return;
    }
    exposition().then(
      ({ text, contentType }) => {
        res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      () => res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('could not collect the metrics\n'),
    );
  });
  // A scrape is small and quick: slow or idle clients are not kept.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 50;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
