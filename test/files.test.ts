import { randomUUID } from 'node:crypto';
import OpenAI, { toFile } from 'openai';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../src/db/client.ts';
import { blobChunks, blobUploads, files } from '../src/db/schema.ts';
import { BlobTooLarge, DatabaseBlobStore, readAll } from '../src/files/blobs.ts';
import { NO_TEXT_LAYER } from '../src/files/extract.ts';
import { adminHeaders, bearer, createTenant, type Tenant } from './helpers/app.ts';
import { makeDocx, makePdf } from './helpers/documents.ts';
import { openOwnDatabase } from './helpers/db.ts';
import { eventually, startHarness, type Harness } from './helpers/harness.ts';

/** The Files API through HTTP and the official SDK: upload, list, retrieve, content, delete, limits, extraction status. */

const MAX_BYTES = 2 * 1024 * 1024;
let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    env: { EUGPT_FILE_MAX_BYTES: String(MAX_BYTES), EUGPT_ORG_STORAGE_BYTES: String(6 * 1024 * 1024) },
    // Extraction runs TypeScript through tsx here, which takes a few seconds to start.
    files: { pollMs: 200, readyWaitMs: 0 },
  });
});
afterAll(async () => h.close());

interface FileObject {
  id: string;
  object: 'file';
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
  status: string;
  status_details: string | null;
  expires_at: number | null;
}

/** A multipart body as a browser or SDK sends it. */
async function form(fields: Record<string, string>, file?: { name: string; data: Uint8Array; type?: string }) {
  const fd = new FormData();
  if (file !== undefined) fd.append('file', new Blob([file.data], { type: file.type ?? 'application/octet-stream' }), file.name);
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  const req = new Request('http://x/', { method: 'POST', body: fd });
  return { payload: Buffer.from(await req.arrayBuffer()), headers: { 'content-type': req.headers.get('content-type')! } };
}

async function upload(file: { name: string; data: Uint8Array }, purpose = 'user_data', key = h.tenant.key) {
  const body = await form({ purpose }, file);
  return h.app.inject({ method: 'POST', url: '/v1/files', headers: { ...bearer(key), ...body.headers }, payload: body.payload });
}

const get = (url: string, key = h.tenant.key) => h.app.inject({ method: 'GET', url, headers: bearer(key) });

/** Waits until extraction has ended, by polling the file as a client would. */
const settled = (id: string, key = h.tenant.key) =>
  eventually(async () => {
    const f = (await get(`/v1/files/${id}`, key)).json<FileObject>();
    return f.status === 'uploaded' ? undefined : f;
  }, 30_000);

const chunkRows = async (id: string) => (await h.database.db.select().from(blobChunks).where(eq(blobChunks.key, `files/${id}`))).length;

