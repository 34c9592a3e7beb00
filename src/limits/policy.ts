import type { Principal } from '../auth/key-auth.ts';
import { forbidden } from '../http/api-error.ts';
import type { Feature } from '../tenancy/plans.ts';

/**
 * The organisation-wide refusals (issue 5), checked on every `/v1` request
 * after the key: a suspended organisation, API access turned off by policy
 * or by the plan, an ended trial.
 */
export function assertPolicy(principal: Principal, now: number): void {
  const p = principal.policy;
  if (p.status === 'suspended') throw forbidden('organization_suspended', 'the organisation is suspended');
  if (!p.apiAccess) throw forbidden('api_access_disabled', "the organisation's policy does not allow API access");
  if (!p.features.api_access) throw forbidden('plan_feature_disabled', `the ${p.plan} plan does not include API access`);
  if (p.trialEndsAt !== null && now >= p.trialEndsAt) {
    throw forbidden('trial_expired', `the trial ended on ${new Date(p.trialEndsAt).toISOString().slice(0, 10)}`);
  }
}

export function requireFeature(principal: Principal, feature: Feature, what: string): void {
  if (!principal.policy.features[feature]) {
    throw forbidden('plan_feature_disabled', `the ${principal.policy.plan} plan does not include ${what}`);
  }
}
