import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../src/db/client.ts';
import { files } from '../src/db/schema.ts';
import { DEFAULT_CHUNKING } from '../src/projects/chunk.ts';
import { ProjectIndexer } from '../src/projects/indexer.ts';
import { retrieve } from '../src/projects/retrieve.ts';
import { adminHeaders, bearer, createTenant, type Tenant } from './helpers/app.ts';
import { startFakeEmbeddings, type FakeEmbeddings } from './helpers/fake-embeddings.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-openai.ts';
import { eventually, startServer, writeConfig, writeConfigFile, type TestServer } from './helpers/harness.ts';
import { parse } from 'yaml';
import { readFileSync } from 'node:fs';

/** A project's corpus: who may change it, its index (retries, leases, embeddings that fail), and what retrieval may read. */

let s: TestServer;
let upstream: FakeUpstream;
let emb: FakeEmbeddings;
let projectId: string;
let outsider: Tenant; // same organisation, not a member
let stranger: Tenant; // another organisation

type ProjectFile = { file_id: string; filename: string; index: { status: string; chunks: number; language: string | null; embedding_model: string | null; details: string | null } };

const admin = async (method: 'POST' | 'GET' | 'DELETE', url: string, payload?: object) => s.app.inject({ method, url: `/admin/v1${url}`, headers: adminHeaders, ...(payload ? { payload } : {}) });
const api = (method: 'POST' | 'GET' | 'DELETE', url: string, key = s.tenant.key, payload?: object) =>
  s.app.inject({ method, url: `/v1${url}`, headers: bearer(key), ...(payload ? { payload } : {}) });

/** A user of the tenant's organisation with a key of their own. */
async function colleague(t: Tenant): Promise<Tenant> {
  const user = (await admin('POST', '/users', { organization_id: t.orgId, email: `${randomUUID()}@example.eu` })).json<{ id: string }>();
  const key = (await admin('POST', '/api-keys', { user_id: user.id, label: 'k' })).json<{ id: string; key: string }>();
  return { orgId: t.orgId, userId: user.id, keyId: key.id, key: key.key };
}

/** A file whose text is already extracted, as the extraction job leaves it (that job has tests of its own). */
async function processedFile(owner: Tenant, filename: string, text: string, status: 'processed' | 'error' = 'processed'): Promise<string> {
  const id = randomUUID();
  await s.database.db.insert(files).values({
    id,
    userId: owner.userId,
    organizationId: owner.orgId,
    filename,
    purpose: 'user_data',
    bytes: Buffer.byteLength(text),
    mimeType: 'text/plain',
    sha256: '0'.repeat(64),
    storage: 'database',
    storageKey: `files/${id}`,
    status,
    text: status === 'processed' ? text : null,
    statusDetails: status === 'error' ? 'the PDF has no text layer' : null,
  });
  return id;
}

const indexed = (fileId: string, key = s.tenant.key) =>
  eventually(async () => {
    const list = (await api('GET', `/projects/${projectId}/files?limit=1000`, key)).json<{ data: ProjectFile[] }>();
    const f = list.data.find((x) => x.file_id === fileId);
    return f !== undefined && f.index.status !== 'pending' ? f : undefined;
  }, 20_000);

const indexRow = async (fileId: string) =>
  rowsOf<{ status: string; attempts: number; locked_until: Date | null; embedding_model: string | null; details: string | null }>(
    await s.database.db.execute(sql`select status, attempts, locked_until, embedding_model, details from file_indexes where file_id = ${fileId}`),
  )[0]!;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  emb = await startFakeEmbeddings();
  const base = parse(readFileSync(writeConfig(upstream.url), 'utf8')) as Record<string, unknown>;
  const config = writeConfigFile({ ...base, retrieval: { poll_ms: 100, embed_retry_ms: 100, embeddings: { base_url: emb.url, model: 'hash-256', batch_size: 4, timeout_ms: 10_000 } } });
  s = await startServer(config);
  outsider = await colleague(s.tenant);
  stranger = await createTenant(s.app);
  projectId = (await admin('POST', '/projects', { organization_id: s.tenant.orgId, name: 'Handbook' })).json<{ id: string }>().id;
  await admin('POST', `/projects/${projectId}/members`, { user_id: s.tenant.userId });
});
afterAll(async () => {
  await s.close();
  await upstream.close();
  await emb.close();
});