describe('upload', () => {
  it('stores a file and answers the file object, times in seconds', async () => {
    const before = Math.floor(Date.now() / 1000);
    const res = await upload({ name: 'notes.txt', data: Buffer.from('Meeting at ten.\nBring the budget.') });
    expect(res.statusCode).toBe(200);
    const f = res.json<FileObject>();
    expect(f).toMatchObject({ object: 'file', bytes: 33, filename: 'notes.txt', purpose: 'user_data', expires_at: null });
    expect(f.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(f.created_at).toBeGreaterThanOrEqual(before - 1);
    expect(f.created_at).toBeLessThan(before + 60);
    expect((await settled(f.id)).status).toBe('processed');
    const [row] = await h.database.db.select().from(files).where(eq(files.id, f.id));
    expect(row!.text).toBe('Meeting at ten.\nBring the budget.');
    expect(row!.mimeType).toBe('text/plain');
  }, 40_000);

  it('reads a PDF named .txt as a PDF', async () => {
    const f = (await upload({ name: 'report.txt', data: makePdf([['Quarterly figures are up.']]) })).json<FileObject>();
    const done = await settled(f.id);
    expect(done.status).toBe('processed');
    const [row] = await h.database.db.select().from(files).where(eq(files.id, f.id));
    expect(row).toMatchObject({ mimeType: 'application/pdf', pages: 1 });
    expect(row!.text).toContain('Quarterly figures are up.');
    const content = await get(`/v1/files/${f.id}/content`);
    expect(content.headers['content-type']).toBe('application/pdf');
  }, 40_000);

  it('marks a PDF without text as error, saying why', async () => {
    const f = (await upload({ name: 'scan.pdf', data: makePdf([null]) })).json<FileObject>();
    expect(await settled(f.id)).toMatchObject({ status: 'error', status_details: NO_TEXT_LAYER });
  }, 40_000);

  it('sanitises the file name', async () => {
    const f = (await upload({ name: '../../etc/pa\u0007ss\u202ewd.txt', data: Buffer.from('x') })).json<FileObject>();
    expect(f.filename).toBe('passwd.txt');
    const long = (await upload({ name: `${'a'.repeat(400)}.txt`, data: Buffer.from('x') })).json<FileObject>();
    expect(long.filename).toHaveLength(255);
  });

  it('refuses an empty file, a missing file, and an unknown purpose', async () => {
    const empty = await upload({ name: 'empty.txt', data: new Uint8Array(0) });
    expect(empty.statusCode).toBe(400);
    expect(empty.json().error.code).toBe('empty_file');
    const none = await form({ purpose: 'user_data' });
    const noFile = await h.app.inject({ method: 'POST', url: '/v1/files', headers: { ...bearer(h.tenant.key), ...none.headers }, payload: none.payload });
    expect(noFile.json().error.code).toBe('missing_file');
    const bad = await upload({ name: 'a.txt', data: Buffer.from('x') }, 'fine-tune');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatchObject({ code: 'invalid_purpose', param: 'purpose' });
    // Nothing of the refused uploads stays in the blob store.
    const result = await h.database.db.execute(sql`select count(*)::int as n from blob_chunks b where not exists (select 1 from files f where f.storage_key = b.key)`);
    expect(rowsOf<{ n: number }>(result)[0]!.n).toBe(0);
  });

  it('answers 413 for a file over the limit, stored nowhere', async () => {
    // Announced too large: refused before the body is read.
    const big = await upload({ name: 'big.bin', data: new Uint8Array(MAX_BYTES + 200 * 1024) });
    expect(big.statusCode).toBe(413);
    expect(big.json().error.code).toBe('file_too_large');
    // Just over: found while streaming.
    const over = await upload({ name: 'over.bin', data: new Uint8Array(MAX_BYTES + 1) });
    expect(over.statusCode).toBe(413);
    expect(over.json().error.code).toBe('file_too_large');
    const list = (await get('/v1/files?limit=100')).json<{ data: FileObject[] }>();
    expect(list.data.map((f) => f.filename)).not.toContain('over.bin');
  });

  it("refuses uploads past the organisation's storage quota", async () => {
    const t = await createTenant(h.app);
    const meg = new Uint8Array(2 * 1024 * 1024 - 100).fill(65);
    for (let i = 0; i < 3; i++) expect((await upload({ name: `part${i}.txt`, data: meg }, 'user_data', t.key)).statusCode).toBe(200);
    const res = await upload({ name: 'one-too-many.txt', data: meg }, 'user_data', t.key);
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe('storage_quota_exceeded');
  }, 30_000);

  it('answers 403 plan_feature_disabled when the plan has no file uploads', async () => {
    const t = await createTenant(h.app);
    const plan = `nofiles-${randomUUID().slice(0, 8)}`;
    expect((await h.app.inject({ method: 'PUT', url: `/admin/v1/plans/${plan}`, headers: adminHeaders, payload: { features: { file_upload: false } } })).statusCode).toBe(200);
    expect((await h.app.inject({ method: 'PATCH', url: `/admin/v1/organizations/${t.orgId}`, headers: adminHeaders, payload: { plan } })).statusCode).toBe(200);
    const res = await upload({ name: 'a.txt', data: Buffer.from('x') }, 'user_data', t.key);
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe('plan_feature_disabled');
  });
});

describe('list, retrieve, content, delete', () => {
  let other: Tenant;
  beforeAll(async () => {
    other = await createTenant(h.app);
  });

  it('lists only the caller’s files, newest first, in pages, filtered by purpose', async () => {
    const ids: string[] = [];
    for (const purpose of ['assistants', 'vision', 'assistants']) {
      ids.push((await upload({ name: `${purpose}.txt`, data: Buffer.from(purpose) }, purpose, other.key)).json<FileObject>().id);
    }
    const all = (await get('/v1/files', other.key)).json<{ data: FileObject[]; has_more: boolean }>();
    expect(all.data.map((f) => f.id)).toEqual([...ids].reverse());
    const page1 = (await get('/v1/files?limit=2&order=asc', other.key)).json<{ data: FileObject[]; has_more: boolean; last_id: string }>();
    expect(page1.data.map((f) => f.id)).toEqual(ids.slice(0, 2));
    expect(page1.has_more).toBe(true);
    const page2 = (await get(`/v1/files?limit=2&order=asc&after=${page1.last_id}`, other.key)).json<{ data: FileObject[]; has_more: boolean }>();
    expect(page2.data.map((f) => f.id)).toEqual(ids.slice(2));
    expect(page2.has_more).toBe(false);
    const assistants = (await get('/v1/files?purpose=assistants', other.key)).json<{ data: FileObject[] }>();
    expect(assistants.data.map((f) => f.id)).toEqual([ids[2], ids[0]]);
    const mine = (await get('/v1/files')).json<{ data: FileObject[] }>();
    expect(mine.data.some((f) => ids.includes(f.id))).toBe(false);
  });

  it('answers the same 404 for another user’s file, a missing one and a non-UUID id', async () => {
    const f = (await upload({ name: 'secret.txt', data: Buffer.from('mine only') })).json<FileObject>();
    for (const url of [`/v1/files/${f.id}`, `/v1/files/${f.id}/content`]) {
      const res = await get(url, other.key);
      expect(res.statusCode).toBe(404);
      expect(res.json().error.code).toBe('file_not_found');
    }
    const del = await h.app.inject({ method: 'DELETE', url: `/v1/files/${f.id}`, headers: bearer(other.key) });
    expect(del.statusCode).toBe(404);
    expect((await get(`/v1/files/${randomUUID()}`)).json().error.code).toBe('file_not_found');
    expect((await get('/v1/files/file-abc123')).json().error.code).toBe('file_not_found');
  });

  it('streams the content back with its type and name, and deletes file and blob', async () => {
    const data = Buffer.alloc(700 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 251;
    const f = (await upload({ name: 'Grüße.bin', data })).json<FileObject>();
    expect(await chunkRows(f.id)).toBe(3);
    // The upload's in-flight row went with the file row's insert; a deletion leaves none either.
    const inFlight = async () => (await h.database.db.select().from(blobUploads).where(eq(blobUploads.key, `files/${f.id}`))).length;
    expect(await inFlight()).toBe(0);
    const content = await get(`/v1/files/${f.id}/content`);
    expect(content.statusCode).toBe(200);
    expect(content.rawPayload.equals(data)).toBe(true);
    expect(content.headers['content-disposition']).toBe(`attachment; filename="Gr__e.bin"; filename*=UTF-8''Gr%C3%BC%C3%9Fe.bin`);
    const del = await h.app.inject({ method: 'DELETE', url: `/v1/files/${f.id}`, headers: bearer(h.tenant.key) });
    expect(del.json()).toEqual({ id: f.id, object: 'file', deleted: true });
    expect(await chunkRows(f.id)).toBe(0);
    expect(await inFlight()).toBe(0);
    expect((await get(`/v1/files/${f.id}`)).statusCode).toBe(404);
  });
});

describe('extraction as a job', () => {
  it('takes up again a file whose instance stopped mid-extraction', async () => {
    const f = (await upload({ name: 'again.docx', data: await makeDocx(['Picked up again.']) })).json<FileObject>();
    await settled(f.id);
    // As if an instance had claimed it and crashed: uploaded, an attempt counted, its lock expired.
    await h.database.db.update(files).set({ status: 'uploaded', text: null, attempts: 1, lockedUntil: new Date(Date.now() - 1000) }).where(eq(files.id, f.id));
    const done = await settled(f.id);
    expect(done.status).toBe('processed');
    const [row] = await h.database.db.select().from(files).where(eq(files.id, f.id));
    expect(row).toMatchObject({ attempts: 2, lockedUntil: null });
    expect(row!.text).toContain('Picked up again.');
  }, 60_000);

  it('gives up after the last attempt', async () => {
    const f = (await upload({ name: 'tired.txt', data: Buffer.from('x') })).json<FileObject>();
    await settled(f.id);
    await h.database.db.update(files).set({ status: 'uploaded', attempts: 3, lockedUntil: new Date(Date.now() - 1000) }).where(eq(files.id, f.id));
    expect(await settled(f.id)).toMatchObject({ status: 'error', status_details: 'text extraction failed 3 times' });
  }, 30_000);
});

describe('the official openai SDK', () => {
  it('creates, lists, retrieves, downloads and deletes files', async () => {
    const client = new OpenAI({ baseURL: `${h.origin}/v1`, apiKey: h.tenant.key });
    const created = await client.files.create({ file: await toFile(Buffer.from('a,b\n1,2\n'), 'table.csv'), purpose: 'user_data' });
    expect(created).toMatchObject({ object: 'file', filename: 'table.csv', purpose: 'user_data', bytes: 8 });
    const listed = [];
    for await (const f of client.files.list({ purpose: 'user_data' })) listed.push(f.id);
    expect(listed).toContain(created.id);
    expect((await client.files.retrieve(created.id)).id).toBe(created.id);
    expect(await (await client.files.content(created.id)).text()).toBe('a,b\n1,2\n');
    expect(await client.files.delete(created.id)).toEqual({ id: created.id, object: 'file', deleted: true });
    await expect(client.files.retrieve(created.id)).rejects.toMatchObject({ status: 404 });
  });
});

describe('input_file in /v1/responses', () => {
  type Sent = { role: string; content: string }[];
  const sent = (i = -1) => h.upstream.requests.at(i)!.body.messages as unknown as Sent;
  const ask = (payload: Record<string, unknown>, key = h.tenant.key) =>
    h.app.inject({ method: 'POST', url: '/v1/responses', headers: { ...bearer(key), accept: 'application/json' }, payload: { stream: false, ...payload } });
  const fileInput = (fileId: string, text: string) => [{ role: 'user', content: [{ type: 'input_text', text }, { type: 'input_file', file_id: fileId }] }];

  it('works end to end with the SDK: the model sees the file text, labelled, where the part was', async () => {
    const client = new OpenAI({ baseURL: `${h.origin}/v1`, apiKey: h.tenant.key });
    const created = await client.files.create({ file: await toFile(makePdf([['The launch date is 14 March 2027.']]), 'plan.pdf'), purpose: 'user_data' });
    await settled(created.id);
    h.upstream.queue.push({ chunks: ['14 March 2027.'] });
    const res = await client.responses.create({
      model: 'auto',
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'When is the launch?' }, { type: 'input_file', file_id: created.id }] }],
    });
    expect(res.output_text).toBe('14 March 2027.');
    const user = sent().at(-1)!;
    expect(user.role).toBe('user');
    expect(user.content).toMatch(new RegExp(`^When is the launch\\?\\n<file name="plan.pdf" id="${created.id}">\\n\\[page 1\\]\\nThe launch date is 14 March 2027.\\n</file>$`));
    // Stored by reference, with its name.
    const items = await client.responses.inputItems.list(res.id);
    expect(items.data[0]).toMatchObject({ type: 'message', content: [{ type: 'input_text', text: 'When is the launch?' }, { type: 'input_file', file_id: created.id, filename: 'plan.pdf' }] });
  }, 60_000);

  it('annotates a sentence of the answer quoted from the file with a file_citation', async () => {
    const f = (await upload({ name: 'policy.txt', data: Buffer.from('Remote work is allowed up to three days in every working week. Other rules apply.') })).json<FileObject>();
    await settled(f.id);
    h.upstream.queue.push({ chunks: ['The policy says: Remote work is allowed up to three days in every working week. Short one.'] });
    const res = (await ask({ input: fileInput(f.id, 'How much remote work?') })).json<{ output: { content: { text: string; annotations: unknown[] }[] }[] }>();
    const part = res.output[0]!.content[0]!;
    const end = part.text.indexOf('week.') + 'week.'.length;
    expect(part.annotations).toEqual([{ type: 'file_citation', file_id: f.id, filename: 'policy.txt', index: end }]);
  }, 30_000);

  it('re-reads the file for history, and says when it was deleted', async () => {
    const f = (await upload({ name: 'memo.md', data: Buffer.from('# Memo\n\nThe password rotates every 90 days.\n') })).json<FileObject>();
    await settled(f.id);
    h.upstream.queue.push({ chunks: ['Every 90 days.'] });
    const first = (await ask({ input: fileInput(f.id, 'How often?') })).json<{ id: string }>();
    h.upstream.queue.push({ chunks: ['Yes.'] });
    expect((await ask({ input: 'Sure?', previous_response_id: first.id })).statusCode).toBe(200);
    expect(sent()[0]!.content).toContain('The password rotates every 90 days.');
    await h.app.inject({ method: 'DELETE', url: `/v1/files/${f.id}`, headers: bearer(h.tenant.key) });
    h.upstream.queue.push({ chunks: ['Gone.'] });
    expect((await ask({ input: 'And now?', previous_response_id: first.id })).statusCode).toBe(200);
    expect(sent()[0]!.content).toBe(`How often?\n<file name="memo.md" id="${f.id}">[this file was deleted]</file>`);
  }, 60_000);

  it('refuses another user’s file (404), one being processed (409), one that failed (422), and file_data (400)', async () => {
    const other = await createTenant(h.app);
    const theirs = (await upload({ name: 't.txt', data: Buffer.from('theirs') }, 'user_data', other.key)).json<FileObject>();
    const notMine = await ask({ input: fileInput(theirs.id, 'Read it') });
    expect(notMine.statusCode).toBe(404);
    expect(notMine.json().error.code).toBe('file_not_found');
    expect((await ask({ input: fileInput('file-abc', 'Read it') })).json().error.code).toBe('file_not_found');

    const pending = (await upload({ name: 'p.txt', data: Buffer.from('pending') })).json<FileObject>();
    await settled(pending.id);
    // As while another instance extracts it.
    await h.database.db.update(files).set({ status: 'uploaded', lockedUntil: new Date(Date.now() + 60_000) }).where(eq(files.id, pending.id));
    const notReady = await ask({ input: fileInput(pending.id, 'Read it') });
    expect(notReady.statusCode).toBe(409);
    expect(notReady.json().error.code).toBe('file_not_ready');

    const scan = (await upload({ name: 'scan.pdf', data: makePdf([null]) })).json<FileObject>();
    await settled(scan.id);
    const unusable = await ask({ input: fileInput(scan.id, 'Read it') });
    expect(unusable.statusCode).toBe(422);
    expect(unusable.json().error.code).toBe('file_unusable');
    expect(unusable.json().error.message).toContain(NO_TEXT_LAYER);

    const inline = await ask({ input: [{ role: 'user', content: [{ type: 'input_file', filename: 'a.txt', file_data: 'data:text/plain;base64,aGk=' }] }] });
    expect(inline.statusCode).toBe(400);
    expect(inline.json().error.code).toBe('unsupported_file_source');
  }, 60_000);

  it('gives the model the most relevant passages, in order, when the file does not fit its window', async () => {
    // About 80 000 tokens of filler around one paragraph that answers the question; the model takes 32 768.
    const filler = (i: number) => `Section ${i}. The committee reviewed routine matters of procedure and agreed to continue as before without changes.`;
    const paras = Array.from({ length: 4000 }, (_, i) => filler(i));
    paras.splice(2500, 0, 'The penguin enclosure budget for 2026 is 48 000 euros, approved by the zoo board.');
    const f = (await upload({ name: 'minutes.txt', data: Buffer.from(paras.join('\n\n')) })).json<FileObject>();
    await settled(f.id);
    h.upstream.queue.push({ chunks: ['48 000 euros.'] });
    const res = await ask({ input: fileInput(f.id, 'What is the penguin enclosure budget?') });
    expect(res.statusCode).toBe(200);
    const user = sent().at(-1)!.content;
    expect(user).toContain('The penguin enclosure budget for 2026 is 48 000 euros');
    expect(user).toMatch(/\[excerpts selected by relevance to the request: \d+ of \d+ passages; the whole file does not fit the model's context\]/);
    expect(user.length).toBeLessThan(paras.join('\n\n').length);
    // Document order: what was kept of the start comes before the answer's passage.
    expect(user.indexOf('Section 0.')).toBeLessThan(user.indexOf('penguin enclosure budget for 2026'));
  }, 60_000);
});

