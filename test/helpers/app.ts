import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/client.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export async function testApp(
  database: Database,
  env: Record<string, string> = {},
  logger: FastifyBaseLogger | false = false,
): Promise<FastifyInstance> {
  const config = loadConfig({ EUGPT_ADMIN_TOKEN: ADMIN_TOKEN, ...env });
  const app = await buildApp({ config, database, logger });
  await app.ready();
  return app;
}

export const adminHeaders = { authorization: `Bearer ${ADMIN_TOKEN}` };

export interface Tenant {
  orgId: string;
  userId: string;
  keyId: string;
  key: string;
}

/** Creates an organisation, a user and a key through the admin API, as an operator would. */
export async function createTenant(app: FastifyInstance): Promise<Tenant> {
  const post = async (url: string, payload: object) => {
    const res = await app.inject({ method: 'POST', url, headers: adminHeaders, payload });
    if (res.statusCode !== 201) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
    return res.json<Record<string, string>>();
  };
  const org = await post('/admin/v1/organizations', { name: `Org ${randomUUID()}` });
  const user = await post('/admin/v1/users', { organization_id: org.id, email: `${randomUUID()}@example.eu` });
  const key = await post('/admin/v1/api-keys', { user_id: user.id, label: 'test' });
  return { orgId: org.id!, userId: user.id!, keyId: key.id!, key: key.key! };
}

export const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
