import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { and, asc, eq, gte, sql } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { blobChunks } from '../db/schema.ts';

/**
 * Where the bytes of uploaded files live. The interface is kept to what every
 * backend can do cheaply (write a stream once, read it back as a stream,
 * delete), so an object store can be added next to the database one.
 */
export interface BlobStore {
  readonly kind: 'database' | 's3';
  /**
   * Writes the stream under `key`. With `maxBytes`, a stream that grows past
   * it fails with BlobTooLarge as soon as it does, without being read further.
   * A put that fails leaves nothing stored under the key.
   */
  put(key: string, body: AsyncIterable<Uint8Array>, opts?: { maxBytes?: number }): Promise<{ bytes: number; sha256: string }>;
  get(key: string): Readable;
  delete(key: string): Promise<void>;
  /**
   * Removes whatever a write that never finished may have left under `key`
   * (for an object store, its unfinished multipart uploads too). Used on
   * failed puts and by the sweep of blobs a crash left behind.
   */
  discard(key: string): Promise<void>;
}

/**
 * The stores a deployment can read: the one new files go to, and every
 * other one configured. A file is read and deleted through the store its
 * row names, so a deployment that moved to S3 still serves its older files
 * from the database.
 */
export class BlobStores {
  private readonly byKind: Map<BlobStore['kind'], BlobStore>;

  constructor(
    readonly current: BlobStore,
    others: BlobStore[] = [],
  ) {
    this.byKind = new Map([...others, current].map((s) => [s.kind, s]));
  }

  of(kind: BlobStore['kind']): BlobStore {
    const store = this.byKind.get(kind);
    if (store === undefined) throw new Error(`a file is kept in the ${kind} blob store, which is not configured (EUGPT_BLOB_STORE)`);
    return store;
  }

  has(kind: BlobStore['kind']): boolean {
    return this.byKind.has(kind);
  }

  get kinds(): BlobStore['kind'][] {
    return [...this.byKind.keys()];
  }
}

export class BlobTooLarge extends Error {
  override name = 'BlobTooLarge';
  constructor(readonly maxBytes: number) {
    super(`the content is larger than ${maxBytes} bytes`);
  }
}

/** Each row holds this much: small enough that no row is big, large enough that a 50 MB file is 200 rows. */
export const CHUNK_BYTES = 256 * 1024;

/**
 * The blob store in the database, one row per chunk. An upload is written a
 * chunk at a time, outside any transaction: a transaction open for as long
 * as a slow client takes to upload would hold a connection (and, on PGlite,
 * the only one) for that long. A failed put deletes what it wrote instead.
 */
export class DatabaseBlobStore implements BlobStore {
  readonly kind = 'database' as const;

  constructor(
    private readonly db: Db,
    private readonly chunkBytes = CHUNK_BYTES,
  ) {}

  async put(key: string, body: AsyncIterable<Uint8Array>, opts: { maxBytes?: number } = {}): Promise<{ bytes: number; sha256: string }> {
    const hash = createHash('sha256');
    let bytes = 0;
    let seq = 0;
    // Incoming pieces are collected until a chunk is full; only that chunk is ever buffered.
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async (all: boolean) => {
      while (pendingBytes >= this.chunkBytes || (all && pendingBytes > 0)) {
        const joined = Buffer.concat(pending, pendingBytes);
        const data = joined.subarray(0, Math.min(this.chunkBytes, joined.length));
        const rest = joined.subarray(data.length);
        pending = rest.length > 0 ? [rest] : [];
        pendingBytes = rest.length;
        await this.db.insert(blobChunks).values({ key, seq: seq++, data: Buffer.from(data) });
      }
    };
    try {
      for await (const piece of body) {
        bytes += piece.length;
        if (opts.maxBytes !== undefined && bytes > opts.maxBytes) throw new BlobTooLarge(opts.maxBytes);
        hash.update(piece);
        pending.push(Buffer.from(piece.buffer, piece.byteOffset, piece.length));
        pendingBytes += piece.length;
        if (pendingBytes >= this.chunkBytes) await flush(false);
      }
      await flush(true);
    } catch (err) {
      await this.delete(key).catch(() => undefined);
      throw err;
    }
    return { bytes, sha256: hash.digest('hex') };
  }

  /** Reads chunk after chunk as the consumer asks for them: one chunk in memory at a time. */
  get(key: string): Readable {
    const db = this.db;
    async function* chunks() {
      for (let seq = 0; ; ) {
        const rows = await db
          .select({ seq: blobChunks.seq, data: blobChunks.data })
          .from(blobChunks)
          .where(and(eq(blobChunks.key, key), gte(blobChunks.seq, seq)))
          .orderBy(asc(blobChunks.seq))
          .limit(1);
        if (rows.length === 0) return;
        seq = rows[0]!.seq + 1;
        yield rows[0]!.data;
      }
    }
    return Readable.from(chunks(), { objectMode: false });
  }

  async delete(key: string): Promise<void> {
    await this.db.delete(blobChunks).where(eq(blobChunks.key, key));
  }

  discard(key: string): Promise<void> {
    return this.delete(key);
  }

  /** Rows of a blob: for tests and diagnostics. */
  async chunkCount(key: string): Promise<number> {
    const rows = await this.db.select({ n: sql<number>`count(*)::int` }).from(blobChunks).where(eq(blobChunks.key, key));
    return rows[0]?.n ?? 0;
  }
}

/** Reads a whole blob into memory: for extraction of documents already known to be within the size limit. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}
