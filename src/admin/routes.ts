import type { FastifyPluginAsync } from 'fastify';
import type { KeyAuth } from '../auth/key-auth.ts';
import type { Db } from '../db/client.ts';
import type { UploadOptions } from '../files/upload.ts';
import { auditAdminScope, auditRoutes, createAuditRecorder } from './audit.ts';
import { dataRoutes } from './data-routes.ts';
import { adminFileRoutes } from './file-routes.ts';
import { requireAdminToken } from './guard.ts';
import { keyRoutes } from './key-routes.ts';
import { organizationRoutes } from './organization-routes.ts';
import { planRoutes } from './plan-routes.ts';
import { projectRoutes } from './project-routes.ts';
import { adminProjectFileRoutes } from '../projects/admin-routes.ts';

export interface AdminOptions {
  db: Db;
  adminToken: string | undefined;
  keyAuth: KeyAuth;
  now: () => number;
  /** What uploads need: the blob stores, limits and extraction (as for /v1/files). */
  files: UploadOptions;
  /** A file was added to a project: its indexing can start now. */
  onProjectFileAdded: () => void;
}

/** `/admin/v1`: tenancy and key management for operators and the `eugpt` CLI. */
export const adminRoutes: FastifyPluginAsync<AdminOptions> = async (app, opts) => {
  const audit = createAuditRecorder({ db: opts.db, adminToken: opts.adminToken, now: opts.now, prefix: app.prefix });
  requireAdminToken(app, opts.adminToken, (req, reason) => audit.recordAuthFailure(req, reason));
  // Before any route: the scope checks each mutating route has an audit action as it is declared.
  auditAdminScope(app, audit);
  await app.register(organizationRoutes, { db: opts.db, keyAuth: opts.keyAuth, now: opts.now });
  await app.register(planRoutes, { db: opts.db });
  await app.register(keyRoutes, { db: opts.db, keyAuth: opts.keyAuth });
  await app.register(projectRoutes, { db: opts.db });
  await app.register(adminProjectFileRoutes, { db: opts.db, onAdded: opts.onProjectFileAdded });
  await app.register(dataRoutes, { db: opts.db, keyAuth: opts.keyAuth, now: opts.now, blobs: opts.files.blobs });
  await app.register(adminFileRoutes, opts.files);
  await app.register(auditRoutes, { db: opts.db });
};
