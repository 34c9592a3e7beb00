import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { buildApp, loggerOptions } from './app.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { openDatabase } from './db/client.ts';
import { DataDirInUseError } from './db/lock.ts';

/** Opens the database, migrates it, and serves until a signal; used by `npm start` and `eugpt serve`. */
export async function serve(overrides: Partial<Pick<Config, 'port' | 'host'>> = {}): Promise<void> {
  let config: Config;
  try {
    config = { ...loadConfig(), ...overrides };
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`eugpt: invalid configuration\n${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const log = pino(loggerOptions(config));

  let database;
  try {
    database = await openDatabase({
      databaseUrl: config.databaseUrl,
      dataDir: config.dataDir,
      poolMax: config.dbPoolMax,
      onPoolError: (err) => log.warn({ err }, 'idle database connection failed'),
    });
    await database.migrate();
  } catch (err) {
    if (err instanceof DataDirInUseError) {
      log.fatal(err.message);
    } else {
      log.fatal({ err }, 'cannot open or migrate the database');
    }
    await database?.close().catch(() => undefined);
    process.exitCode = 1;
    return;
  }
  log.info({ database: database.kind, location: database.kind === 'pglite' ? config.dataDir : 'DATABASE_URL' }, 'database ready');

  const app = await buildApp({ config, database, logger: log });
  closeWithGrace({ delay: config.shutdownGraceMs, logger: log }, async ({ signal, err }) => {
    if (err !== undefined) log.error({ err }, 'shutting down after an error');
    else log.info({ signal }, 'shutting down: finishing requests in flight');
    await app.close();
    await database.close();
  });
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    log.fatal({ err }, `cannot listen on ${config.host}:${config.port}`);
    await app.close();
    await database.close();
    process.exit(1);
  }
  if (config.adminToken === undefined) {
    log.warn('EUGPT_ADMIN_TOKEN is not set: the admin API and the eugpt CLI admin commands are disabled');
  }
}
