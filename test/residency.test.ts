import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { residencyPolicyOf } from '../src/router/residency.ts';
import { adminHeaders, bearer, createTenant, type Tenant } from './helpers/app.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { startServer, writeConfigFile, type TestServer } from './helpers/harness.ts';

/** Data residency: an organisation's policy keeps its requests to models in the countries it allows. */

let upstream: FakeUpstream;
let s: TestServer;

const model = (id: string, price: number, country?: string) => ({
  id,
  provider: 'local',
  upstream_model: id,
  categories: ['fast', 'general'],
  price: { input: price, output: price },
  ...(country === undefined ? {} : { country }),
});

beforeAll(async () => {
  upstream = await startFakeUpstream();
  // Cheapest first: a model of unknown location, then one in the US, then one in France.
  s = await startServer(
    writeConfigFile({
      providers: [{ id: 'local', type: 'openai-compatible', base_url: upstream.url }],
      models: [model('nowhere', 0.01), model('us-east', 0.05, 'US'), model('paris', 0.5, 'FR')],
    }),
  );
});
afterAll(async () => {
  await s.close();
  await upstream.close();
});

async function withResidency(residency: unknown): Promise<Tenant> {
  const t = await createTenant(s.app);
  const res = await s.app.inject({ method: 'PATCH', url: `/admin/v1/organizations/${t.orgId}`, headers: adminHeaders, payload: { residency } });
  expect(res.statusCode).toBe(200);
  return t;
}

const ask = (t: Tenant) => s.app.inject({ method: 'POST', url: '/v1/responses', headers: bearer(t.key), payload: { input: 'Hi', stream: false } });

describe('data residency', () => {
  it('routes an EU-only organisation to the EU model, and says where in a header', async () => {
    const t = await withResidency('eu');
    const res = await ask(t);
    expect(res.json().model).toBe('paris');
    expect(res.headers['x-eugpt-model-country']).toBe('FR');
  });

  it('routes by a list of countries, and anywhere without a policy', async () => {
    expect((await ask(await withResidency(['us']))).json().model).toBe('us-east');
    expect((await ask(await withResidency(null))).json().model).toBe('nowhere');
  });

  it('answers 503 naming the policy when no model is allowed', async () => {
    const res = await ask(await withResidency(['CH']));
    expect(res.statusCode).toBe(503);
    expect(res.json().error).toMatchObject({ code: 'residency_unavailable' });
    expect(res.json().error.message).toContain('CH');
  });

  it('shows where each model runs, and refuses a policy that is not country codes', async () => {
    const t = await withResidency(null);
    const models = (await s.app.inject({ method: 'GET', url: '/v1/models', headers: bearer(t.key) })).json().data as { id: string; country: string | null }[];
    expect(Object.fromEntries(models.map((m) => [m.id, m.country]))).toEqual({ auto: null, nowhere: null, 'us-east': 'US', paris: 'FR' });
    const bad = await s.app.inject({ method: 'PATCH', url: `/admin/v1/organizations/${t.orgId}`, headers: adminHeaders, payload: { residency: ['Germany'] } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('invalid_residency');
  });

  it('normalises policies', () => {
    expect(residencyPolicyOf(['fr', 'DE', 'fr'])).toBe('DE,FR');
    expect(residencyPolicyOf('eu')).toBe('eu');
    expect(residencyPolicyOf(null)).toBeNull();
    expect(residencyPolicyOf(['D'])).toBeInstanceOf(Error);
  });
});
