import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { errorResponses, listOf, pageQuery, uuidParam } from '../http/schemas.ts';
import { storableString } from '../http/text.ts';
import {
  addProjectMember,
  createProject,
  getProject,
  listProjectMembers,
  listProjects,
  removeProjectMember,
} from '../tenancy/projects.ts';
import { projectMemberView, projectView, showProject, showProjectMember } from './views.ts';

const security = [{ adminToken: [] }];

export const projectRoutes: FastifyPluginAsyncZod<{ db: Db }> = async (app, { db }) => {
  app.post(
    '/projects',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create a project in an organisation',
        security,
        body: z.object({ organization_id: uuidParam, name: storableString().trim().min(1, { error: 'must not be blank' }).max(200) }),
        response: { 201: projectView, ...errorResponses(400, 401, 404, 409) },
      },
    },
    async (req, reply) => {
      const row = await createProject(db, { organizationId: req.body.organization_id, name: req.body.name });
      return reply.status(201).send(showProject(row));
    },
  );

  app.get(
    '/projects',
    {
      schema: {
        tags: ['admin'],
        summary: 'List projects, optionally of one organisation',
        security,
        querystring: z.object({ organization_id: uuidParam.optional(), ...pageQuery }),
        response: { 200: listOf(projectView), ...errorResponses(400, 401) },
      },
    },
    async (req) => {
      const page = await listProjects(db, req.query.organization_id, req.query);
      return { object: 'list' as const, data: page.data.map(showProject), has_more: page.hasMore };
    },
  );

  app.get(
    '/projects/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Get a project',
        security,
        params: z.object({ id: uuidParam }),
        response: { 200: projectView, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => showProject(await getProject(db, req.params.id)),
  );

  app.post(
    '/projects/:id/members',
    {
      schema: {
        tags: ['admin'],
        summary: 'Add a user of the same organisation to a project (idempotent)',
        security,
        params: z.object({ id: uuidParam }),
        body: z.object({ user_id: uuidParam }),
        response: { 200: projectMemberView, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => showProjectMember(await addProjectMember(db, req.params.id, req.body.user_id)),
  );

  app.get(
    '/projects/:id/members',
    {
      schema: {
        tags: ['admin'],
        summary: "List a project's members",
        security,
        params: z.object({ id: uuidParam }),
        response: { 200: z.object({ object: z.literal('list'), data: z.array(projectMemberView) }), ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => ({ object: 'list' as const, data: (await listProjectMembers(db, req.params.id)).map(showProjectMember) }),
  );

  app.delete(
    '/projects/:id/members/:user_id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Remove a user from a project',
        security,
        params: z.object({ id: uuidParam, user_id: uuidParam }),
        response: { 200: z.object({ object: z.literal('project_member'), project_id: z.uuid(), user_id: z.uuid(), deleted: z.literal(true) }), ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      await removeProjectMember(db, req.params.id, req.params.user_id);
      return { object: 'project_member' as const, project_id: req.params.id, user_id: req.params.user_id, deleted: true as const };
    },
  );
};
