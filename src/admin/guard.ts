import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { unauthorized } from '../http/api-error.ts';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * Guards the admin scope with `Authorization: Bearer $EUGPT_ADMIN_TOKEN`.
 * Both sides are hashed first so the comparison is constant-time whatever the lengths.
 * `onRefused` hears of every missing or wrong token (not of a disabled admin API,
 * where there is nothing to guess).
 */
export function requireAdminToken(
  app: FastifyInstance,
  adminToken: string | undefined,
  onRefused: (req: FastifyRequest, reason: 'missing' | 'invalid') => Promise<void> = async () => undefined,
): void {
  const expected = adminToken === undefined ? undefined : digest(adminToken);
  app.addHook('onRequest', async (req) => {
    if (expected === undefined) {
      throw unauthorized(
        'admin_api_disabled',
        'the admin API is disabled: set EUGPT_ADMIN_TOKEN (at least 16 characters) on the server and restart it',
      );
    }
    const header = req.headers.authorization;
    if (header === undefined) {
      await onRefused(req, 'missing');
      throw unauthorized('missing_admin_token', 'send Authorization: Bearer <EUGPT_ADMIN_TOKEN>');
    }
    const match = /^Bearer +(\S+) *$/i.exec(header);
    if (match === null || !timingSafeEqual(digest(match[1]!), expected)) {
      await onRefused(req, 'invalid');
      throw unauthorized('invalid_admin_token', 'the admin token is not valid');
    }
  });
}
