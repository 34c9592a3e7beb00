import closeWithGrace from 'close-with-grace';
import { pino, type Logger } from 'pino';
import { buildApp, loggerOptions } from './app.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { openDatabase, type Database } from './db/client.ts';
import { DataDirInUseError } from './db/lock.ts';
import { startTracing, type Tracing } from './observability/tracing.ts';
import { startupSummary } from './startup-summary.ts';

/**
 * PostgreSQL may still be starting (compose, Kubernetes): retry the first
 * migration for up to `waitMs`, then give up with the last error.
 */
async function migrateWhenReachable(database: Database, waitMs: number, log: Logger): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (let attempt = 1; ; attempt++) {
    try {
      await database.migrate();
      return;
    } catch (err) {
      if (database.kind !== 'postgres' || Date.now() >= deadline) throw err;
      log.warn({ attempt, err }, 'database not reachable yet; retrying');
      await new Promise((r) => setTimeout(r, Math.min(2_000, 250 * attempt)));
    }
  }
}

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

  let database: Database | undefined;
  try {
    database = await openDatabase({
      databaseUrl: config.databaseUrl,
      dataDir: config.dataDir,
      poolMax: config.dbPoolMax,
      poolMin: config.dbPoolMin,
      timeouts: config.dbTimeouts,
      onConnectionError: (err) => log.warn({ error: err.message }, 'a database connection failed; it is replaced on next use'),
    });
    await migrateWhenReachable(database, config.dbWaitMs, log);
    await database.warm();
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

  // Before the app is built, so that its request hooks know tracing is on.
  let tracing: Tracing | null = null;
  try {
    tracing = await startTracing(config.observability.tracing);
  } catch (err) {
    log.error({ err }, 'could not start tracing; serving without it');
  }
  if (tracing === null) log.info('tracing is off: set OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT to send traces');
  else log.info({ endpoint: new URL(config.observability.tracing.url!).origin, service: config.observability.tracing.serviceName }, 'sending traces (OTLP over HTTP)');

  let app: Awaited<ReturnType<typeof buildApp>>;
  try {
    app = await buildApp({ config, database, logger: log });
  } catch (err) {
    // E.g. the metrics port is taken: say so in one line and stop.
    log.fatal({ err }, 'cannot start the server');
    await tracing?.shutdown().catch(() => undefined);
    await database.close().catch(() => undefined);
    process.exit(1);
  }
  // Streams get the grace period; then they are ended, stored and metered, which needs a few seconds more.
  closeWithGrace({ delay: config.shutdownGraceMs + config.storeWaitMs + 2_000, logger: log }, async ({ signal, err }) => {
    if (err !== undefined) log.error({ err }, 'shutting down after an error');
    else log.info({ signal }, 'shutting down: finishing requests in flight');
    await app.close();
    await database.close();
    await tracing?.shutdown().catch((e: unknown) => log.warn({ error: (e as Error).message }, 'could not send the last spans'));
  });
  try {
    // Node's default accept backlog (511) drops connections of a burst (thousands of clients at once), which then
    // wait for TCP's SYN retries (1 s, 3 s, 7 s…): a deeper queue lets the kernel's own limit decide.
    await app.listen({ port: config.port, host: config.host, backlog: 4096 });
  } catch (err) {
    log.fatal({ err }, `cannot listen on ${config.host}:${config.port}`);
    await app.close();
    await database.close();
    process.exit(1);
  }
  if (config.adminToken === undefined) {
    log.warn('EUGPT_ADMIN_TOKEN is not set: the admin API and the eugpt CLI admin commands are disabled');
  }
  // The summary waits for the first probes (each bounded by its timeout); the server already listens.
  void app.probes.firstRound.then(() => {
    const { fields, msg } = startupSummary(config, database, app.probes, app.server.address());
    log.info(fields, msg);
  });
}
