import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.ts';
import { createTenant, testApp, type Tenant } from './helpers/app.ts';
import { openTestDatabase } from './helpers/db.ts';

let database: Database;
let app: FastifyInstance;
let baseURL: string;
let tenant: Tenant;

beforeAll(async () => {
  database = await openTestDatabase();
  app = await testApp(database);
  await app.listen({ port: 0, host: '127.0.0.1' });
  baseURL = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1`;
  tenant = await createTenant(app);
});
afterAll(async () => {
  await app.close();
  await database.close();
});

describe('the official OpenAI SDK, pointed at the server', () => {
  it('lists the models with a key', async () => {
    const client = new OpenAI({ apiKey: tenant.key, baseURL, maxRetries: 0 });
    const ids: string[] = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids).toContain('auto');
  });

  it('raises AuthenticationError with our code for a bad key', async () => {
    const client = new OpenAI({ apiKey: 'eugpt_unknown', baseURL, maxRetries: 0 });
    const err = await client.models.list().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).requestID).toMatch(/^[0-9a-f-]{36}$/);
  });
});
