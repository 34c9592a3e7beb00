import { and, asc, eq, sql } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { fileIndexes, files, projectFiles, projects } from '../db/schema.ts';
import { badRequest, notFound } from '../http/api-error.ts';
import { isUuid } from '../http/ids.ts';

/**
 * A project's corpus: the files its members added for retrieval. A file is
 * indexed once (`file_indexes`), whatever the number of projects holding it;
 * adding it to a project creates that row as `pending` when there is none.
 */

export interface ProjectFileView {
  object: 'project.file';
  project_id: string;
  file_id: string;
  filename: string;
  bytes: number;
  added_by: string | null;
  /** Unix seconds. */
  created_at: number;
  index: {
    status: 'pending' | 'indexed' | 'error';
    details: string | null;
    language: string | null;
    chunks: number;
    embedding_model: string | null;
    /** Unix seconds. */
    indexed_at: number | null;
  };
}

const seconds = (d: Date | null) => (d === null ? null : Math.floor(d.getTime() / 1000));

const columns = {
  projectId: projectFiles.projectId,
  fileId: projectFiles.fileId,
  addedBy: projectFiles.addedBy,
  createdAt: projectFiles.createdAt,
  filename: files.filename,
  bytes: files.bytes,
  fileStatus: files.status,
  status: fileIndexes.status,
  details: fileIndexes.details,
  language: fileIndexes.language,
  chunks: fileIndexes.chunks,
  embeddingModel: fileIndexes.embeddingModel,
  indexedAt: fileIndexes.indexedAt,
};

type Joined = { [K in keyof typeof columns]: (typeof columns)[K]['_']['data'] | null };

function viewOf(r: Joined): ProjectFileView {
  const status = r.status ?? 'pending';
  // A file still being extracted waits for its text; the index says so rather than looking stuck.
  const details = status === 'pending' && r.fileStatus === 'uploaded' ? 'waiting for the text extraction of the file' : (r.details ?? null);
  return {
    object: 'project.file',
    project_id: r.projectId!,
    file_id: r.fileId!,
    filename: r.filename!,
    bytes: r.bytes!,
    added_by: r.addedBy ?? null,
    created_at: seconds(r.createdAt)!,
    index: {
      status,
      details,
      language: r.language ?? null,
      chunks: r.chunks ?? 0,
      embedding_model: r.embeddingModel ?? null,
      indexed_at: seconds(r.indexedAt ?? null),
    },
  };
}

const projectFileNotFound = (projectId: string, fileId: string) =>
  notFound('project_file_not_found', `file ${fileId} is not in project ${projectId}`);

async function one(db: Db, projectId: string, fileId: string): Promise<ProjectFileView> {
  const [row] = await db
    .select(columns)
    .from(projectFiles)
    .innerJoin(files, eq(files.id, projectFiles.fileId))
    .leftJoin(fileIndexes, eq(fileIndexes.fileId, projectFiles.fileId))
    .where(and(eq(projectFiles.projectId, projectId), eq(projectFiles.fileId, fileId)));
  if (row === undefined) throw projectFileNotFound(projectId, fileId);
  return viewOf(row);
}

/**
 * Adds a file to a project (idempotent) and makes sure it has an index row.
 * The caller has checked who may add it; here the file must belong to the
 * project's organisation (a file of another one is the same 404 as a missing one).
 */
export async function addProjectFile(db: Db, projectId: string, fileId: string, addedBy: string | null): Promise<ProjectFileView> {
  if (!isUuid(fileId)) throw notFound('file_not_found', `no file ${fileId}`);
  await db.transaction(async (tx) => {
    const [project] = await tx.select({ org: projects.organizationId }).from(projects).where(eq(projects.id, projectId)).for('share');
    if (project === undefined) throw notFound('project_not_found', `project ${projectId} not found`);
    const [file] = await tx.select({ org: files.organizationId }).from(files).where(eq(files.id, fileId)).for('share');
    if (file === undefined || file.org !== project.org) throw notFound('file_not_found', `no file ${fileId}`);
    await tx.insert(projectFiles).values({ projectId, fileId, addedBy }).onConflictDoNothing();
    await tx.insert(fileIndexes).values({ fileId }).onConflictDoNothing();
  });
  return one(db, projectId, fileId);
}

export async function removeProjectFile(db: Db, projectId: string, fileId: string): Promise<void> {
  if (!isUuid(fileId)) throw projectFileNotFound(projectId, fileId);
  const deleted = await db
    .delete(projectFiles)
    .where(and(eq(projectFiles.projectId, projectId), eq(projectFiles.fileId, fileId)))
    .returning({ fileId: projectFiles.fileId });
  if (deleted.length === 0) throw projectFileNotFound(projectId, fileId);
}

export interface ProjectFilePage {
  data: ProjectFileView[];
  hasMore: boolean;
}

/** The project's files, oldest first, a page at a time; `after` is the file id of the last row of the previous page. */
export async function listProjectFiles(db: Db, projectId: string, page: { limit: number; after?: string | undefined }): Promise<ProjectFilePage> {
  let cursor;
  if (page.after !== undefined) {
    if (!isUuid(page.after)) throw badRequest('invalid_after', `after: ${page.after} is not a file of this project`, 'after');
    const [anchor] = await db
      .select({ fileId: projectFiles.fileId })
      .from(projectFiles)
      .where(and(eq(projectFiles.projectId, projectId), eq(projectFiles.fileId, page.after)));
    if (anchor === undefined) throw badRequest('invalid_after', `after: ${page.after} is not a file of this project`, 'after');
    // Compared in the database: created_at has microseconds, which a JavaScript Date would round away.
    cursor = sql`(${projectFiles.createdAt}, ${projectFiles.fileId}) > (select a.created_at, a.file_id from project_files a where a.project_id = ${projectId} and a.file_id = ${page.after})`;
  }
  const rows = await db
    .select(columns)
    .from(projectFiles)
    .innerJoin(files, eq(files.id, projectFiles.fileId))
    .leftJoin(fileIndexes, eq(fileIndexes.fileId, projectFiles.fileId))
    .where(and(eq(projectFiles.projectId, projectId), cursor))
    .orderBy(asc(projectFiles.createdAt), asc(projectFiles.fileId))
    .limit(page.limit + 1);
  return { data: rows.slice(0, page.limit).map(viewOf), hasMore: rows.length > page.limit };
}
