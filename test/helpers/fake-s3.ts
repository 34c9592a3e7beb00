import { mkdtempSync } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';

/**
 * A real S3 server on loopback for tests: s3rver, which speaks S3's REST
 * protocol with signature checks, on a temporary folder. s3rver lacks two
 * multipart calls the blob store makes (AbortMultipartUpload and
 * ListMultipartUploads); they are added here in front of its routes, on its
 * own folder layout, and answer as S3 does.
 */

export const S3_BUCKET = 'eugpt-test';
export const S3_KEY_ID = 'S3RVER';
export const S3_SECRET = 'S3RVER';

export interface FakeS3 {
  url: string;
  /** The settings that point the server at this store, with `prefix`. */
  env(prefix?: string): Record<string, string>;
  /** Keys of the objects in the bucket. */
  objects(): Promise<string[]>;
  /** Keys of the multipart uploads begun and neither completed nor aborted. */
  uploads(): Promise<string[]>;
  close(): Promise<void>;
}

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export async function startFakeS3(): Promise<FakeS3> {
  const directory = mkdtempSync(join(tmpdir(), 'eugpt-s3-'));
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory, configureBuckets: [{ name: S3_BUCKET, configs: [] }] });
  const uploadsDir = join(directory, S3_BUCKET, '._S3rver_uploads');

  async function listUploads(): Promise<{ id: string; key: string }[]> {
    const ids = await readdir(uploadsDir).catch(() => [] as string[]);
    return Promise.all(ids.map(async (id) => ({ id, key: await readFile(join(uploadsDir, id, 'key'), 'utf8') })));
  }

  // Koa composes its middleware when the server starts: this one runs first.
  (server as unknown as { middleware: ((ctx: KoaContext, next: () => Promise<void>) => Promise<void>)[] }).middleware.unshift(async (ctx, next) => {
    const [, bucket] = ctx.path.split('/');
    const uploadId = ctx.query.uploadId;
    if (bucket === S3_BUCKET && ctx.method === 'DELETE' && typeof uploadId === 'string') {
      const dir = join(uploadsDir, uploadId.replace(/[^0-9a-f]/g, ''));
      if (!(await stat(dir).catch(() => undefined))) {
        ctx.status = 404;
        ctx.type = 'application/xml';
        ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>`;
        return;
      }
      await rm(dir, { recursive: true, force: true });
      ctx.status = 204;
      ctx.body = null;
      return;
    }
    if (bucket === S3_BUCKET && ctx.method === 'GET' && ctx.path.split('/').filter(Boolean).length === 1 && 'uploads' in ctx.query) {
      const prefix = typeof ctx.query.prefix === 'string' ? ctx.query.prefix : '';
      const found = (await listUploads()).filter((u) => u.key.startsWith(prefix));
      ctx.status = 200;
      ctx.type = 'application/xml';
      ctx.body =
        `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
        `<Bucket>${S3_BUCKET}</Bucket><Prefix>${xml(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>` +
        found.map((u) => `<Upload><Key>${xml(u.key)}</Key><UploadId>${u.id}</UploadId></Upload>`).join('') +
        `</ListMultipartUploadsResult>`;
      return;
    }
    await next();
  });

  const { port } = await server.run();
  let closed: Promise<void> | undefined;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    env: (prefix = '') => ({
      EUGPT_BLOB_STORE: 's3',
      EUGPT_S3_ENDPOINT: url,
      EUGPT_S3_BUCKET: S3_BUCKET,
      EUGPT_S3_ACCESS_KEY_ID: S3_KEY_ID,
      EUGPT_S3_SECRET_ACCESS_KEY: S3_SECRET,
      ...(prefix === '' ? {} : { EUGPT_S3_PREFIX: prefix }),
    }),
    objects: () => listObjects(join(directory, S3_BUCKET)),
    uploads: async () => (await listUploads()).map((u) => u.key),
    close: () => {
      if (closed === undefined) {
        closed = server.close();
        // Clients keep connections open; the server stops only once they are gone.
        server.httpServer?.closeAllConnections();
      }
      return closed;
    },
  };
}

/** Object keys from s3rver's folder: each object is a file named `<last part>._S3rver_object`. */
async function listObjects(root: string, under = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(root, under), { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) {
      if (entry.name.startsWith('._S3rver_')) continue;
      out.push(...(await listObjects(root, join(under, entry.name))));
    } else if (entry.name.endsWith('._S3rver_object')) {
      out.push(join(under, entry.name.slice(0, -'._S3rver_object'.length)));
    }
  }
  return out.sort();
}
