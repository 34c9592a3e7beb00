import { createHash } from 'node:crypto';
import { fileTypeFromBuffer } from 'file-type';

/**
 * What an image is once its bytes are known, and the checks every source
 * shares: the type comes from the bytes (a name, a header or a data URL's
 * label can say anything), and only the types every vision upstream reads
 * are taken.
 */

/** The image types every vision upstream reads. */
export const IMAGE_TYPES: ReadonlySet<string> = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

export interface LoadedImage {
  mediaType: string;
  /** Base64 of the bytes, as both upstream protocols take it. */
  data: string;
  bytes: number;
  sha256: string;
}

/** Why an image could not be used: a code for the API and a sentence without any content of the image. */
export class ImageFailure extends Error {
  override name = 'ImageFailure';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const tooLarge = (max: number) => new ImageFailure('image_too_large', `the image is larger than ${max} bytes`);

/** The bytes as an image the upstreams can read, or why not. */
export async function imageOf(bytes: Buffer, maxBytes: number): Promise<LoadedImage> {
  if (bytes.length === 0) throw new ImageFailure('invalid_image_data', 'the image is empty');
  if (bytes.length > maxBytes) throw tooLarge(maxBytes);
  const found = await fileTypeFromBuffer(bytes).catch(() => undefined);
  if (found === undefined || !IMAGE_TYPES.has(found.mime)) {
    throw new ImageFailure('unsupported_image_type', 'the content is not a PNG, JPEG, GIF or WebP image');
  }
  return { mediaType: found.mime, data: bytes.toString('base64'), bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** `data:<type>[;param=value…];base64,<data>`: the only data URL form images come in. */
const DATA_URL = /^data:([a-z0-9.+-]+\/[a-z0-9.+-]+)((?:;[a-z0-9.+-]+=[^;,]*)*);base64,([A-Za-z0-9+/]*={0,2})$/i;

/** The label and the base64 of a data URL, checked for form only (the bytes are checked when they are read). */
export function parseDataUrl(url: string): { declared: string; base64: string } | ImageFailure {
  const m = DATA_URL.exec(url);
  if (m === null) {
    const label = /^data:[^,]{0,200}?(;base64)?,/i.exec(url);
    if (label !== null && label[1] === undefined) return new ImageFailure('invalid_image_data', 'a data URL image must be base64-encoded (data:image/png;base64,…)');
    return new ImageFailure('invalid_image_data', 'not a valid base64 data URL (data:image/png;base64,…)');
  }
  const declared = m[1]!.toLowerCase();
  if (!IMAGE_TYPES.has(declared)) return new ImageFailure('unsupported_image_type', 'the data URL must be a PNG, JPEG, GIF or WebP image');
  if (m[3]!.length % 4 !== 0) return new ImageFailure('invalid_image_data', 'the data URL holds incomplete base64');
  return { declared, base64: m[3]! };
}

/** The decoded size of base64 text, without decoding it. */
export const base64Bytes = (base64: string) => (base64.length / 4) * 3 - (base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0);
