import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/client.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A file holding a dump of a freshly migrated embedded database; '' on PostgreSQL. */
    pgliteSnapshot: string;
  }
}

/**
 * Initialising an embedded database takes seconds of CPU, and the suite opens
 * dozens: one is initialised and migrated here, once per run, and each test
 * opens a copy of its dump (helpers/db.ts).
 */
export default async function setup(project: TestProject): Promise<() => void> {
  if (process.env.TEST_DATABASE_URL) {
    project.provide('pgliteSnapshot', '');
    return () => undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'eugpt-pglite-snapshot-'));
  const database = await openDatabase({ dataDir: 'memory://' });
  try {
    await database.migrate();
    const file = join(dir, 'snapshot.tar');
    writeFileSync(file, Buffer.from(await (await database.dumpDataDir!()).arrayBuffer()));
    project.provide('pgliteSnapshot', file);
  } finally {
    await database.close();
  }
  return () => rmSync(dir, { recursive: true, force: true });
}
