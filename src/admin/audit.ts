import { createHash } from 'node:crypto';
import { and, desc, eq, gte, lt, type SQL } from 'drizzle-orm';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { auditEvents } from '../db/schema.ts';
import { errorResponses, listOf } from '../http/schemas.ts';

/**
 * The audit trail of the admin API: one row per successful change, and a
 * rate-limited row for refused admin tokens. Rows are written before the
 * answer leaves (an `onSend` hook), so whoever reads the log right after an
 * action sees it; a write that fails is logged with the whole row.
 */

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

interface ActionSpec {
  action: string;
  targetType: string;
  /** Where the target's id is: the created resource's `id` in the answer, or a URL parameter. */
  targetId: { from: 'response' } | { from: 'param'; name: string };
}

const created = (action: string, targetType: string): ActionSpec => ({ action, targetType, targetId: { from: 'response' } });
const byParam = (action: string, targetType: string, name = 'id'): ActionSpec => ({ action, targetType, targetId: { from: 'param', name } });

/**
 * Every mutating admin route by `METHOD path` (the path below `/admin/v1`).
 * The admin scope refuses to start with a mutating route missing here, so a
 * new route cannot go unaudited by accident.
 */
export const AUDITED_ROUTES: Readonly<Record<string, ActionSpec>> = {
  'POST /organizations': created('organization.create', 'organization'),
  'PATCH /organizations/:id': byParam('organization.update', 'organization'),
  'POST /users': created('user.create', 'user'),
  'POST /api-keys': created('api_key.create', 'api_key'),
  'POST /api-keys/:id/revoke': byParam('api_key.revoke', 'api_key'),
  'PUT /plans/:name': byParam('plan.put', 'plan', 'name'),
  'POST /projects': created('project.create', 'project'),
  'POST /projects/:id/members': byParam('project.member.add', 'project'),
  'DELETE /projects/:id/members/:user_id': byParam('project.member.remove', 'project'),
  'POST /projects/:id/files': byParam('project.file.add', 'project'),
  'DELETE /projects/:id/files/:file_id': byParam('project.file.remove', 'project'),
  'POST /users/:id/export': byParam('user.export', 'user'),
  'POST /users/:id/erase': byParam('user.erase', 'user'),
  'POST /organizations/:id/export': byParam('organization.export', 'organization'),
  'POST /organizations/:id/erase': byParam('organization.erase', 'organization'),
  'POST /users/:id/files': created('file.upload', 'file'),
  'DELETE /users/:id/files/:file_id': byParam('file.delete', 'file', 'file_id'),
};

/**
 * Body fields whose values are kept: ids, enums, numbers and booleans that say
 * what the change was. Every other field (names, emails, labels) is recorded
 * by name only: free text may be personal data, and a key or secret must never
 * land in a table nobody can clean.
 */
const KEPT_VALUES = new Set([
  // A URL's id that is not the target: the user whose file an operator uploaded.
  'id',
  'organization_id',
  'user_id',
  'file_id',
  'plan',
  'status',
  'role',
  'api_access',
  'daily_token_limit',
  'monthly_token_limit',
  'trial_ends_at',
  'daily_tokens',
  'monthly_tokens',
  'user_daily_tokens',
  'user_monthly_tokens',
  'requests_per_minute',
  'trial_days',
  'retention_days',
  'residency',
  'confirm',
]);

const isScalar = (v: unknown): v is string | number | boolean | null =>
  v === null || typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && v.length <= 64);

/** `fields`: the names the request set; then the kept values, and the URL parameters other than the target. */
export function auditDetails(spec: ActionSpec, body: unknown, params: unknown): Record<string, unknown> {
  const details: Record<string, unknown> = {};
  if (body !== null && typeof body === 'object' && !Array.isArray(body)) {
    const entries = Object.entries(body as Record<string, unknown>).filter(([, v]) => v !== undefined);
    details.fields = entries.map(([k]) => k).sort();
    for (const [k, v] of entries) if (KEPT_VALUES.has(k) && isScalar(v)) details[k] = v;
  }
  if (params !== null && typeof params === 'object') {
    for (const [k, v] of Object.entries(params as Record<string, unknown>)) {
      if (spec.targetId.from === 'param' && spec.targetId.name === k) continue;
      if (KEPT_VALUES.has(k) && isScalar(v)) details[k] = v;
    }
  }
  return details;
}

