import type { ModelConfig } from './catalog.ts';

/**
 * Data residency: where a model runs (its catalog `country`), and which
 * countries an organisation lets its requests go to. `eu` stands for the
 * member states of the European Union; a list names countries by their ISO
 * 3166-1 alpha-2 codes. A model whose country is not configured is allowed
 * only to organisations without a policy.
 */

export const EU_COUNTRIES = [
  'AT', 'BE', 'BG', 'CY', 'CZ', 'DE', 'DK', 'EE', 'ES', 'FI', 'FR', 'GR', 'HR', 'HU',
  'IE', 'IT', 'LT', 'LU', 'LV', 'MT', 'NL', 'PL', 'PT', 'RO', 'SE', 'SI', 'SK',
] as const;

const CODE = /^[A-Z]{2}$/;

/** A policy as stored: `eu`, or country codes joined by commas; null for none. */
export type ResidencyPolicy = string | null;

/** Checks and normalises a policy as the admin API takes it (`eu`, a list of codes, or null). */
export function residencyPolicyOf(input: 'eu' | string[] | null): ResidencyPolicy | Error {
  if (input === null) return null;
  if (input === 'eu') return 'eu';
  const codes = [...new Set(input.map((c) => c.trim().toUpperCase()))];
  const bad = codes.find((c) => !CODE.test(c));
  if (bad !== undefined || codes.length === 0) return new Error(`"${bad ?? ''}" is not a two-letter country code`);
  return codes.sort().join(',');
}

/** The countries a policy allows; null when it allows every model. */
export function allowedCountries(policy: ResidencyPolicy): ReadonlySet<string> | null {
  if (policy === null) return null;
  return new Set(policy === 'eu' ? EU_COUNTRIES : policy.split(','));
}

export const residencyAllows = (model: ModelConfig, allowed: ReadonlySet<string> | null) =>
  allowed === null || (model.country !== undefined && allowed.has(model.country));
