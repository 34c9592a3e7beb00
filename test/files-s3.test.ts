import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { eq, inArray } from 'drizzle-orm';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { purgeExpired } from '../src/data/retention.ts';
import { blobChunks, blobUploads, files, instances } from '../src/db/schema.ts';
import { BlobStores, DatabaseBlobStore } from '../src/files/blobs.ts';
import { deleteBlobs, NO_INSTANCE, sweepOrphans } from '../src/files/orphans.ts';
import { S3BlobStore } from '../src/files/s3-store.ts';
import { adminHeaders, bearer, createTenant } from './helpers/app.ts';
import { startFakeS3, type FakeS3 } from './helpers/fake-s3.ts';
import { eventually, startHarness, type Harness } from './helpers/harness.ts';

/**
 * Files kept in an S3-compatible store (s3rver on loopback): the same API as
 * with the database store, multipart uploads that leave nothing behind when
 * refused, files of the database store still served, retention, erasure and
 * export reaching the objects, the sweep of what a crash left, and /readyz.
 */

const MAX_BYTES = 12 * 1024 * 1024;
const PREFIX = 'eugpt-test/';
let s3: FakeS3;
let h: Harness;
/** A store of its own on the same bucket, as another instance would have. */
let stores: BlobStores;
const log = { warnings: [] as object[], warn(obj: object) { this.warnings.push(obj); } };

beforeAll(async () => {
  s3 = await startFakeS3();
  h = await startHarness({
    env: { ...s3.env(PREFIX), EUGPT_FILE_MAX_BYTES: String(MAX_BYTES), EUGPT_ORG_STORAGE_BYTES: String(20 * 1024 * 1024) },
    files: { pollMs: 200, readyWaitMs: 0, probeMs: 200 },
  });
  const config = loadConfig(s3.env(PREFIX));
  if (config.files.blobStore.kind !== 's3') throw new Error('expected the s3 store');
  stores = new BlobStores(new S3BlobStore(config.files.blobStore.s3), [new DatabaseBlobStore(h.database.db)]);
});
afterAll(async () => {
  await h?.close();
  await s3?.close();
});

async function form(fields: Record<string, string>, file: { name: string; data: Uint8Array }) {
  const fd = new FormData();
  fd.append('file', new Blob([file.data]), file.name);
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  const req = new Request('http://x/', { method: 'POST', body: fd });
  return { payload: Buffer.from(await req.arrayBuffer()), headers: { 'content-type': req.headers.get('content-type')! } };
}

async function upload(data: Uint8Array, name = 'data.bin', key = h.tenant.key) {
  const body = await form({ purpose: 'user_data' }, { name, data });
  return h.app.inject({ method: 'POST', url: '/v1/files', headers: { ...bearer(key), ...body.headers }, payload: body.payload });
}