describe('the database blob store', () => {
  const store = () => new DatabaseBlobStore(h.database.db, 1000);
  async function* pieces(n: number, size: number, failAt?: number) {
    for (let i = 0; i < n; i++) {
      if (i === failAt) throw new Error('client went away');
      yield new Uint8Array(size).fill(i);
    }
  }

  it('writes in chunks and reads back the same bytes, with their hash', async () => {
    const key = `test/${randomUUID()}`;
    const put = await store().put(key, pieces(5, 700));
    expect(put.bytes).toBe(3500);
    expect(put.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(await store().chunkCount(key)).toBe(4);
    const back = await readAll(store().get(key));
    expect(back.length).toBe(3500);
    expect(back[699]).toBe(0);
    expect(back[700]).toBe(1);
    await store().delete(key);
    expect(await store().chunkCount(key)).toBe(0);
  });

  it('leaves nothing behind when a put fails midway or grows past its limit', async () => {
    const key = `test/${randomUUID()}`;
    await expect(store().put(key, pieces(10, 700, 6))).rejects.toThrow('client went away');
    expect(await store().chunkCount(key)).toBe(0);
    await expect(store().put(key, pieces(10, 700), { maxBytes: 5000 })).rejects.toBeInstanceOf(BlobTooLarge);
    expect(await store().chunkCount(key)).toBe(0);
  });
});

describe('an extraction that takes too long', () => {
  it('ends in error, with the time limit named', async () => {
    // Its own database: on a shared one, another file's server (with the usual time limit) could take the file first.
    const database = await openOwnDatabase();
    const slow = await startHarness({ env: { EUGPT_EXTRACT_TIMEOUT_MS: '10' }, files: { pollMs: 200, readyWaitMs: 0 }, database });
    try {
      const body = await form({ purpose: 'user_data' }, { name: 'a.pdf', data: makePdf([['Too slow']]) });
      const f = (await slow.app.inject({ method: 'POST', url: '/v1/files', headers: { ...bearer(slow.tenant.key), ...body.headers }, payload: body.payload })).json<FileObject>();
      const done = await eventually(async () => {
        const now = (await slow.app.inject({ method: 'GET', url: `/v1/files/${f.id}`, headers: bearer(slow.tenant.key) })).json<FileObject>();
        return now.status === 'uploaded' ? undefined : now;
      }, 20_000);
      expect(done).toMatchObject({ status: 'error', status_details: 'extracting the text took longer than 10 ms' });
    } finally {
      await slow.close();
      await database.close();
    }
  }, 30_000);
});
