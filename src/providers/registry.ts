import type { Catalog } from '../router/catalog.ts';
import { createAnthropicProvider } from './anthropic.ts';
import { createOpenAICompatibleProvider } from './openai-compatible.ts';
import type { Provider } from './types.ts';

export interface Providers {
  get(providerId: string): Provider;
  close(): Promise<void>;
}

/** One client (and connection pool) per configured provider, made at start. */
export function createProviders(catalog: Catalog): Providers {
  const byId = new Map<string, Provider>(
    catalog.providers.map((p) => [p.id, p.type === 'anthropic' ? createAnthropicProvider(p) : createOpenAICompatibleProvider(p)]),
  );
  return {
    get(providerId) {
      const provider = byId.get(providerId);
      if (provider === undefined) throw new Error(`no provider ${providerId}`);
      return provider;
    },
    async close() {
      await Promise.all([...byId.values()].map((p) => p.close()));
    },
  };
}
