// Shared by the retrieval eval and bench: a database with one organisation, user and project, and files put straight into it.
import { randomUUID } from 'node:crypto';
import { openDatabase, type Database } from '../src/db/client.ts';
import { files } from '../src/db/schema.ts';
import { addProjectFile } from '../src/projects/corpus.ts';
import { createOrganization, createUser } from '../src/tenancy/organizations.ts';
import { createProject } from '../src/tenancy/projects.ts';

export interface RagWorld {
  database: Database;
  projectId: string;
  /** Stores a file with its text already extracted and adds it to the project; answers its id. */
  addFile(filename: string, text: string): Promise<string>;
}

/** On EVAL_DATABASE_URL when set (PostgreSQL), otherwise a fresh embedded database in memory. */
export async function openWorld(): Promise<RagWorld> {
  const database = await openDatabase({ databaseUrl: process.env.EVAL_DATABASE_URL || undefined, dataDir: 'memory://' });
  await database.migrate();
  const db = database.db;
  const org = await createOrganization(db, { name: `rag-eval ${randomUUID()}` }, Date.now());
  const user = await createUser(db, { organizationId: org.id, email: `${randomUUID()}@example.eu` });
  const project = await createProject(db, { organizationId: org.id, name: 'eval' });
  return {
    database,
    projectId: project.id,
    async addFile(filename, text) {
      const id = randomUUID();
      await db.insert(files).values({
        id,
        userId: user.id,
        organizationId: org.id,
        filename,
        purpose: 'user_data',
        bytes: Buffer.byteLength(text),
        mimeType: 'text/markdown',
        sha256: '0'.repeat(64),
        storage: 'database',
        storageKey: `files/${id}`,
        status: 'processed',
        text,
      });
      await addProjectFile(db, project.id, id, user.id);
      return id;
    },
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
