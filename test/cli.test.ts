import { execFile } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.ts';
import { runCli } from '../src/cli/program.ts';
import { ADMIN_TOKEN, testApp } from './helpers/app.ts';
import { openTestDatabase } from './helpers/db.ts';

const run = promisify(execFile);
const BIN = new URL('../bin/eugpt.js', import.meta.url).pathname;

let database: Database;
let app: FastifyInstance;
let url: string;

beforeAll(async () => {
  database = await openTestDatabase();
  app = await testApp(database);
  await app.listen({ port: 0, host: '127.0.0.1' });
  url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await app.close();
  await database.close();
});

/** One command line, run in this process as the executable runs it, with its output captured. */
async function eugpt(args: string[], env: Record<string, string> = { EUGPT_ADMIN_TOKEN: ADMIN_TOKEN }) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, { out: (t) => (stdout += t), err: (t) => (stderr += t), env: { EUGPT_URL: url, ...env } });
  return { code, stdout, stderr };
}

/** The real executable, in a process of its own. */
async function spawned(args: string[], env: Record<string, string> = { EUGPT_ADMIN_TOKEN: ADMIN_TOKEN }) {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', EUGPT_URL: url, ...env },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function json(args: string[]) {
  const r = await eugpt([...args, '--json']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout.trim().split('\n')).toHaveLength(1);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

describe('eugpt CLI', () => {
  it('runs the documented admin forms end to end', async () => {
    const org = await json(['org', 'create', '--name', 'Acme']);
    expect(org).toMatchObject({ id: expect.any(String), name: 'Acme' });
    const user = await json(['user', 'create', '--org', String(org.id), '--email', `a.${Date.now()}@acme.eu`]);
    expect(user).toMatchObject({ id: expect.any(String), organization_id: org.id });
    const key = await json(['key', 'create', '--user', String(user.id), '--label', 'ci']);
    expect(key).toMatchObject({ id: expect.any(String), key: expect.stringMatching(/^eugpt_/) });

    const models = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${String(key.key)}` } });
    expect(models.status).toBe(200);

    const list = await json(['key', 'list', '--user', String(user.id)]);
    expect(list.data).toHaveLength(1);

    const project = await json(['project', 'create', '--org', String(org.id), '--name', 'Audit']);
    expect(project).toMatchObject({ id: expect.any(String), name: 'Audit' });
    const member = await eugpt(['project', 'add-member', String(project.id), '--user', String(user.id)]);
    expect(member.code).toBe(0);
    expect(member.stdout).toContain('is a member');

    const revoke = await eugpt(['key', 'revoke', String(key.id)]);
    expect(revoke.code).toBe(0);
    const after = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${String(key.key)}` } });
    expect(after.status).toBe(401);
    const audit = await json(['audit', 'list', '--target-id', String(key.id), '--limit', '10']);
    expect((audit.data as { action: string }[]).map((e) => e.action)).toEqual(['api_key.revoke', 'api_key.create']);

    const human = await eugpt(['key', 'create', '--user', String(user.id), '--label', 'people']);
    expect(human.stdout).toMatch(/key +eugpt_/);
    expect(human.stdout).toMatch(/shown only once/);
    const table = await eugpt(['key', 'list', '--user', String(user.id)]);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID +LABEL +PREFIX/);
  });

  it('sets limits and policy, suspends and resumes, and reports usage', async () => {
    const org = await json(['org', 'create', '--name', 'Limits']);
    const id = String(org.id);
    expect(await json(['org', 'set-limits', id, '--daily-tokens', '50000', '--monthly-tokens', '1000000'])).toMatchObject({
      daily_token_limit: 50000,
      monthly_token_limit: 1000000,
    });
    expect(await json(['org', 'set-limits', id, '--daily-tokens', 'none'])).toMatchObject({ daily_token_limit: null, monthly_token_limit: 1000000 });
    expect(await json(['org', 'set-policy', id, '--api-access', 'off'])).toMatchObject({ api_access: false });
    expect(await json(['org', 'set-policy', id, '--api-access', 'on'])).toMatchObject({ api_access: true });
    expect(await json(['org', 'suspend', id])).toMatchObject({ status: 'suspended' });
    expect(await json(['org', 'resume', id])).toMatchObject({ status: 'active' });
    const usage = await json(['org', 'usage', id]);
    expect(usage).toMatchObject({ object: 'usage', organization_id: id, day: { organization: { total_tokens: 0, limit: null } }, month: { organization: { limit: 1000000 } } });
    const human = await eugpt(['org', 'usage', id]);
    expect(human.stdout.split('\n')[0]).toMatch(/^WINDOW +TOTAL_TOKENS/);
    const bad = await eugpt(['org', 'set-policy', id, '--api-access', 'maybe']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/must be on or off/);
  });

  it('reports errors in one line with a non-zero exit', async () => {
    const missing = await eugpt(['user', 'create', '--org', '00000000-0000-4000-8000-000000000000', '--email', 'x@acme.eu']);
    expect(missing.code).toBe(4);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toMatch(/^eugpt: organization .* not found \(organization_not_found, HTTP 404\)/);

    const noToken = await eugpt(['org', 'list'], {});
    expect(noToken.code).toBe(3);
    expect(noToken.stderr).toMatch(/EUGPT_ADMIN_TOKEN is not set/);

    const down = await eugpt(['org', 'list', '--url', 'http://127.0.0.1:1']);
    expect(down.code).toBe(5);
    expect(down.stderr).toMatch(/cannot reach the server at http:\/\/127\.0\.0\.1:1/);
  });
});

