import { and, eq } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { files } from '../db/schema.ts';
import { readAll, type BlobStores } from '../files/blobs.ts';
import { fileNotFound } from '../files/store.ts';
import { ApiError, badRequest } from '../http/api-error.ts';
import { isUuid } from '../http/ids.ts';
import type { ImagesConfig } from './config.ts';
import { imageUrl, type ImageFetcher } from './fetch.ts';
import { base64Bytes, IMAGE_TYPES, ImageFailure, imageOf, parseDataUrl, tooLarge, type LoadedImage } from './source.ts';

/**
 * Reads the images a prompt holds, from wherever they are: a data URL in
 * the request, an http(s) URL (fetched through the guarded fetcher), or one
 * of the caller's uploaded files (from the blob store). One loader serves one
 * request: each image is read once, however many model calls the request
 * makes, and the count and the bytes of all its images are bounded.
 */

export interface ImageSources {
  db: Db;
  blobs: BlobStores;
  fetcher: ImageFetcher;
  config: ImagesConfig;
}

/** An image part as the loader needs it: its source and where it sits in the request (absent for stored parts). */
export interface ImageRef {
  file_id?: string | undefined;
  image_url?: string | undefined;
  sha256?: string | undefined;
  param?: string | undefined;
}

/** Images read for a prompt, by the key of their stored part. */
export type ImageSet = Map<string, LoadedImage>;

/** The key a stored image part is found by; a data URL is known by its digest once read. */
export function imageKey(p: ImageRef): string | undefined {
  if (p.file_id !== undefined) return `file:${p.file_id}`;
  if (p.image_url !== undefined && !p.image_url.startsWith('data:')) return `url:${p.image_url}`;
  if (p.sha256 !== undefined) return `data:${p.sha256}`;
  return undefined;
}

export class ImageLoader {
  private readonly cache = new Map<string, Promise<LoadedImage>>();
  /** Keys of the images given to this request so far, and their bytes: the bounds apply to distinct images. */
  private readonly given = new Map<string, number>();

  constructor(
    private readonly sources: ImageSources,
    private readonly userId: string,
  ) {}

  private get config() {
    return this.sources.config;
  }

  /**
   * The request's own images, in order, each checked: a failure is the
   * request's error, naming the part (404 for a file that is not the caller's).
   */
  async forInput(parts: (ImageRef & { param: string })[]): Promise<LoadedImage[]> {
    if (parts.length > this.config.max_per_request) {
      throw badRequest('too_many_images', `the input holds ${parts.length} images; at most ${this.config.max_per_request} are taken`, parts[this.config.max_per_request]!.param);
    }
    const out: LoadedImage[] = [];
    for (const part of parts) {
      let image: LoadedImage;
      try {
        image = await this.read(part);
      } catch (err) {
        if (!(err instanceof ImageFailure)) throw err;
        const where = part.file_id === undefined ? `${part.param}.image_url` : `${part.param}.file_id`;
        throw badRequest(err.code, `${where}: ${err.message}`, where);
      }
      if (!this.give(image, imageKey(part))) {
        throw badRequest('image_too_large', `${part.param}: the input's images together are larger than ${this.config.max_total_bytes} bytes`, part.param);
      }
      out.push(image);
    }
    return out;
  }

  /**
   * Images of stored parts (history, or items a request refers to), newest
   * first within what the request's images leave of the bounds. One that can
   * no longer be read (a deleted file, a URL that fails, a data URL, whose
   * bytes were never kept) is left out: the prompt says so in its place.
   */
  async forStored(parts: ImageRef[]): Promise<ImageSet> {
    const set: ImageSet = new Map();
    if (parts.length === 0) return set;
    // All of them share one fetch time limit: a history of dead links must not hold a turn for one timeout each.
    const deadline = AbortSignal.timeout(this.config.timeout_ms);
    for (const part of [...parts].reverse()) {
      const key = imageKey(part);
      if (key === undefined || set.has(key)) continue;
      if (!this.given.has(key) && this.given.size >= this.config.max_per_request) break;
      if (part.file_id === undefined && part.image_url === undefined) continue;
      if (deadline.aborted && !this.cache.has(key)) continue;
      const image = await this.read(part, deadline).catch((err: unknown) => {
        if (err instanceof ImageFailure || err instanceof ApiError || deadline.aborted) return undefined;
        throw err;
      });
      if (image !== undefined && this.give(image, key)) set.set(key, image);
    }
    return set;
  }

  /** Counts an image against the request's bounds; false when it would pass the bytes of all images. */
  private give(image: LoadedImage, key = `data:${image.sha256}`): boolean {
    if (this.given.has(key)) return true;
    const used = [...this.given.values()].reduce((a, b) => a + b, 0);
    if (used + image.bytes > this.config.max_total_bytes) return false;
    this.given.set(key, image.bytes);
    return true;
  }

  private read(part: ImageRef, signal?: AbortSignal): Promise<LoadedImage> {
    if (part.image_url?.startsWith('data:') === true) return this.fromDataUrl(part.image_url);
    const key = imageKey(part)!;
    let found = this.cache.get(key);
    if (found === undefined) {
      found = part.file_id !== undefined ? this.fromFile(part.file_id) : this.fromUrl(part.image_url!, signal);
      this.cache.set(key, found);
    }
    return found;
  }

  private async fromDataUrl(url: string): Promise<LoadedImage> {
    const parsed = parseDataUrl(url);
    if (parsed instanceof ImageFailure) throw parsed;
    if (base64Bytes(parsed.base64) > this.config.max_bytes) throw tooLarge(this.config.max_bytes);
    return imageOf(Buffer.from(parsed.base64, 'base64'), this.config.max_bytes);
  }

  private async fromUrl(raw: string, signal?: AbortSignal): Promise<LoadedImage> {
    const url = imageUrl(raw);
    if (url instanceof ImageFailure) throw url;
    return imageOf(await this.sources.fetcher.fetch(url, signal), this.config.max_bytes);
  }

  /** One of the caller's uploaded files, which must have been detected as an image when it was uploaded. */
  private async fromFile(id: string): Promise<LoadedImage> {
    if (!isUuid(id)) throw fileNotFound(id);
    const { db, blobs } = this.sources;
    const [row] = await db
      .select({ mimeType: files.mimeType, bytes: files.bytes, storage: files.storage, storageKey: files.storageKey })
      .from(files)
      .where(and(eq(files.id, id), eq(files.userId, this.userId)));
    if (row === undefined) throw fileNotFound(id);
    if (row.mimeType === null || !IMAGE_TYPES.has(row.mimeType)) {
      throw new ImageFailure('unsupported_image_type', `file ${id} is not a PNG, JPEG, GIF or WebP image`);
    }
    if (row.bytes > this.config.max_bytes) throw tooLarge(this.config.max_bytes);
    if (!blobs.has(row.storage)) throw new ImageFailure('image_unavailable', `file ${id} is kept in a store this server cannot read`);
    return imageOf(await readAll(blobs.of(row.storage).get(row.storageKey)), this.config.max_bytes);
  }
}
