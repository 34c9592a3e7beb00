import { openAsBlob } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { CliError } from './client.ts';
import type { RegisterCommands } from './context.ts';
import { EXIT } from './exit-codes.ts';
import { record, table } from './format.ts';

/**
 * `eugpt file upload|list|delete`: a user's files through the admin API, for
 * operators (loading documents for someone, cleaning up). The upload goes
 * through the same checks as the user's own: size limit, organisation quota,
 * type detection and text extraction.
 */

type Obj = Record<string, unknown>;

/** An upload may be large and the link slow: longer than the other commands' limit. */
const UPLOAD_TIMEOUT_MS = 10 * 60_000;

/** Seconds since 1970 as an ISO date, for people. */
const when = (v: unknown) => (typeof v === 'number' ? new Date(v * 1000).toISOString() : v);
const forPeople = (f: Obj): Obj => ({ ...f, created_at: when(f.created_at), expires_at: when(f.expires_at) });

const userPath = (user: string) => `/users/${encodeURIComponent(user)}/files`;

export const registerFileCommands: RegisterCommands = (program, ctx) => {
  const file = program.command('file').description("a user's files: upload, list, delete");
  file
    .command('upload')
    .description('upload a file for a user (same limits and extraction as the user\'s own uploads)')
    .argument('<path>', 'the file to upload')
    .requiredOption('--user <user-id>', 'the user who will own the file')
    .option('--purpose <purpose>', 'assistants, user_data or vision', 'user_data')
    .action(
      ctx.admin(async (api, path: string, opts: { user: string; purpose: string }) => {
        const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
          throw new CliError(`cannot read ${path}: ${err.code ?? err.message}`, EXIT.usage);
        });
        if (!info.isFile()) throw new CliError(`${path} is not a file`, EXIT.usage);
        // Read from disk as it is sent, not loaded whole.
        const form = new FormData();
        form.append('purpose', opts.purpose);
        form.append('file', await openAsBlob(path), basename(path));
        const f = await api.request('POST', userPath(opts.user), form, { timeoutMs: UPLOAD_TIMEOUT_MS });
        return { data: f, human: record(forPeople(f)) };
      }),
    );
  file
    .command('list')
    .description("list a user's files")
    .requiredOption('--user <user-id>', 'user id')
    .action(
      ctx.admin(async (api, opts: { user: string }) => {
        const l = await api.request<{ data: Obj[] }>('GET', userPath(opts.user));
        return { data: l, human: table(l.data.map(forPeople), ['id', 'filename', 'bytes', 'purpose', 'status', 'created_at']) };
      }),
    );
  file
    .command('delete')
    .description('delete a file and its bytes')
    .argument('<file-id>', 'file id')
    .requiredOption('--user <user-id>', 'the user who owns the file')
    .action(
      ctx.admin(async (api, id: string, opts: { user: string }) => {
        const d = await api.request('DELETE', `${userPath(opts.user)}/${encodeURIComponent(id)}`);
        return { data: d, human: `deleted file ${id} and its bytes` };
      }),
    );
};
