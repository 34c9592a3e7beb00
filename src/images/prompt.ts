import { createHash } from 'node:crypto';
import { and, eq, inArray, sql } from 'drizzle-orm';
import { imageNote, type StoredImage } from '../conversations/store.ts';
import type { Db } from '../db/client.ts';
import { conversationItems, files } from '../db/schema.ts';
import { fileNotFound } from '../files/store.ts';
import { badRequest } from '../http/api-error.ts';
import { isUuid } from '../http/ids.ts';
import type { ChatMessage } from '../providers/types.ts';
import type { ImagePart, ResolvedItem } from '../responses/input-items.ts';
import { IMAGE_TOKENS } from '../tokens.ts';
import { imageKey, type ImageLoader, type ImageSet } from './load.ts';
import { base64Bytes, IMAGE_TYPES, parseDataUrl, type LoadedImage } from './source.ts';

/** Images in prompts: what a request's images are stored as, read for, and told as to a model that cannot see them. */

/**
 * An image part as the conversation keeps it: a reference, never the bytes.
 * A data URL keeps only its type, size and digest, so a later turn cannot
 * show it again (it gets a note instead); an uploaded file or an http(s) URL
 * is read again each time.
 */
export function storedImage(p: ImagePart, loaded: Pick<LoadedImage, 'mediaType' | 'bytes' | 'sha256'> | undefined): StoredImage {
  const base = { type: 'input_image' as const, detail: p.detail };
  const facts = { media_type: loaded?.mediaType ?? p.media_type, bytes: loaded?.bytes ?? p.bytes };
  if (p.file_id !== undefined) return { ...base, file_id: p.file_id, ...facts };
  if (p.image_url !== undefined && !p.image_url.startsWith('data:')) return { ...base, image_url: p.image_url, ...facts };
  return { ...base, ...facts, sha256: loaded?.sha256 ?? p.sha256 };
}

/** The estimate an item's images add to its tokens. */
export const imageTokens = (content: readonly { type: string }[]) =>
  content.reduce((sum, p) => sum + (p.type === 'input_image' ? IMAGE_TOKENS[(p as StoredImage).detail] : 0), 0);

/**
 * Reads the images of a request's input: its own parts strictly (a failure
 * is the request's 400 or 404), those of items it refers to as history is
 * read (one that cannot be read becomes a note).
 */
export async function inputImages(loader: ImageLoader, items: ResolvedItem[]): Promise<{ set: ImageSet; byPart: Map<ImagePart, LoadedImage> }> {
  const parts = items.flatMap((it) => (it.type === 'message' ? it.content.filter((p): p is ImagePart => p.type === 'input_image') : []));
  const own = parts.filter((p): p is ImagePart & { param: string } => p.param !== undefined);
  const byPart = new Map<ImagePart, LoadedImage>();
  for (const [i, image] of (await loader.forInput(own)).entries()) byPart.set(own[i]!, image);
  const set: ImageSet = await loader.forStored(parts.filter((p) => p.param === undefined));
  for (const [part, image] of byPart) set.set(imageKey(storedImage(part, image))!, image);
  return { set, byPart };
}

/** Messages for a model without the vision capability: every image told as a note. */
export function withoutImages(messages: ChatMessage[]): ChatMessage[] {
  return messages.map((m) => {
    if (m.role !== 'user' || typeof m.content === 'string') return m;
    const text = m.content.map((p) => (p.type === 'text' ? p.text : imageNote({ type: 'input_image', detail: p.detail, media_type: p.mediaType }))).join('\n');
    return { role: 'user', content: text };
  });
}

/** Whether any message of a conversation holds an image (its later turns then prefer a model that can see it). */
export async function historyHasImages(db: Db, conversationId: string): Promise<boolean> {
  const rows = await db
    .select({ id: conversationItems.id })
    .from(conversationItems)
    .where(and(eq(conversationItems.conversationId, conversationId), sql`${conversationItems.content} @> '[{"type":"input_image"}]'::jsonb`))
    .limit(1);
  return rows.length > 0;
}

type ImageFacts = Pick<LoadedImage, 'mediaType' | 'bytes' | 'sha256'>;

/**
 * The images of items added through the Conversations API, checked without
 * reading them: a file must be the caller's and an image (404, 400), a data
 * URL is described by its label, size and digest (its bytes are not kept).
 * An http(s) URL is fetched when a response uses it.
 */
export async function describeItemImages(db: Db, userId: string, items: ResolvedItem[]): Promise<Map<ImagePart, ImageFacts>> {
  const parts = items.flatMap((it) => (it.type === 'message' ? it.content.filter((p): p is ImagePart => p.type === 'input_image' && p.param !== undefined) : []));
  const out = new Map<ImagePart, ImageFacts>();
  const ids = [...new Set(parts.flatMap((p) => (p.file_id === undefined ? [] : [p.file_id])))];
  const bad = ids.find((id) => !isUuid(id));
  if (bad !== undefined) throw fileNotFound(bad);
  const rows = ids.length === 0 ? [] : await db.select({ id: files.id, mimeType: files.mimeType, bytes: files.bytes, sha256: files.sha256 }).from(files).where(and(inArray(files.id, ids), eq(files.userId, userId)));
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const p of parts) {
    if (p.file_id !== undefined) {
      const row = byId.get(p.file_id);
      if (row === undefined) throw fileNotFound(p.file_id);
      if (row.mimeType === null || !IMAGE_TYPES.has(row.mimeType)) {
        throw badRequest('unsupported_image_type', `${p.param}.file_id: file ${p.file_id} is not a PNG, JPEG, GIF or WebP image`, `${p.param}.file_id`);
      }
      out.set(p, { mediaType: row.mimeType, bytes: row.bytes, sha256: row.sha256 });
      continue;
    }
    const parsed = p.image_url === undefined || !p.image_url.startsWith('data:') ? undefined : parseDataUrl(p.image_url);
    if (parsed === undefined || parsed instanceof Error) continue;
    const sha256 = createHash('sha256').update(Buffer.from(parsed.base64, 'base64')).digest('hex');
    out.set(p, { mediaType: parsed.declared, bytes: base64Bytes(parsed.base64), sha256 });
  }
  return out;
}
