import type { FastifyInstance } from 'fastify';
import type { KeyAuth, Principal } from './key-auth.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** Guards every route of the scope it is called in: the caller must present a valid, unrevoked key. */
export function requireApiKey(app: FastifyInstance, keyAuth: KeyAuth): void {
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (req) => {
    req.principal = await keyAuth.authenticate(req.headers.authorization);
  });
}

/** The authenticated caller; only valid inside a scope guarded by requireApiKey. */
export function principalOf(req: { principal: Principal | null }): Principal {
  if (req.principal === null) throw new Error('route is not guarded by requireApiKey');
  return req.principal;
}