describe('corpus routes', () => {
  it('lets members add their own files; a non-member of the organisation gets 403, another organisation or a missing project 404', async () => {
    const mine = await processedFile(s.tenant, 'leave.txt', 'Employees receive thirty days of annual leave.');
    const theirs = await processedFile(outsider, 'theirs.txt', 'Private notes of a colleague.');

    const notMember = await api('POST', `/projects/${projectId}/files`, outsider.key, { file_id: theirs });
    expect(notMember.statusCode).toBe(403);
    expect(notMember.json().error.code).toBe('project_forbidden');
    expect((await api('GET', `/projects/${projectId}/files`, outsider.key)).statusCode).toBe(403);
    for (const key of [stranger.key]) {
      const res = await api('POST', `/projects/${projectId}/files`, key, { file_id: mine });
      expect(res.statusCode).toBe(404);
      expect(res.json().error.code).toBe('project_not_found');
    }
    expect((await api('GET', `/projects/${randomUUID()}/files`)).statusCode).toBe(404);
    expect((await api('GET', `/projects/not-a-uuid/files`)).statusCode).toBe(400);

    // A member adds only files of their own: a colleague's is the same 404 as a missing one.
    const colleagues = await api('POST', `/projects/${projectId}/files`, s.tenant.key, { file_id: theirs });
    expect(colleagues.statusCode).toBe(404);
    expect(colleagues.json().error.code).toBe('file_not_found');
    expect((await api('POST', `/projects/${projectId}/files`, s.tenant.key, { file_id: 'file-abc' })).statusCode).toBe(404);

    const added = await api('POST', `/projects/${projectId}/files`, s.tenant.key, { file_id: mine });
    expect(added.statusCode).toBe(200);
    expect(added.json()).toMatchObject({ object: 'project.file', project_id: projectId, file_id: mine, filename: 'leave.txt', added_by: s.tenant.userId });
    // Adding it again is a no-op.
    expect((await api('POST', `/projects/${projectId}/files`, s.tenant.key, { file_id: mine })).statusCode).toBe(200);

    const done = await indexed(mine);
    expect(done.index).toMatchObject({ status: 'indexed', language: 'english', embedding_model: 'hash-256', details: null });
    expect(done.index.chunks).toBe(1);

    const gone = await api('DELETE', `/projects/${projectId}/files/${mine}`, outsider.key);
    expect(gone.statusCode).toBe(403);
    expect((await api('DELETE', `/projects/${projectId}/files/${randomUUID()}`)).statusCode).toBe(404);
  }, 30_000);

  it('pages the list with after and has_more', async () => {
    const p = (await admin('POST', '/projects', { organization_id: s.tenant.orgId, name: `Paged ${randomUUID()}` })).json<{ id: string }>().id;
    await admin('POST', `/projects/${p}/members`, { user_id: s.tenant.userId });
    const ids = [];
    for (const n of [1, 2, 3]) {
      const id = await processedFile(s.tenant, `p${n}.txt`, `Page test ${n}.`);
      await api('POST', `/projects/${p}/files`, s.tenant.key, { file_id: id });
      ids.push(id);
    }
    const first = (await api('GET', `/projects/${p}/files?limit=2`)).json<{ data: ProjectFile[]; has_more: boolean; last_id: string }>();
    expect(first.data.map((f) => f.file_id)).toEqual(ids.slice(0, 2));
    expect(first.has_more).toBe(true);
    const second = (await api('GET', `/projects/${p}/files?limit=2&after=${first.last_id}`)).json<{ data: ProjectFile[]; has_more: boolean }>();
    expect(second.data.map((f) => f.file_id)).toEqual([ids[2]]);
    expect(second.has_more).toBe(false);
    expect((await api('GET', `/projects/${p}/files?after=${randomUUID()}`)).json().error.code).toBe('invalid_after');
  });

  it('has admin routes, audited, that take any file of the organisation and refuse another organisation’s', async () => {
    const colleagueFile = await processedFile(outsider, 'colleague.txt', 'The canteen opens at half past eleven.');
    const foreign = await processedFile(stranger, 'foreign.txt', 'Not this organisation.');
    expect((await admin('POST', `/projects/${projectId}/files`, { file_id: foreign })).statusCode).toBe(404);
    const added = await admin('POST', `/projects/${projectId}/files`, { file_id: colleagueFile });
    expect(added.statusCode).toBe(200);
    expect(added.json()).toMatchObject({ file_id: colleagueFile, added_by: null });
    const list = (await admin('GET', `/projects/${projectId}/files`)).json<{ data: ProjectFile[] }>();
    expect(list.data.map((f) => f.file_id)).toContain(colleagueFile);
    expect((await admin('DELETE', `/projects/${projectId}/files/${colleagueFile}`)).statusCode).toBe(200);
    const audit = (await admin('GET', `/audit?target_id=${projectId}`)).json<{ data: { action: string; details: Record<string, unknown> }[] }>();
    const actions = audit.data.map((e) => e.action);
    expect(actions).toContain('project.file.add');
    expect(actions).toContain('project.file.remove');
    expect(audit.data.find((e) => e.action === 'project.file.add')!.details).toMatchObject({ file_id: colleagueFile });
  });
});