/** `admin:` and the first 12 hex digits of the token's SHA-256: tells tokens apart across a rotation, reveals nothing. */
export const adminActor = (token: string) => `admin:${createHash('sha256').update(token, 'utf8').digest('hex').slice(0, 12)}`;

/** A refused token has no known owner; its hash is not kept either, as it could help confirm a guess. */
const ANONYMOUS = 'anonymous';

export const AUTH_FAILED = 'admin.auth_failed';
const AUTH_FAILURE_WINDOW_MS = 60_000;
/** Beyond this many addresses within a minute, further failures are only logged: the memory stays bounded. */
const MAX_TRACKED_ADDRESSES = 10_000;

type NewAuditEvent = typeof auditEvents.$inferInsert;

export interface AuditRecorder {
  /** Records a successful mutating request, if its route is audited. */
  recordSuccess(req: FastifyRequest, statusCode: number, payload: unknown): Promise<void>;
  /** Records a refused admin token, at most once per client address and minute. */
  recordAuthFailure(req: FastifyRequest, reason: 'missing' | 'invalid'): Promise<void>;
}

export function createAuditRecorder(opts: { db: Db; adminToken: string | undefined; now: () => number; prefix: string }): AuditRecorder {
  const actor = opts.adminToken === undefined ? ANONYMOUS : adminActor(opts.adminToken);
  // Kept in memory, per instance: a brute force must not cost a database write per attempt.
  // With several instances behind a balancer, each records at most one row per address and minute.
  const lastFailure = new Map<string, number>();

  async function write(log: FastifyBaseLogger, row: NewAuditEvent): Promise<void> {
    try {
      await opts.db.insert(auditEvents).values(row);
    } catch (err) {
      // The change itself is done, so the client still gets its answer; the row survives in the log.
      log.error({ err, audit_event: row }, 'could not write the audit event');
    }
  }

  function targetIdOf(spec: ActionSpec, req: FastifyRequest, payload: unknown): string | null {
    if (spec.targetId.from === 'param') {
      const v = (req.params as Record<string, unknown> | undefined)?.[spec.targetId.name];
      return typeof v === 'string' ? v : null;
    }
    // onSend sees the serialised answer; admin answers are small JSON documents.
    if (typeof payload !== 'string') return null;
    try {
      const id = (JSON.parse(payload) as { id?: unknown }).id;
      return typeof id === 'string' ? id : null;
    } catch {
      return null;
    }
  }

  function allowFailure(ip: string): boolean {
    const t = opts.now();
    const last = lastFailure.get(ip);
    if (last !== undefined && t - last < AUTH_FAILURE_WINDOW_MS) return false;
    if (last === undefined && lastFailure.size >= MAX_TRACKED_ADDRESSES) {
      for (const [k, v] of lastFailure) if (t - v >= AUTH_FAILURE_WINDOW_MS) lastFailure.delete(k);
      if (lastFailure.size >= MAX_TRACKED_ADDRESSES) return false;
    }
    lastFailure.set(ip, t);
    return true;
  }

  return {
    async recordSuccess(req, statusCode, payload) {
      if (statusCode < 200 || statusCode >= 300 || !MUTATING.has(req.method)) return;
      const url = req.routeOptions.url;
      if (url === undefined) return;
      const spec = AUDITED_ROUTES[`${req.method} ${url.slice(opts.prefix.length)}`];
      if (spec === undefined) return;
      await write(req.log, {
        actor,
        action: spec.action,
        targetType: spec.targetType,
        targetId: targetIdOf(spec, req, payload),
        ip: req.ip,
        requestId: req.id,
        details: auditDetails(spec, req.body, req.params),
      });
    },

    async recordAuthFailure(req, reason) {
      if (!allowFailure(req.ip)) {
        req.log.warn({ reason }, 'admin token refused again within a minute: not audited again');
        return;
      }
      await write(req.log, {
        actor: ANONYMOUS,
        action: AUTH_FAILED,
        targetType: null,
        targetId: null,
        ip: req.ip,
        requestId: req.id,
        // The route pattern, not the URL: a query string could carry anything.
        details: { reason, method: req.method, route: req.routeOptions.url ?? null },
      });
    },
  };
}

