import { and, eq, sql } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { files } from '../db/schema.ts';
import { notFound } from '../http/api-error.ts';
import { isUuid } from '../http/ids.ts';

export type FileRow = typeof files.$inferSelect;

export const PURPOSES = ['assistants', 'user_data', 'vision'] as const;
export type Purpose = (typeof PURPOSES)[number];

/** The file object of OpenAI's Files API: times in Unix seconds. */
export interface FileObject {
  id: string;
  object: 'file';
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
  status: 'uploaded' | 'processed' | 'error';
  status_details: string | null;
  expires_at: number | null;
}

const seconds = (d: Date | null) => (d === null ? null : Math.floor(d.getTime() / 1000));

export function fileObject(row: FileRow): FileObject {
  return {
    id: row.id,
    object: 'file',
    bytes: row.bytes,
    created_at: seconds(row.createdAt)!,
    filename: row.filename,
    purpose: row.purpose,
    status: row.status,
    status_details: row.statusDetails,
    expires_at: seconds(row.expiresAt),
  };
}

export const fileNotFound = (id: string) => notFound('file_not_found', `no file ${id}`);

/** The caller's file; another user's, a missing one and an id of another shape are the same 404. */
export async function findOwnedFile(db: Db, id: string, userId: string): Promise<FileRow> {
  if (!isUuid(id)) throw fileNotFound(id);
  const [row] = await db.select().from(files).where(and(eq(files.id, id), eq(files.userId, userId)));
  if (row === undefined) throw fileNotFound(id);
  return row;
}

/** Bytes all files of an organisation take. */
export async function storageUsed(db: Db, organizationId: string): Promise<number> {
  const [row] = await db
    .select({ n: sql<string>`coalesce(sum(${files.bytes}), 0)` })
    .from(files)
    .where(eq(files.organizationId, organizationId));
  return Number(row?.n ?? 0);
}

/**
 * A file name as a client sent it, made safe to store, show and put in a
 * header: no folders (a name is not a path), no control or direction-override
 * characters, at most 255 characters.
 */
export function sanitizeFilename(raw: string | undefined): string {
  const base = (raw ?? '').split(/[/\\]/).pop() ?? '';
  const clean = base
    .replace(/[\p{Cc}\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu, '')
    .trim()
    .replace(/^\.+$/, '');
  const cut = [...clean].slice(0, 255).join('');
  return cut === '' ? 'file' : cut;
}

/** A `content-disposition` header naming the file, with an ASCII fallback for old clients. */
export function contentDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`;
}
