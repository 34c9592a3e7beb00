import { createHash } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListMultipartUploadsCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { BlobTooLarge, type BlobStore } from './blobs.ts';

/**
 * The blob store in an S3-compatible object store (any EU provider, MinIO,
 * Garage, AWS). A put streams the body as a multipart upload: only the parts
 * being sent are in memory (`partBytes` times `queueSize`), never the file.
 * A put that fails, or grows past its limit, aborts the multipart upload, so
 * nothing is left in the bucket.
 */

export interface S3Settings {
  /** The service's URL; absent: AWS's own endpoint for the region. */
  endpoint: string | undefined;
  region: string;
  bucket: string;
  /** Both or neither; neither: the SDK's usual sources (environment, instance role). */
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  /** `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`; most self-hosted stores need it. */
  forcePathStyle: boolean;
  /** Put before every key, e.g. `eugpt/`. */
  prefix: string;
}

export interface S3StoreOptions {
  /** Size of each part of a multipart upload (S3's minimum is 5 MiB). */
  partBytes?: number;
  /** Parts sent at once. */
  queueSize?: number;
  /** Time limit of each request to the store. */
  requestTimeoutMs?: number;
}

const MIN_PART_BYTES = 5 * 1024 * 1024;
/** Multipart uploads of one key looked at when discarding: a key has one writer, so more would be a bug elsewhere. */
const MAX_UPLOADS_PER_KEY = 100;

export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const;
  readonly client: S3Client;
  private readonly partBytes: number;
  private readonly queueSize: number;
  private readonly prefix: string;

  constructor(
    private readonly settings: S3Settings,
    opts: S3StoreOptions = {},
  ) {
    const credentials =
      settings.accessKeyId !== undefined && settings.secretAccessKey !== undefined
        ? { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey }
        : undefined;
    this.client = new S3Client({
      region: settings.region,
      forcePathStyle: settings.forcePathStyle,
      ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
      ...(credentials === undefined ? {} : { credentials }),
      // Every request is bounded; a store that hangs fails the upload instead of holding it open.
      requestHandler: { requestTimeout: opts.requestTimeoutMs ?? 60_000, connectionTimeout: 5_000 },
      maxAttempts: 3,
      // Checksums only where the API requires them: several S3-compatible stores refuse the newer trailers.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    this.partBytes = Math.max(MIN_PART_BYTES, opts.partBytes ?? MIN_PART_BYTES);
    this.queueSize = opts.queueSize ?? 2;
    this.prefix = settings.prefix === '' || settings.prefix.endsWith('/') ? settings.prefix : `${settings.prefix}/`;
  }

  /** The object's name in the bucket. */
  objectKey(key: string): string {
    return `${this.prefix}${key}`;
  }

  async put(key: string, body: AsyncIterable<Uint8Array>, opts: { maxBytes?: number } = {}): Promise<{ bytes: number; sha256: string }> {
    const hash = createHash('sha256');
    let bytes = 0;
    // Counted and hashed as the upload reads it; past the limit the read fails, which fails the upload.
    const counted = (async function* () {
      for await (const piece of body) {
        bytes += piece.length;
        if (opts.maxBytes !== undefined && bytes > opts.maxBytes) throw new BlobTooLarge(opts.maxBytes);
        hash.update(piece);
        yield piece;
      }
    })();
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.settings.bucket, Key: this.objectKey(key), Body: Readable.from(counted, { objectMode: false }) },
      partSize: this.partBytes,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      // The upload aborted its parts; a part that still landed, or a small object already written, goes too.
      await this.discard(key).catch(() => undefined);
      throw err;
    }
    return { bytes, sha256: hash.digest('hex') };
  }

  /** The object as a stream; the request starts at once, and its failure becomes the stream's error. */
  get(key: string): Readable {
    const out = new PassThrough();
    const abort = new AbortController();
    out.once('close', () => abort.abort());
    this.client
      .send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: this.objectKey(key) }), { abortSignal: abort.signal })
      .then((res) => {
        const source = res.Body as Readable;
        source.once('error', (err) => out.destroy(err));
        source.pipe(out);
      })
      .catch((err: unknown) => out.destroy(err as Error));
    return out;
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key: this.objectKey(key) }));
  }

  /** Aborts the key's unfinished multipart uploads (a crash mid-upload leaves parts that are billed), then deletes the object. */
  async discard(key: string): Promise<void> {
    const name = this.objectKey(key);
    let listed;
    try {
      listed = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.settings.bucket, Prefix: name, MaxUploads: MAX_UPLOADS_PER_KEY }));
    } catch (err) {
      // A store without this call: its lifecycle rules must clean parts; the object itself still goes.
      if ((err as { name?: string }).name !== 'NotImplemented') throw err;
    }
    for (const u of listed?.Uploads ?? []) {
      if (u.Key !== name || u.UploadId === undefined) continue;
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.settings.bucket, Key: name, UploadId: u.UploadId }));
    }
    await this.delete(key);
  }

  /** Whether the bucket answers (HeadBucket), within `timeoutMs`. */
  async probe(timeoutMs: number): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.settings.bucket }), { abortSignal: AbortSignal.timeout(timeoutMs) });
  }

  close(): void {
    this.client.destroy();
  }
}

/** How long a probe waits for the bucket: a store slower than this is as good as down. */
const PROBE_TIMEOUT_MS = 2_000;

/**
 * The object store's state for /readyz, from a probe every `everyMs`: a
 * readiness check reads the last result and never waits on the store.
 */
export class BlobProbe {
  private last = 'ok';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly store: S3BlobStore,
    private readonly everyMs: number,
    private readonly onChange: (state: string) => void = () => undefined,
  ) {}

  start(): void {
    void this.check();
    this.timer = setInterval(() => void this.check(), this.everyMs);
    this.timer.unref();
  }

  stop(): Promise<void> {
    clearInterval(this.timer);
    return this.running ?? Promise.resolve();
  }

  /** `ok`, or `unreachable: why`. */
  get state(): string {
    return this.last;
  }

  check(): Promise<void> {
    this.running ??= this.store
      .probe(PROBE_TIMEOUT_MS)
      .then(
        () => 'ok',
        (err: unknown) => {
          const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
          const status = e.$metadata?.httpStatusCode;
          return `unreachable: ${e.name ?? 'Error'}${status === undefined ? '' : ` (HTTP ${status})`}${e.message ? `: ${e.message}` : ''}`.slice(0, 200);
        },
      )
      .then((state) => {
        if (state !== this.last) this.onChange(state);
        this.last = state;
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }
}