/**
 * Hooks the recorder into an admin scope: checks each mutating route has an
 * action as it is declared, and records successful ones before their answer is sent.
 */
export function auditAdminScope(app: FastifyInstance, recorder: AuditRecorder): void {
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (!MUTATING.has(method)) continue;
      const key = `${method} ${route.url.slice(app.prefix.length)}`;
      if (AUDITED_ROUTES[key] === undefined) throw new Error(`admin route ${key} has no audit action: add it to AUDITED_ROUTES`);
    }
  });
  app.addHook('onSend', async (req, reply, payload) => {
    await recorder.recordSuccess(req, reply.statusCode, payload);
    return payload;
  });
}

const auditEventView = z
  .object({
    id: z.number().int(),
    object: z.literal('audit_event'),
    at: z.string().describe('ISO 8601'),
    actor: z.string().describe('`admin:` and a fingerprint of the admin token, or `anonymous` for a refused token'),
    action: z.string().describe('e.g. organization.create, api_key.revoke, admin.auth_failed'),
    target_type: z.string().nullable(),
    target_id: z.string().nullable(),
    ip: z.string().nullable(),
    request_id: z.string().nullable(),
    details: z.record(z.string(), z.unknown()).describe('The fields the request set, and the values that are safe to keep'),
  })
  .meta({ id: 'AuditEvent' });

type AuditEvent = typeof auditEvents.$inferSelect;

const showAuditEvent = (e: AuditEvent): z.infer<typeof auditEventView> => ({
  id: e.id,
  object: 'audit_event',
  at: e.at.toISOString(),
  actor: e.actor,
  action: e.action,
  target_type: e.targetType,
  target_id: e.targetId,
  ip: e.ip,
  request_id: e.requestId,
  details: (e.details ?? {}) as Record<string, unknown>,
});

const filterText = z.string().min(1).max(200);

export const auditQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100).describe('Page size, 1 to 1000'),
  before: z.coerce.number().int().min(1).optional().describe('Id of the last event of the previous page: the next page holds older events'),
  action: filterText.optional(),
  target_type: filterText.optional(),
  target_id: filterText.optional(),
  since: z.iso.datetime({ offset: true }).optional().describe('Only events at or after this time'),
  until: z.iso.datetime({ offset: true }).optional().describe('Only events before this time'),
});

export async function listAuditEvents(db: Db, q: z.infer<typeof auditQuery>): Promise<{ data: AuditEvent[]; hasMore: boolean }> {
  const where: SQL[] = [];
  if (q.before !== undefined) where.push(lt(auditEvents.id, q.before));
  if (q.action !== undefined) where.push(eq(auditEvents.action, q.action));
  if (q.target_type !== undefined) where.push(eq(auditEvents.targetType, q.target_type));
  if (q.target_id !== undefined) where.push(eq(auditEvents.targetId, q.target_id));
  if (q.since !== undefined) where.push(gte(auditEvents.at, new Date(q.since)));
  // `until` is exclusive, so consecutive windows never show an event twice.
  if (q.until !== undefined) where.push(lt(auditEvents.at, new Date(q.until)));
  // Ids grow with every insert, so they order events by time and make a stable cursor.
  const rows = await db
    .select()
    .from(auditEvents)
    .where(where.length === 0 ? undefined : and(...where))
    .orderBy(desc(auditEvents.id))
    .limit(q.limit + 1);
  return { data: rows.slice(0, q.limit), hasMore: rows.length > q.limit };
}

export const auditRoutes: FastifyPluginAsyncZod<{ db: Db }> = async (app, { db }) => {
  app.get(
    '/audit',
    {
      schema: {
        tags: ['admin'],
        summary: 'The audit log of admin actions, newest first',
        security: [{ adminToken: [] }],
        querystring: auditQuery,
        response: { 200: listOf(auditEventView), ...errorResponses(400, 401) },
      },
    },
    async (req) => {
      const page = await listAuditEvents(db, req.query);
      return { object: 'list' as const, data: page.data.map(showAuditEvent), has_more: page.hasMore };
    },
  );
};
