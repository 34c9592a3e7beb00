import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { errorResponses, listOf, pageQuery, uuidParam } from '../http/schemas.ts';
import { createOrganization, createUser, getOrganization, getUser, listOrganizations, listUsers } from '../tenancy/organizations.ts';
import { organizationView, showOrganization, showUser, userView } from './views.ts';

const security = [{ adminToken: [] }];
const name = z.string().trim().min(1, { error: 'must not be blank' }).max(200);

export const organizationRoutes: FastifyPluginAsyncZod<{ db: Db }> = async (app, { db }) => {
  app.post(
    '/organizations',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create an organisation',
        security,
        body: z.object({ name, plan: z.string().trim().min(1).max(100).optional() }),
        response: { 201: organizationView, ...errorResponses(400, 401) },
      },
    },
    async (req, reply) => reply.status(201).send(showOrganization(await createOrganization(db, req.body))),
  );

  app.get(
    '/organizations',
    {
      schema: {
        tags: ['admin'],
        summary: 'List organisations',
        security,
        querystring: z.object(pageQuery),
        response: { 200: listOf(organizationView), ...errorResponses(400, 401) },
      },
    },
    async (req) => {
      const page = await listOrganizations(db, req.query);
      return { object: 'list' as const, data: page.data.map(showOrganization), has_more: page.hasMore };
    },
  );

  app.get(
    '/organizations/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Get an organisation',
        security,
        params: z.object({ id: uuidParam }),
        response: { 200: organizationView, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => showOrganization(await getOrganization(db, req.params.id)),
  );

  app.post(
    '/users',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create a user in an organisation',
        security,
        body: z.object({
          organization_id: uuidParam,
          email: z.email({ error: 'must be an email address' }).max(320),
          role: z.enum(['owner', 'admin', 'member']).optional(),
        }),
        response: { 201: userView, ...errorResponses(400, 401, 404, 409) },
      },
    },
    async (req, reply) => {
      const { organization_id, email, role } = req.body;
      return reply.status(201).send(showUser(await createUser(db, { organizationId: organization_id, email, role })));
    },
  );

  app.get(
    '/users',
    {
      schema: {
        tags: ['admin'],
        summary: 'List users, optionally of one organisation',
        security,
        querystring: z.object({ organization_id: uuidParam.optional(), ...pageQuery }),
        response: { 200: listOf(userView), ...errorResponses(400, 401) },
      },
    },
    async (req) => {
      const page = await listUsers(db, req.query.organization_id, req.query);
      return { object: 'list' as const, data: page.data.map(showUser), has_more: page.hasMore };
    },
  );

  app.get(
    '/users/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Get a user',
        security,
        params: z.object({ id: uuidParam }),
        response: { 200: userView, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => showUser(await getUser(db, req.params.id)),
  );
};