const get = (url: string, key = h.tenant.key) => h.app.inject({ method: 'GET', url, headers: bearer(key) });
const objectOf = (id: string) => `${PREFIX}files/${id}`;
/** One piece as the stream a blob store takes. */
async function* once(piece: Uint8Array) {
  yield piece;
}
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('files in S3', () => {
  it('uploads a multipart file and serves it back byte for byte', async () => {
    // Three parts of the S3 upload (5 MiB each at most).
    const data = randomBytes(11 * 1024 * 1024 + 123);
    const res = await upload(data);
    expect(res.statusCode).toBe(200);
    const f = res.json<{ id: string; bytes: number }>();
    expect(f.bytes).toBe(data.length);
    const [row] = await h.database.db.select().from(files).where(eq(files.id, f.id));
    expect(row).toMatchObject({ storage: 's3', storageKey: `files/${f.id}`, sha256: sha256(data) });
    expect(await s3.objects()).toContain(objectOf(f.id));
    expect(await h.database.db.select().from(blobChunks).where(eq(blobChunks.key, `files/${f.id}`))).toEqual([]);
    expect(await h.database.db.select().from(blobUploads).where(eq(blobUploads.key, `files/${f.id}`))).toEqual([]);

    const content = await get(`/v1/files/${f.id}/content`);
    expect(content.statusCode).toBe(200);
    expect(content.headers['content-length']).toBe(String(data.length));
    expect(sha256(content.rawPayload)).toBe(sha256(data));

    const del = await h.app.inject({ method: 'DELETE', url: `/v1/files/${f.id}`, headers: bearer(h.tenant.key) });
    expect(del.json()).toEqual({ id: f.id, object: 'file', deleted: true });
    expect(await s3.objects()).not.toContain(objectOf(f.id));
    expect(await h.database.db.select().from(blobUploads).where(eq(blobUploads.key, `files/${f.id}`))).toEqual([]);
    expect((await get(`/v1/files/${f.id}/content`)).statusCode).toBe(404);
  }, 60_000);

  it('aborts the multipart upload of a file past the quota, leaving no object, no parts and no row', async () => {
    const t = await createTenant(h.app);
    const first = await upload(randomBytes(11 * 1024 * 1024), 'first.bin', t.key);
    expect(first.statusCode).toBe(200);
    const before = await s3.objects();
    // 9 MiB of room left: the second file fails after its first 5 MiB part was sent.
    const second = await upload(randomBytes(11 * 1024 * 1024), 'second.bin', t.key);
    expect(second.statusCode).toBe(403);
    expect(second.json().error.code).toBe('storage_quota_exceeded');
    expect(await s3.objects()).toEqual(before);
    expect(await s3.uploads()).toEqual([]);
    const rows = await h.database.db.select().from(files).where(eq(files.userId, t.userId));
    expect(rows.map((r) => r.filename)).toEqual(['first.bin']);
    const pending = await h.database.db.select().from(blobUploads).where(eq(blobUploads.storage, 's3'));
    expect(pending.filter((p) => p.instanceId !== NO_INSTANCE)).toEqual([]);
  }, 60_000);

  it("works with the SDK's files.create and content, and extracts the text of a file in S3", async () => {
    const client = new OpenAI({ apiKey: h.tenant.key, baseURL: `${h.origin}/v1` });
    const text = 'The harbour opens at six.\nBoats leave at seven.';
    const created = await client.files.create({ file: await toFile(Buffer.from(text), 'harbour.txt'), purpose: 'user_data' });
    expect(created).toMatchObject({ object: 'file', filename: 'harbour.txt', bytes: text.length });
    expect(await (await client.files.content(created.id)).text()).toBe(text);
    const done = await eventually(async () => {
      const f = await client.files.retrieve(created.id);
      return f.status === 'uploaded' ? undefined : f;
    }, 30_000);
    expect(done.status).toBe('processed');
    const [row] = await h.database.db.select().from(files).where(eq(files.id, created.id));
    expect(row!.text).toBe(text);
  }, 40_000);

  it('still serves and deletes a file kept in the database before the move to S3', async () => {
    const id = randomUUID();
    const key = `files/${id}`;
    const data = Buffer.from('written before the move');
    await new DatabaseBlobStore(h.database.db, 8).put(key, once(data));
    await h.database.db.insert(files).values({
      id,
      userId: h.tenant.userId,
      organizationId: h.tenant.orgId,
      filename: 'old.txt',
      purpose: 'user_data',
      bytes: data.length,
      mimeType: 'text/plain',
      sha256: sha256(data),
      storage: 'database',
      storageKey: key,
      status: 'processed',
      text: data.toString(),
    });
    const content = await get(`/v1/files/${id}/content`);
    expect(content.body).toBe(data.toString());
    expect((await h.app.inject({ method: 'DELETE', url: `/v1/files/${id}`, headers: bearer(h.tenant.key) })).statusCode).toBe(200);
    expect(await h.database.db.select().from(blobChunks).where(eq(blobChunks.key, key))).toEqual([]);
  });

  it('exports the bytes from S3, and erasure deletes the objects', async () => {
    const t = await createTenant(h.app);
    const data = randomBytes(300 * 1024);
    const f = (await upload(data, 'mine.bin', t.key)).json<{ id: string }>();
    const exported = await h.app.inject({ method: 'POST', url: `/admin/v1/users/${t.userId}/export`, headers: adminHeaders });
    const file = exported.json<{ files: { id: string; content_base64: string }[] }>().files.find((x) => x.id === f.id);
    expect(sha256(Buffer.from(file!.content_base64, 'base64'))).toBe(sha256(data));

    expect(await s3.objects()).toContain(objectOf(f.id));
    const erased = await h.app.inject({ method: 'POST', url: `/admin/v1/users/${t.userId}/erase`, headers: adminHeaders, payload: { confirm: true } });
    expect(erased.json()).toMatchObject({ files: 1 });
    expect(await s3.objects()).not.toContain(objectOf(f.id));
    expect(await h.database.db.select().from(blobUploads).where(eq(blobUploads.key, `files/${f.id}`))).toEqual([]);
  });

  it('deletes the objects of files past retention', async () => {
    const t = await createTenant(h.app);
    const f = (await upload(randomBytes(1000), 'old.bin', t.key)).json<{ id: string }>();
    expect((await h.app.inject({ method: 'PATCH', url: `/admin/v1/organizations/${t.orgId}`, headers: adminHeaders, payload: { retention_days: 1 } })).statusCode).toBe(200);
    await h.database.db.update(files).set({ createdAt: new Date(Date.now() - 3 * 86_400_000) }).where(eq(files.id, f.id));
    await purgeExpired(h.database.db, 500, 20, stores, log);
    expect(await h.database.db.select().from(files).where(eq(files.id, f.id))).toEqual([]);
    expect(await s3.objects()).not.toContain(objectOf(f.id));
  });
});

