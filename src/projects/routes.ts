import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf } from '../auth/hook.ts';
import type { Db } from '../db/client.ts';
import { findOwnedFile } from '../files/store.ts';
import { errorResponses, uuidParam } from '../http/schemas.ts';
import { storableString } from '../http/text.ts';
import { requireFeature } from '../limits/policy.ts';
import { assertProjectMember } from '../tenancy/projects.ts';
import { addProjectFile, listProjectFiles, removeProjectFile } from './corpus.ts';
import { listBody, projectFileDeleted, projectFileList, projectFilePage, projectFileSchema } from './schemas.ts';

/**
 * A project's corpus through the public API. Only members see or change it:
 * a project of the caller's organisation it is not a member of is 403, any
 * other (another organisation's, a missing one) 404. A member adds only files
 * of their own; once added, every member's retrieval reads them.
 */

const security = [{ apiKey: [] }];
const fileIdParam = storableString().min(1).max(128);

export const projectFileRoutes: FastifyPluginAsyncZod<{ db: Db; onAdded: () => void }> = async (app, { db, onAdded }) => {
  const member = async (principal: ReturnType<typeof principalOf>, projectId: string) => {
    requireFeature(principal, 'projects', 'projects');
    await assertProjectMember(db, projectId, principal);
  };

  app.post(
    '/projects/:id/files',
    {
      schema: {
        tags: ['projects'],
        summary: 'Add one of your files to a project you are a member of (idempotent); it is indexed for retrieval',
        security,
        params: z.object({ id: uuidParam }),
        body: z.object({ file_id: fileIdParam }),
        response: { 200: projectFileSchema, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (req) => {
      const principal = principalOf(req);
      await member(principal, req.params.id);
      requireFeature(principal, 'file_upload', 'file uploads');
      const file = await findOwnedFile(db, req.body.file_id, principal.userId);
      const added = await addProjectFile(db, req.params.id, file.id, principal.userId);
      if (added.index.status === 'pending') onAdded();
      return added;
    },
  );

  app.get(
    '/projects/:id/files',
    {
      schema: {
        tags: ['projects'],
        summary: "A project's files and the state of their index, oldest first",
        security,
        params: z.object({ id: uuidParam }),
        querystring: z.object(projectFilePage),
        response: { 200: projectFileList, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (req) => {
      await member(principalOf(req), req.params.id);
      return listBody(await listProjectFiles(db, req.params.id, req.query));
    },
  );

  app.delete(
    '/projects/:id/files/:file_id',
    {
      schema: {
        tags: ['projects'],
        summary: 'Take a file out of a project: it is no longer retrieved there (the file itself stays)',
        security,
        params: z.object({ id: uuidParam, file_id: fileIdParam }),
        response: { 200: projectFileDeleted, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (req) => {
      await member(principalOf(req), req.params.id);
      await removeProjectFile(db, req.params.id, req.params.file_id);
      return { object: 'project.file' as const, project_id: req.params.id, file_id: req.params.file_id, deleted: true as const };
    },
  );
};
