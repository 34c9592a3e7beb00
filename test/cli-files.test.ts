import { mkdtempSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.ts';
import { blobChunks } from '../src/db/schema.ts';
import { buildApp } from '../src/app.ts';
import { runCli } from '../src/cli/program.ts';
import { loadConfig } from '../src/config.ts';
import { ADMIN_TOKEN, adminHeaders, createTenant, type Tenant } from './helpers/app.ts';
import { openTestDatabase } from './helpers/db.ts';

/** `eugpt file upload|list|delete` against a running server, through the admin API (in-process, as cli.test.ts runs them). */

let database: Database;
let app: FastifyInstance;
let url: string;
let tenant: Tenant;
const dir = mkdtempSync(join(tmpdir(), 'eugpt-cli-files-'));

beforeAll(async () => {
  database = await openTestDatabase();
  // No wait for the text extraction: the commands answer as soon as the file is stored.
  app = await buildApp({ config: loadConfig({ EUGPT_ADMIN_TOKEN: ADMIN_TOKEN, EUGPT_FILE_MAX_BYTES: String(64 * 1024) }), database, logger: false, files: { readyWaitMs: 0 } });
  await app.listen({ port: 0, host: '127.0.0.1' });
  url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  tenant = await createTenant(app);
});
afterAll(async () => {
  await app.close();
  await database.close();
});

async function eugpt(args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, { out: (t) => (stdout += t), err: (t) => (stderr += t), env: { EUGPT_URL: url, EUGPT_ADMIN_TOKEN: ADMIN_TOKEN } });
  return { code, stdout, stderr };
}

async function json(args: string[]) {
  const r = await eugpt([...args, '--json']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

describe('eugpt file', () => {
  it('uploads, lists and deletes a user’s file, audited', { timeout: 60_000 }, async () => {
    const path = join(dir, 'minutes.txt');
    writeFileSync(path, 'The board met on Monday.');
    const f = await json(['file', 'upload', path, '--user', tenant.userId]);
    expect(f).toMatchObject({ object: 'file', filename: 'minutes.txt', bytes: 24, purpose: 'user_data' });
    const id = String(f.id);
    expect((await database.db.select().from(blobChunks).where(eq(blobChunks.key, `files/${id}`))).length).toBe(1);

    // The user sees it through the public API too.
    const mine = await app.inject({ method: 'GET', url: `/v1/files/${id}`, headers: { authorization: `Bearer ${tenant.key}` } });
    expect(mine.statusCode).toBe(200);

    const list = await json(['file', 'list', '--user', tenant.userId]);
    expect((list.data as { id: string }[]).map((x) => x.id)).toEqual([id]);
    const human = await eugpt(['file', 'list', '--user', tenant.userId]);
    expect(human.stdout.split('\n')[0]).toMatch(/^ID +FILENAME +BYTES +PURPOSE +STATUS +CREATED_AT/);
    expect(human.stdout).toMatch(/minutes\.txt +24 +user_data/);

    expect(await json(['file', 'delete', id, '--user', tenant.userId])).toEqual({ id, object: 'file', deleted: true });
    expect(await database.db.select().from(blobChunks).where(eq(blobChunks.key, `files/${id}`))).toEqual([]);
    expect((await app.inject({ method: 'GET', url: `/admin/v1/users/${tenant.userId}/files`, headers: adminHeaders })).json()).toMatchObject({ data: [] });

    const audit = await app.inject({ method: 'GET', url: `/admin/v1/audit?target_id=${id}`, headers: adminHeaders });
    const events = audit.json<{ data: { action: string; target_type: string; details: Record<string, unknown> }[] }>().data;
    expect(events.map((e) => e.action)).toEqual(['file.delete', 'file.upload']);
    expect(events[1]).toMatchObject({ target_type: 'file', details: { id: tenant.userId } });
  });

  it('says what went wrong in one line', { timeout: 60_000 }, async () => {
    const missing = await eugpt(['file', 'upload', join(dir, 'nope.txt'), '--user', tenant.userId]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/^eugpt: cannot read .*nope\.txt: ENOENT/);

    const big = join(dir, 'big.bin');
    writeFileSync(big, Buffer.alloc(64 * 1024 + 1, 1));
    const tooBig = await eugpt(['file', 'upload', big, '--user', tenant.userId]);
    expect(tooBig.stderr).toMatch(/file_too_large, HTTP 413/);

    const path = join(dir, 'a.txt');
    writeFileSync(path, 'a');
    const f = await json(['file', 'upload', path, '--user', tenant.userId, '--purpose', 'assistants']);
    const other = await createTenant(app);
    // Another user's file is the same 404 as a missing one.
    const wrongUser = await eugpt(['file', 'delete', String(f.id), '--user', other.userId]);
    expect(wrongUser.stderr).toMatch(/file_not_found, HTTP 404/);
    const noUser = await eugpt(['file', 'list', '--user', '00000000-0000-4000-8000-000000000000']);
    expect(noUser.stderr).toMatch(/user_not_found, HTTP 404/);
    const badPurpose = await eugpt(['file', 'upload', path, '--user', tenant.userId, '--purpose', 'fine-tune']);
    expect(badPurpose.stderr).toMatch(/invalid_purpose, HTTP 400/);
  });
});
