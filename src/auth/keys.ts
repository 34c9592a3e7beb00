import { createHash, randomBytes } from 'node:crypto';

/**
 * API key format: `eugpt_` + 43 base62 characters drawn from a CSPRNG
 * (about 256 bits). Base62 keeps the key one word for double-click copying.
 * Only the SHA-256 of the whole key is stored: the secret has far too much
 * entropy for a fast hash to be guessed, so a slow password hash buys nothing.
 */

export const KEY_PREFIX = 'eugpt_';
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const SECRET_LENGTH = 43;
/** Characters of the key kept in clear for listings: `eugpt_` and 6 of the secret. */
const VISIBLE_LENGTH = KEY_PREFIX.length + 6;

export function generateKey(): string {
  let secret = '';
  while (secret.length < SECRET_LENGTH) {
    for (const byte of randomBytes(64)) {
      // 248 = 4 × 62: dropping bytes above it keeps every character equally likely.
      if (byte < 248 && secret.length < SECRET_LENGTH) secret += ALPHABET[byte % 62];
    }
  }
  return KEY_PREFIX + secret;
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function visiblePrefix(key: string): string {
  return key.slice(0, VISIBLE_LENGTH);
}
