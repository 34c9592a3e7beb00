import type { RegisterCommands } from './context.ts';
import { record, table } from './format.ts';

/**
 * `eugpt project add-file | files | remove-file`: a project's corpus through
 * the admin API. Registered on the `project` command (made when absent).
 */

type Row = Record<string, unknown>;

/** One line per file: the index's state flattened into columns. */
const flat = (f: Row): Row => {
  const index = (f.index ?? {}) as Row;
  return { file_id: f.file_id, filename: f.filename, status: index.status, chunks: index.chunks, language: index.language, embeddings: index.embedding_model, details: index.details };
};

export const registerProjectFileCommands: RegisterCommands = (program, ctx) => {
  const project = program.commands.find((c) => c.name() === 'project') ?? program.command('project').description('projects and their members');
  const path = (id: string) => `/projects/${encodeURIComponent(id)}/files`;

  project
    .command('add-file')
    .description("add a file of the project's organisation to the project's corpus (it is then indexed for retrieval)")
    .argument('<project-id>', 'project id')
    .argument('<file-id>', 'file id')
    .action(
      ctx.admin(async (api, id: string, fileId: string) => {
        const f = await api.request<Row>('POST', path(id), { file_id: fileId });
        return { data: f, human: record(flat(f)) };
      }),
    );

  project
    .command('files')
    .description("a project's files and the state of their index (--json for the whole list)")
    .argument('<project-id>', 'project id')
    .action(
      ctx.admin(async (api, id: string) => {
        const rows: Row[] = [];
        let after: string | undefined;
        // Bounded: 100 pages of 1000 files.
        for (let page = 0; page < 100; page++) {
          const q = after === undefined ? '' : `&after=${encodeURIComponent(after)}`;
          const l = await api.request<{ data: Row[]; has_more: boolean; last_id: string | null }>('GET', `${path(id)}?limit=1000${q}`);
          rows.push(...l.data);
          if (!l.has_more || l.last_id === null) break;
          after = l.last_id;
        }
        return { data: { object: 'list', data: rows }, human: table(rows.map(flat), ['file_id', 'filename', 'status', 'chunks', 'language', 'embeddings', 'details']) };
      }),
    );

  project
    .command('remove-file')
    .description("take a file out of the project's corpus (the file itself stays)")
    .argument('<project-id>', 'project id')
    .argument('<file-id>', 'file id')
    .action(
      ctx.admin(async (api, id: string, fileId: string) => {
        const d = await api.request('DELETE', `${path(id)}/${encodeURIComponent(fileId)}`);
        return { data: d, human: `file ${fileId} removed from project ${id}` };
      }),
    );
};
