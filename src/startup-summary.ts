import type { AddressInfo } from 'node:net';
import type { Config } from './config.ts';
import type { Database } from './db/client.ts';
import { displayUrl, type ProviderProbes } from './providers/probe.ts';

/**
 * The one line that tells an operator what started: where the data is, which
 * config file, which models and whether their servers answered, whether the
 * admin API is on, and the URL. Logged once the first probes have ended.
 */
export function startupSummary(config: Config, database: Database, probes: ProviderProbes, address: AddressInfo | string | null) {
  const url = typeof address === 'object' && address !== null ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` : String(address);
  const byId = new Map(config.catalog.providers.map((p) => [p.id, p]));
  const models = config.catalog.models
    .filter((m) => m.enabled)
    .map((m) => {
      const probe = probes.state(m.provider);
      const state = probe.state === 'unreachable' ? `unreachable at ${displayUrl(byId.get(m.provider)!.base_url)}: ${probe.reason}` : probe.state;
      return { id: m.id, provider: m.provider, state };
    });
  const where = database.kind === 'pglite' ? config.dataDir : 'DATABASE_URL';
  const modelText = models.length === 0 ? 'none (set EUGPT_CONFIG)' : models.map((m) => `${m.id} ${m.state}`).join(', ');
  const admin = config.adminToken === undefined ? 'off (set EUGPT_ADMIN_TOKEN)' : 'on';
  const msg = `eugpt at ${url}: database ${database.kind} (${where}); config ${config.configFile ?? 'none'}; models ${modelText}; admin API ${admin}`;
  const fields = {
    url,
    database: database.kind,
    location: where,
    config_file: config.configFile ?? null,
    models,
    admin_api: config.adminToken !== undefined,
  };
  return { fields, msg };
}
