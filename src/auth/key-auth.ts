import { eq, sql } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { apiKeys, organizations, plans, users } from '../db/schema.ts';
import { unauthorized } from '../http/api-error.ts';
import { featuresOf, type Feature } from '../tenancy/plans.ts';
import { hashKey, KEY_PREFIX } from './keys.ts';

/** Token limits that apply to a caller; null: no limit. */
export interface Limits {
  orgDay: number | null;
  orgMonth: number | null;
  userDay: number | null;
  userMonth: number | null;
}

/** What the organisation's status, policy and plan allow (cached with the key). */
export interface Policy {
  status: 'active' | 'suspended';
  apiAccess: boolean;
  plan: string;
  trialEndsAt: number | null;
  features: Record<Feature, boolean>;
  limits: Limits;
  requestsPerMinute: number | null;
  /** Where the organisation's requests may be answered (router/residency.ts); null: anywhere. */
  residency: string | null;
}

/** Who is calling, as the `/v1` routes see it. */
export interface Principal {
  keyId: string;
  userId: string;
  organizationId: string;
  role: 'owner' | 'admin' | 'member';
  policy: Policy;
}

type Lookup = { principal: Principal; revoked: boolean } | null;

interface CacheEntry {
  value: Lookup;
  expiresAt: number;
}

export interface KeyAuthOptions {
  db: Db;
  /** How long a look-up is trusted; a key revoked elsewhere fails within this time. */
  ttlMs: number;
  /** How often `last_used_at` is written back, batched. */
  flushMs: number;
  now?: () => number;
  onFlushError?: (err: unknown) => void;
}

export interface KeyAuth {
  /** Resolves the caller of an `Authorization` header value, or throws a 401 whose code says what was wrong. */
  authenticate(header: string | undefined): Promise<Principal>;
  /** Drops cached look-ups of the given key ids (a revocation through this instance). */
  forget(keyIds: string[]): void;
  /** Drops cached look-ups of an organisation's keys (its policy, plan or limits changed here). */
  forgetOrganization(organizationId: string): void;
  /** Writes the pending `last_used_at` values. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Bounds memory under a flood of distinct keys; the oldest entries go first. */
const MAX_CACHE_ENTRIES = 10_000;

export function createKeyAuth(opts: KeyAuthOptions): KeyAuth {
  const now = opts.now ?? Date.now;
  const cache = new Map<string, CacheEntry>();
  const inflight = new Map<string, Promise<Lookup>>();
  const lastUsed = new Map<string, Date>();

  async function load(hash: string): Promise<Lookup> {
    const rows = await opts.db
      .select({
        keyId: apiKeys.id,
        revokedAt: apiKeys.revokedAt,
        userId: users.id,
        role: users.role,
        org: organizations,
        plan: plans,
      })
      .from(apiKeys)
      .innerJoin(users, eq(users.id, apiKeys.userId))
      .innerJoin(organizations, eq(organizations.id, users.organizationId))
      .leftJoin(plans, eq(plans.name, organizations.plan))
      .where(eq(apiKeys.secretHash, hash))
      .limit(1);
    const row = rows[0];
    if (row === undefined) return null;
    const { org, plan } = row;
    const principal: Principal = {
      keyId: row.keyId,
      userId: row.userId,
      organizationId: org.id,
      role: row.role,
      policy: {
        status: org.status,
        apiAccess: org.apiAccess,
        plan: org.plan,
        trialEndsAt: org.trialEndsAt?.getTime() ?? null,
        features: featuresOf(plan?.features),
        limits: {
          orgDay: org.dailyTokenLimit ?? plan?.dailyTokens ?? null,
          orgMonth: org.monthlyTokenLimit ?? plan?.monthlyTokens ?? null,
          userDay: plan?.userDailyTokens ?? null,
          userMonth: plan?.userMonthlyTokens ?? null,
        },
        requestsPerMinute: plan?.requestsPerMinute ?? null,
        residency: org.residency,
      },
    };
    return { principal, revoked: row.revokedAt !== null };
  }

  async function lookup(hash: string): Promise<Lookup> {
    const hit = cache.get(hash);
    if (hit !== undefined && hit.expiresAt > now()) return hit.value;
    // Concurrent requests with one uncached key share a single query.
    let pending = inflight.get(hash);
    if (pending === undefined) {
      pending = load(hash).finally(() => inflight.delete(hash));
      inflight.set(hash, pending);
    }
    const value = await pending;
    cache.delete(hash);
    if (cache.size >= MAX_CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    cache.set(hash, { value, expiresAt: now() + opts.ttlMs });
    return value;
  }

  async function flush(): Promise<void> {
    if (lastUsed.size === 0) return;
    const batch = [...lastUsed.entries()];
    lastUsed.clear();
    try {
      await opts.db.transaction(async (tx) => {
        for (const [id, at] of batch) {
          await tx
            .update(apiKeys)
            .set({ lastUsedAt: sql`greatest(coalesce(${apiKeys.lastUsedAt}, ${at}), ${at})` })
            .where(eq(apiKeys.id, id));
        }
      });
    } catch (err) {
      // Keep the newest values for the next attempt; losing a last-used time is not worth a failed request.
      for (const [id, at] of batch) if (!lastUsed.has(id)) lastUsed.set(id, at);
      opts.onFlushError?.(err);
    }
  }

  let flushing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    flushing = flushing.then(flush);
  }, opts.flushMs);
  timer.unref();

  return {
    async authenticate(header) {
      if (header === undefined || header.trim() === '') {
        throw unauthorized('missing_api_key', 'missing API key: send Authorization: Bearer eugpt_…');
      }
      const match = /^Bearer +(\S+) *$/i.exec(header);
      if (match === null) {
        throw unauthorized('malformed_authorization', 'the Authorization header must be "Bearer <api key>"');
      }
      const token = match[1]!;
      if (!token.startsWith(KEY_PREFIX)) {
        throw unauthorized('malformed_api_key', `API keys start with ${KEY_PREFIX}`);
      }
      // Bounds the work an oversized token can cause; real keys are 49 characters.
      const found = token.length > 200 ? null : await lookup(hashKey(token));
      if (found === null) throw unauthorized('invalid_api_key', 'the API key is not valid');
      if (found.revoked) throw unauthorized('revoked_api_key', 'the API key has been revoked');
      lastUsed.set(found.principal.keyId, new Date(now()));
      return found.principal;
    },
    forget(keyIds) {
      const ids = new Set(keyIds);
      for (const [hash, entry] of cache) {
        if (entry.value !== null && ids.has(entry.value.principal.keyId)) cache.delete(hash);
      }
    },
    forgetOrganization(organizationId) {
      for (const [hash, entry] of cache) {
        if (entry.value?.principal.organizationId === organizationId) cache.delete(hash);
      }
    },
    flush: () => (flushing = flushing.then(flush)),
    async close() {
      clearInterval(timer);
      await (flushing = flushing.then(flush));
    },
  };
}

