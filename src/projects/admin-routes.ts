import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { errorResponses, uuidParam } from '../http/schemas.ts';
import { getProject } from '../tenancy/projects.ts';
import { addProjectFile, listProjectFiles, removeProjectFile } from './corpus.ts';
import { listBody, projectFileDeleted, projectFileList, projectFilePage, projectFileSchema } from './schemas.ts';

/** A project's corpus for operators: any file of the project's organisation may be added. */

const security = [{ adminToken: [] }];

export const adminProjectFileRoutes: FastifyPluginAsyncZod<{ db: Db; onAdded: () => void }> = async (app, { db, onAdded }) => {
  app.post(
    '/projects/:id/files',
    {
      schema: {
        tags: ['admin'],
        summary: "Add a file of the project's organisation to a project (idempotent)",
        security,
        params: z.object({ id: uuidParam }),
        body: z.object({ file_id: uuidParam }),
        response: { 200: projectFileSchema, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      const added = await addProjectFile(db, req.params.id, req.body.file_id, null);
      if (added.index.status === 'pending') onAdded();
      return added;
    },
  );

  app.get(
    '/projects/:id/files',
    {
      schema: {
        tags: ['admin'],
        summary: "A project's files and the state of their index",
        security,
        params: z.object({ id: uuidParam }),
        querystring: z.object(projectFilePage),
        response: { 200: projectFileList, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      await getProject(db, req.params.id);
      return listBody(await listProjectFiles(db, req.params.id, req.query));
    },
  );

  app.delete(
    '/projects/:id/files/:file_id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Take a file out of a project',
        security,
        params: z.object({ id: uuidParam, file_id: uuidParam }),
        response: { 200: projectFileDeleted, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      await removeProjectFile(db, req.params.id, req.params.file_id);
      return { object: 'project.file' as const, project_id: req.params.id, file_id: req.params.file_id, deleted: true as const };
    },
  );
};