describe('the orphan sweep', () => {
  const sweep = { staleMs: 30_000, maxAgeMs: 24 * 3600_000 };

  it('deletes what a crashed upload left in both stores, and leaves live uploads alone', async () => {
    const s3Store = stores.of('s3') as S3BlobStore;
    const dead = randomUUID();
    const live = randomUUID();
    await h.database.db.insert(instances).values([
      { id: dead, heartbeatAt: new Date(Date.now() - 10 * 60_000) },
      { id: live, heartbeatAt: new Date() },
    ]);
    const keys = { deadChunks: `files/${randomUUID()}`, deadObject: `files/${randomUUID()}`, deadParts: `files/${randomUUID()}`, liveChunks: `files/${randomUUID()}`, liveObject: `files/${randomUUID()}`, oldLive: `files/${randomUUID()}` };
    // What the crashed instance had written: chunks, a whole object, and a multipart upload never completed.
    const db = new DatabaseBlobStore(h.database.db, 16);
    await db.put(keys.deadChunks, once(Buffer.alloc(100, 1)));
    await db.put(keys.liveChunks, once(Buffer.alloc(100, 2)));
    await db.put(keys.oldLive, once(Buffer.alloc(100, 3)));
    await s3Store.client.send(new PutObjectCommand({ Bucket: 'eugpt-test', Key: s3Store.objectKey(keys.deadObject), Body: 'partial' }));
    await s3Store.client.send(new PutObjectCommand({ Bucket: 'eugpt-test', Key: s3Store.objectKey(keys.liveObject), Body: 'in flight' }));
    const mpu = await s3Store.client.send(new CreateMultipartUploadCommand({ Bucket: 'eugpt-test', Key: s3Store.objectKey(keys.deadParts) }));
    await s3Store.client.send(new UploadPartCommand({ Bucket: 'eugpt-test', Key: s3Store.objectKey(keys.deadParts), UploadId: mpu.UploadId, PartNumber: 1, Body: Buffer.alloc(1024) }));
    expect(await s3.uploads()).toContain(s3Store.objectKey(keys.deadParts));
    await h.database.db.insert(blobUploads).values([
      { key: keys.deadChunks, storage: 'database', instanceId: dead },
      { key: keys.deadObject, storage: 's3', instanceId: dead },
      { key: keys.deadParts, storage: 's3', instanceId: dead },
      { key: keys.liveChunks, storage: 'database', instanceId: live },
      { key: keys.liveObject, storage: 's3', instanceId: live },
      // Live instance, but older than any upload can take.
      { key: keys.oldLive, storage: 'database', instanceId: live, startedAt: new Date(Date.now() - 25 * 3600_000) },
    ]);

    await sweepOrphans(h.database.db, stores, sweep, log);

    const chunks = async (key: string) => (await h.database.db.select().from(blobChunks).where(eq(blobChunks.key, key))).length;
    expect(await chunks(keys.deadChunks)).toBe(0);
    expect(await chunks(keys.oldLive)).toBe(0);
    expect(await chunks(keys.liveChunks)).toBe(7);
    const objects = await s3.objects();
    expect(objects).not.toContain(s3Store.objectKey(keys.deadObject));
    expect(objects).toContain(s3Store.objectKey(keys.liveObject));
    expect(await s3.uploads()).not.toContain(s3Store.objectKey(keys.deadParts));
    const left = await h.database.db.select({ key: blobUploads.key }).from(blobUploads).where(inArray(blobUploads.key, Object.values(keys)));
    expect(left.map((r) => r.key).sort()).toEqual([keys.liveChunks, keys.liveObject].sort());

    // The live instance's uploads are this test's own: gone now, so no other test sees them (PostgreSQL is shared).
    await db.discard(keys.liveChunks);
    await s3Store.discard(keys.liveObject);
    await h.database.db.delete(blobUploads).where(inArray(blobUploads.key, Object.values(keys)));
    await h.database.db.delete(instances).where(inArray(instances.id, [dead, live]));
  });

  it('retries an object delete that failed, and logs its key', async () => {
    const s3Store = stores.of('s3') as S3BlobStore;
    const key = `files/${randomUUID()}`;
    await s3Store.put(key, once(Buffer.from('to be deleted')));
    await h.database.db.insert(blobUploads).values({ key, storage: 's3', instanceId: NO_INSTANCE });
    // A store that cannot be reached: the delete fails, is logged with its key, and the row stays.
    const config = loadConfig({ ...s3.env(PREFIX), EUGPT_S3_ENDPOINT: 'http://127.0.0.1:1' });
    if (config.files.blobStore.kind !== 's3') throw new Error('expected the s3 store');
    const down = new S3BlobStore(config.files.blobStore.s3, { requestTimeoutMs: 1_000 });
    const failed = { warnings: [] as object[], warn(obj: object) { this.warnings.push(obj); } };
    expect(await deleteBlobs(h.database.db, new BlobStores(down), [{ key, storage: 's3' }], failed)).toBe(0);
    down.close();
    expect(failed.warnings).toEqual([expect.objectContaining({ key, storage: 's3' })]);
    expect(await h.database.db.select().from(blobUploads).where(eq(blobUploads.key, key))).toHaveLength(1);

    await sweepOrphans(h.database.db, stores, sweep, log);
    expect(await s3.objects()).not.toContain(s3Store.objectKey(key));
    expect(await h.database.db.select().from(blobUploads).where(eq(blobUploads.key, key))).toEqual([]);
  }, 20_000);
});

describe('readiness with S3', () => {
  // Last: it stops the store.
  it('reports the bucket, and 503 when it stops answering', async () => {
    const ready = await h.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().checks.blob_store).toBe('ok');
    await s3.close();
    const down = await eventually(async () => {
      const res = await h.app.inject({ method: 'GET', url: '/readyz' });
      return res.statusCode === 503 ? res : undefined;
    }, 10_000);
    expect(down.json().checks.blob_store).toMatch(/^unreachable/);
    expect(down.json().detail).toContain('the S3 blob store is not reachable');
  }, 20_000);
});
