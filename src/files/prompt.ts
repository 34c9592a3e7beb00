import { and, eq, inArray } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { files } from '../db/schema.ts';
import { ApiError, conflict } from '../http/api-error.ts';
import { isUuid } from '../http/ids.ts';
import { fileNotFound } from './store.ts';

/**
 * Files in prompts. A message keeps an `input_file` part as a reference
 * (`file_id`, `filename`); the file's text is read each time a prompt is
 * built, so a conversation's history follows the file (and says so when it
 * was deleted) instead of carrying a copy of it in every item.
 */

/** A file's text as it goes into one prompt, by file id. */
export interface FileText {
  filename: string;
  text: string;
}

export type FileTexts = Map<string, FileText>;

const attr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

/** How a file's text stands in a message: labelled, so the model can tell documents from the question and name them. */
export function renderFile(id: string, file: FileText | undefined, fallbackName: string | undefined): string {
  if (file === undefined) return `<file name="${attr(fallbackName ?? 'file')}" id="${attr(id)}">[this file was deleted]</file>`;
  return `<file name="${attr(file.filename)}" id="${attr(id)}">\n${file.text}\n</file>`;
}

/**
 * The caller's files named by a request, checked: each must be theirs (404
 * otherwise), extracted (409 while it is, 422 when it could not be).
 */
export async function filesForInput(db: Db, userId: string, ids: string[]): Promise<FileTexts> {
  const unique = [...new Set(ids)];
  const out: FileTexts = new Map();
  if (unique.length === 0) return out;
  const bad = unique.find((id) => !isUuid(id));
  if (bad !== undefined) throw fileNotFound(bad);
  const rows = await db
    .select({ id: files.id, filename: files.filename, status: files.status, statusDetails: files.statusDetails, text: files.text })
    .from(files)
    .where(and(inArray(files.id, unique), eq(files.userId, userId)));
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const id of unique) {
    const row = byId.get(id);
    if (row === undefined) throw fileNotFound(id);
    if (row.status === 'uploaded') throw conflict('file_not_ready', `file ${id} is still being processed; retry when its status is processed`, 'input');
    if (row.status === 'error' || row.text === null) {
      throw new ApiError(422, 'invalid_request_error', 'file_unusable', `file ${id} cannot be used: ${row.statusDetails ?? 'it has no text'}`, 'input');
    }
    out.set(id, { filename: row.filename, text: row.text });
  }
  return out;
}

/** Texts of files named in stored history: those still there; a deleted one is left out (and rendered as deleted). */
export async function filesForHistory(db: Db, ids: string[]): Promise<FileTexts> {
  const unique = [...new Set(ids)].filter(isUuid);
  if (unique.length === 0) return new Map();
  const rows = await db
    .select({ id: files.id, filename: files.filename, text: files.text })
    .from(files)
    .where(and(inArray(files.id, unique), eq(files.status, 'processed')));
  return new Map(rows.map((r) => [r.id, { filename: r.filename, text: r.text ?? '' }]));
}

/** The ids of the `input_file` parts of stored message contents. */
export function fileIdsOf(contents: unknown[]): string[] {
  const ids: string[] = [];
  for (const content of contents) {
    if (!Array.isArray(content)) continue;
    for (const p of content as { type?: string; file_id?: string }[]) if (p.type === 'input_file' && typeof p.file_id === 'string') ids.push(p.file_id);
  }
  return ids;
}
