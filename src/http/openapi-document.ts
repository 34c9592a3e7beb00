import { buildApp } from '../app.ts';
import { loadConfig } from '../config.ts';
import { openDatabase } from '../db/client.ts';

/** The OpenAPI document as YAML, built from the routes of an app that never listens. */
export async function generateOpenapiYaml(): Promise<string> {
  const database = await openDatabase({ dataDir: 'memory://' });
  await database.migrate();
  const app = await buildApp({ config: loadConfig({}), database, logger: false });
  try {
    await app.ready();
    return app.swagger({ yaml: true });
  } finally {
    await app.close();
    await database.close();
  }
}