describe('retrieval reads the project only', () => {
  it('never returns a file once it is removed from the project, nor the owner’s other files', async () => {
    const kept = await processedFile(s.tenant, 'pension.txt', 'The company pension scheme matches contributions up to five percent of salary.');
    const removed = await processedFile(s.tenant, 'pension-old.txt', 'The old pension scheme matched contributions up to three percent of salary.');
    const elsewhere = await processedFile(s.tenant, 'pension-private.txt', 'My private pension notes: contributions of salary.');
    const other = (await admin('POST', '/projects', { organization_id: s.tenant.orgId, name: `Other ${randomUUID()}` })).json<{ id: string }>().id;
    await admin('POST', `/projects/${other}/files`, { file_id: elsewhere });
    for (const id of [kept, removed]) await api('POST', `/projects/${projectId}/files`, s.tenant.key, { file_id: id });
    await indexed(kept);
    await indexed(removed);
    await eventually(async () => ((await indexRow(elsewhere)).status === 'indexed' ? true : undefined), 20_000);

    const ask = () => retrieve(s.database.db, { projectId, query: 'pension contributions salary', limit: 10, budgetTokens: 5000 });
    expect(new Set((await ask()).map((c) => c.fileId))).toEqual(new Set([kept, removed]));
    expect((await api('DELETE', `/projects/${projectId}/files/${removed}`)).statusCode).toBe(200);
    const after = await ask();
    expect(after.map((c) => c.fileId)).toEqual([kept]);
    expect(after[0]!.filename).toBe('pension.txt');
  }, 30_000);
});

describe('indexing', () => {
  it('takes a file again once the lease of a crashed indexer expired, and not before', async () => {
    const id = await processedFile(s.tenant, 'crash.txt', 'Expense reports are due on the fifth working day of the month.');
    // As an instance that claimed the file and died: an attempt counted, a lease an hour long, nothing written.
    await s.database.db.execute(sql`insert into file_indexes (file_id, attempts, locked_until) values (${id}, 1, now() + interval '1 hour')`);
    await s.database.db.execute(sql`insert into project_files (project_id, file_id) values (${projectId}, ${id})`);
    const other = new ProjectIndexer(s.database.db, { chunking: DEFAULT_CHUNKING, pollMs: 60_000, embedRetryMs: 60_000 });
    await other.sweep();
    expect(await indexRow(id)).toMatchObject({ status: 'pending', attempts: 1 });
    await s.database.db.execute(sql`update file_indexes set locked_until = now() - interval '1 second' where file_id = ${id}`);
    const done = await indexed(id);
    expect(done.index).toMatchObject({ status: 'indexed', chunks: 1 });
    expect((await indexRow(id)).attempts).toBe(0);
    await other.close();
  }, 30_000);

  it('gives up after the last attempt, and marks a file whose text could not be extracted', async () => {
    const spent = await processedFile(s.tenant, 'spent.txt', 'Never indexed.');
    await s.database.db.execute(sql`insert into file_indexes (file_id, attempts, locked_until) values (${spent}, 3, now() - interval '1 second')`);
    await s.database.db.execute(sql`insert into project_files (project_id, file_id) values (${projectId}, ${spent})`);
    expect((await indexed(spent)).index).toMatchObject({ status: 'error', details: 'indexing failed 3 times' });

    const broken = await processedFile(s.tenant, 'scan.pdf', '', 'error');
    await api('POST', `/projects/${projectId}/files`, s.tenant.key, { file_id: broken });
    const f = await indexed(broken);
    expect(f.index.status).toBe('error');
    expect(f.index.details).toContain('no text layer');
  }, 30_000);

  it('indexes for full-text search when the embeddings model is down, and fills the vectors in later', async () => {
    emb.down = true;
    try {
      const id = await processedFile(s.tenant, 'travel.txt', '# Travel\n\nTrain travel in second class is reimbursed for trips under six hours.');
      await api('POST', `/projects/${projectId}/files`, s.tenant.key, { file_id: id });
      const f = await indexed(id);
      expect(f.index).toMatchObject({ status: 'indexed', embedding_model: null });
      expect(f.index.details).toContain('full-text search only');
      const found = await retrieve(s.database.db, { projectId, query: 'reimbursed train trips', limit: 3, budgetTokens: 1000 });
      expect(found[0]).toMatchObject({ fileId: id, heading: 'Travel' });
      emb.down = false;
      const filled = await eventually(async () => {
        const row = await indexRow(id);
        return row.embedding_model === null ? undefined : row;
      }, 20_000);
      expect(filled).toMatchObject({ embedding_model: 'hash-256', details: null, status: 'indexed' });
      const vectors = rowsOf<{ n: string | number }>(await s.database.db.execute(sql`select count(*) as n from file_chunks where file_id = ${id} and embedding is not null`));
      expect(Number(vectors[0]!.n)).toBe(1);
    } finally {
      emb.down = false;
    }
  }, 30_000);
});