describe('eugpt CLI exit codes and help', () => {
  it('says usage errors in one line with status 2, and what a wrong token gets', async () => {
    for (const args of [['org', 'lst'], ['org', 'list', '--bogus'], ['user', 'create', '--org', 'x'], ['audit', 'list', '--limit', '0'], ['org', 'set-policy', 'x'], []]) {
      const r = await eugpt(args);
      expect(r.code, args.join(' ')).toBe(2);
      if (args.length > 0) expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr, args.join(' ')).not.toMatch(/\n\s+at /);
    }
    const wrong = await eugpt(['org', 'list'], { EUGPT_ADMIN_TOKEN: 'x'.repeat(32) });
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/HTTP 401/);
    const conflict = await eugpt(['org', 'create', '--name', 'Dup', '--plan', 'no-such-plan']);
    expect([1, 4]).toContain(conflict.code);
    const badUrl = await eugpt(['org', 'list'], { EUGPT_ADMIN_TOKEN: ADMIN_TOKEN, EUGPT_URL: 'ftp://x' });
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toMatch(/^eugpt: EUGPT_URL: /);
  });

  it('shows --url and --json in the help of every command', async () => {
    const help = await eugpt(['--help']);
    expect(help.code).toBe(0);
    const groups = [...help.stdout.matchAll(/^ {2}([a-z][a-z-]*) /gm)].map((m) => m[1]!).filter((c) => c !== 'help');
    expect(groups).toEqual(expect.arrayContaining(['serve', 'migrate', 'org', 'user', 'key', 'project', 'audit']));
    let checked = 0;
    for (const group of groups) {
      const sub = await eugpt([group, '--help']);
      expect(sub.code, group).toBe(0);
      const leaves = [...(sub.stdout.split('Commands:')[1] ?? '').matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
      for (const args of leaves.length === 0 ? [[group]] : leaves.map((l) => [group, l])) {
        const h = await eugpt([...args, '--help']);
        expect(h.code, args.join(' ')).toBe(0);
        expect(h.stdout, args.join(' ')).toMatch(/--url <url>/);
        expect(h.stdout, args.join(' ')).toMatch(/--json/);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(25);
  });

  it('runs as its own executable: help, an admin call, an error', async () => {
    const help = await spawned(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: eugpt/);
    const org = await spawned(['org', 'create', '--name', 'Spawned', '--json']);
    expect(org.code).toBe(0);
    expect(JSON.parse(org.stdout)).toMatchObject({ name: 'Spawned' });
    const missing = await spawned(['org', 'usage', '00000000-0000-4000-8000-000000000000']);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/^eugpt: .*HTTP 404\)\n$/);
  });
});
