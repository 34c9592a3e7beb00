import { afterAll, describe, expect, it } from 'vitest';
import type { Principal } from '../src/auth/key-auth.ts';
import { ApiError } from '../src/http/api-error.ts';
import { parseTools } from '../src/responses/tools-request.ts';
import { toolsFor } from '../src/responses/toolset.ts';
import { toolsSchema } from '../src/tools/config.ts';
import { createToolbox } from '../src/tools/registry.ts';
import { FEATURES, type Feature } from '../src/tenancy/plans.ts';

/** Which tools a request is offered, by plan and by server config. */

const principal = (off: Feature[] = []): Principal => ({
  keyId: 'k',
  userId: 'u',
  organizationId: 'o',
  role: 'member',
  policy: {
    status: 'active',
    apiAccess: true,
    plan: 'team',
    trialEndsAt: null,
    features: Object.fromEntries(FEATURES.map((f) => [f, !off.includes(f)])) as Record<Feature, boolean>,
    limits: { userDay: null, userMonth: null, orgDay: null, orgMonth: null },
    requestsPerMinute: null,
    residency: null,
  },
});

const config = toolsSchema.parse({ web_search: { backend: 'brave' }, web_fetch: { enabled: false } });
const toolbox = createToolbox({ ...config, web_search: { ...config.web_search, apiKey: 'brave-test-key' } });
afterAll(() => toolbox.close());

const names = (tools: unknown[] | undefined, choice?: unknown, off: Feature[] = []) =>
  toolsFor(parseTools(tools as { type: string }[] | undefined, choice, undefined), principal(off), toolbox).builtins.map((b) => b.tool.name);

const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ApiError) return { status: err.status, code: err.code };
    throw err;
  }
  throw new Error('not refused');
};

describe('toolsFor', () => {
  it('offers every enabled built-in by default, and leaves out those switched off', () => {
    expect(names(undefined).sort()).toEqual(['calculator', 'current_datetime', 'web_search']);
  });

  it('leaves the paid search out of the default set of a plan without advanced_web_search, and refuses it by name', () => {
    expect(names(undefined, undefined, ['advanced_web_search']).sort()).toEqual(['calculator', 'current_datetime']);
    expect(refusal(() => names([{ type: 'web_search' }], undefined, ['advanced_web_search']))).toEqual({ status: 403, code: 'plan_feature_disabled' });
  });

  it('offers nothing to a plan without tools, and refuses a request that names some', () => {
    expect(names(undefined, undefined, ['tools'])).toEqual([]);
    expect(refusal(() => names([{ type: 'calculator' }], undefined, ['tools']))).toEqual({ status: 403, code: 'plan_feature_disabled' });
    expect(refusal(() => names(undefined, 'required', ['tools']))).toEqual({ status: 403, code: 'plan_feature_disabled' });
  });

  it('refuses a built-in the server has switched off', () => {
    expect(refusal(() => names([{ type: 'web_fetch' }]))).toEqual({ status: 400, code: 'unsupported_tool' });
  });

  it('offers nothing with tool_choice none, and only the named built-ins otherwise', () => {
    expect(names(undefined, 'none')).toEqual([]);
    expect(names([{ type: 'calculator' }, { type: 'function', name: 'lookup' }])).toEqual(['calculator']);
    expect(names([{ type: 'function', name: 'lookup' }])).toEqual([]);
  });
});
