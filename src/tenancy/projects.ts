import { and, eq } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { isUniqueViolation } from '../db/errors.ts';
import { keyset, toPage, type Page, type PageQuery } from '../db/page.ts';
import { projectMembers, projects, users } from '../db/schema.ts';
import { badRequest, conflict, forbidden, notFound } from '../http/api-error.ts';
import { lockOrganization } from './organizations.ts';

export type Project = typeof projects.$inferSelect;
export type ProjectMember = typeof projectMembers.$inferSelect;

export async function createProject(db: Db, input: { organizationId: string; name: string }): Promise<Project> {
  return db.transaction(async (tx) => {
    await lockOrganization(tx, input.organizationId);
    try {
      const [row] = await tx.insert(projects).values(input).returning();
      return row!;
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw conflict('project_name_taken', `the organisation already has a project named ${input.name}`, 'name');
      }
      throw err;
    }
  });
}

export async function getProject(db: Db, id: string): Promise<Project> {
  const [row] = await db.select().from(projects).where(eq(projects.id, id));
  if (row === undefined) throw notFound('project_not_found', `project ${id} not found`);
  return row;
}

export async function listProjects(db: Db, organizationId: string | undefined, page: PageQuery): Promise<Page<Project>> {
  const filter = organizationId === undefined ? undefined : eq(projects.organizationId, organizationId);
  const q = keyset('projects', projects.createdAt, projects.id, page, filter);
  const rows = await db.select().from(projects).where(q.where).orderBy(...q.orderBy).limit(q.limit);
  return toPage(rows, page.limit);
}

/** Adds a user of the project's organisation; adding a member again is a no-op that returns the membership. */
export async function addProjectMember(db: Db, projectId: string, userId: string): Promise<ProjectMember> {
  return db.transaction(async (tx) => {
    const [project] = await tx.select().from(projects).where(eq(projects.id, projectId)).for('share');
    if (project === undefined) throw notFound('project_not_found', `project ${projectId} not found`);
    const [user] = await tx.select().from(users).where(eq(users.id, userId)).for('share');
    if (user === undefined) throw notFound('user_not_found', `user ${userId} not found`);
    if (user.organizationId !== project.organizationId) {
      throw badRequest('user_not_in_organization', 'the user belongs to another organisation than the project', 'user_id');
    }
    await tx.insert(projectMembers).values({ projectId, userId }).onConflictDoNothing();
    const [row] = await tx
      .select()
      .from(projectMembers)
      .where(and(eq(projectMembers.projectId, projectId), eq(projectMembers.userId, userId)));
    return row!;
  });
}

export async function removeProjectMember(db: Db, projectId: string, userId: string): Promise<void> {
  const deleted = await db
    .delete(projectMembers)
    .where(and(eq(projectMembers.projectId, projectId), eq(projectMembers.userId, userId)))
    .returning({ userId: projectMembers.userId });
  if (deleted.length === 0) throw notFound('project_member_not_found', `user ${userId} is not a member of project ${projectId}`);
}

export async function listProjectMembers(db: Db, projectId: string): Promise<ProjectMember[]> {
  await getProject(db, projectId);
  return db.select().from(projectMembers).where(eq(projectMembers.projectId, projectId)).orderBy(projectMembers.createdAt);
}

/**
 * The check behind `project_id` on `/v1` routes: an unknown project, or one of
 * another organisation (whose existence is none of the caller's business), is
 * 404; a project of the caller's organisation it is not a member of is 403.
 */
export async function assertProjectMember(db: Db, projectId: string, caller: { userId: string; organizationId: string }): Promise<Project> {
  const [row] = await db
    .select({ project: projects, memberId: projectMembers.userId })
    .from(projects)
    .leftJoin(projectMembers, and(eq(projectMembers.projectId, projects.id), eq(projectMembers.userId, caller.userId)))
    .where(and(eq(projects.id, projectId), eq(projects.organizationId, caller.organizationId)));
  if (row === undefined) throw notFound('project_not_found', `project ${projectId} not found`);
  if (row.memberId === null) throw forbidden('project_forbidden', 'project membership required');
  return row.project;
}
