import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, loggerOptions } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import type { Database } from '../src/db/client.ts';
import { ADMIN_TOKEN, adminHeaders } from './helpers/app.ts';
import { openTestDatabase } from './helpers/db.ts';

/**
 * EUGPT_TRUST_PROXY on real connections: the proxy at 127.0.0.2 is trusted,
 * anything else on 127.0.0.1 is not. The client address the server settles on
 * is the one in its request log and in the audit trail.
 */

const PROXY = '127.0.0.2';
let database: Database;
let app: FastifyInstance;
let port: number;
const lines: string[] = [];

beforeAll(async () => {
  database = await openTestDatabase();
  const config = loadConfig({ EUGPT_ADMIN_TOKEN: ADMIN_TOKEN, EUGPT_TRUST_PROXY: PROXY, LOG_LEVEL: 'info' });
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  app = await buildApp({ config, database, logger: pino(loggerOptions(config), sink) });
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as AddressInfo).port;
});
afterAll(async () => {
  await app?.close();
  await database?.close();
});

/** Creates an organisation from `from`, claiming to forward for `forwardedFor`; answers the request id. */
function createOrg(from: string, forwardedFor: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        localAddress: from,
        method: 'POST',
        path: '/admin/v1/organizations',
        headers: { ...adminHeaders, 'content-type': 'application/json', 'x-forwarded-for': forwardedFor, 'x-forwarded-proto': 'https' },
      },
      (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 201 ? resolve(String(res.headers['x-request-id'])) : reject(new Error(`status ${res.statusCode}`))));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ name: `Org ${randomUUID()}` }));
  });
}

async function auditIp(requestId: string): Promise<string | null> {
  const res = await app.inject({ method: 'GET', url: '/admin/v1/audit?action=organization.create&limit=1000', headers: adminHeaders });
  const row = res.json<{ data: { request_id: string; ip: string | null }[] }>().data.find((r) => r.request_id === requestId);
  if (row === undefined) throw new Error('no audit row for the request');
  return row.ip;
}

/** The client address of the request's "incoming request" log line. */
function loggedIp(requestId: string): string | undefined {
  for (const line of lines) {
    const entry = JSON.parse(line) as { request_id?: string; req?: { remoteAddress?: string } };
    if (entry.request_id === requestId && entry.req?.remoteAddress !== undefined) return entry.req.remoteAddress;
  }
  return undefined;
}

describe('EUGPT_TRUST_PROXY', () => {
  it("takes X-Forwarded-For's client address from a trusted proxy, in the log and the audit trail", async () => {
    const id = await createOrg(PROXY, '198.51.100.7');
    expect(await auditIp(id)).toBe('198.51.100.7');
    expect(loggedIp(id)).toBe('198.51.100.7');
  });

  it('takes the last untrusted hop of a chain: what the trusted proxy saw, not what the client claimed', async () => {
    const id = await createOrg(PROXY, '10.9.9.9, 198.51.100.8');
    expect(await auditIp(id)).toBe('198.51.100.8');
  });

  it('ignores X-Forwarded-For from a peer it does not trust', async () => {
    const id = await createOrg('127.0.0.1', '198.51.100.9');
    expect(await auditIp(id)).toBe('127.0.0.1');
    expect(loggedIp(id)).toBe('127.0.0.1');
  });
});
