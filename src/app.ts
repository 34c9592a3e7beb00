import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import sensible from '@fastify/sensible';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { adminRoutes } from './admin/routes.ts';
import { createKeyAuth } from './auth/key-auth.ts';
import type { Config } from './config.ts';
import type { Database } from './db/client.ts';
import { answerClientError, errorsPlugin, sendError, toApiError } from './http/errors.ts';
import { healthRoutes } from './http/health.ts';
import { logSerializers } from './http/log.ts';
import { openapiPlugin } from './http/openapi.ts';
import { ProviderProbes } from './providers/probe.ts';
import { createProviders } from './providers/registry.ts';
import { releaseExpired } from './limits/quota.ts';
import { pruneRateWindows } from './limits/rate.ts';
import { HealthTable } from './router/health.ts';
import { syncPlans } from './tenancy/plans.ts';
import { Recovery } from './responses/recovery.ts';
import { ResponseWriter } from './responses/writer.ts';
import { v1Routes } from './v1/routes.ts';
import { createToolbox, type ToolboxOptions } from './tools/registry.ts';
import { Cancels } from './responses/cancels.ts';
import { Summariser } from './conversations/summary.ts';
import { purgeExpired } from './data/retention.ts';
import { BlobStores, DatabaseBlobStore } from './files/blobs.ts';
import { sweepOrphans } from './files/orphans.ts';
import type { BlobProbe, S3BlobStore } from './files/s3-store.ts';
import { createImageFetcher } from './images/fetch.ts';
import type { Lookup } from './tools/fetch-agent.ts';
import { FileJobs } from './files/jobs.ts';
import { metricsRoute, startMetricsServer, type MetricsServer } from './observability/endpoint.ts';
import { observeRequests } from './observability/http.ts';
import { addGaugeSource } from './observability/metrics.ts';
import { tracingOn } from './observability/tracing.ts';
import { createEmbedder } from './projects/embeddings.ts';
import { ProjectIndexer } from './projects/indexer.ts';
import { createRetriever, type Reranker } from './projects/retrieve.ts';
import { hasVector } from './projects/vector.ts';
import { unavailableReason } from './db/errors.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Where the metrics listener of EUGPT_METRICS_PORT listens; null without one. */
    metricsAddress: AddressInfo | null;
    /** Tests wait on it to see a summary made. */
    summaries: Summariser;
  }
}

export interface AppDeps {
  config: Config;
  database: Database;
  /** Tuning for tests: the SSE keep-alive interval, instead of the config's. */
  responses?: { keepAliveMs?: number };
  /** Options of the built-in tools (tests replace DNS for web_fetch). */
  tools?: ToolboxOptions;
  /** Replaces DNS for image URLs (tests). */
  images?: { lookup?: Lookup };
  /** The clock of quota windows, trials and the router's breakers (tests move it). */
  now?: () => number;
  /** How often each instance looks for files to extract, and how long an upload waits for its text (tests shorten them). */
  files?: { pollMs?: number; readyWaitMs?: number; probeMs?: number; orphanMaxAgeMs?: number };
  /** Reorders retrieved passages (e.g. a cross-encoder); default: the fused order. */
  rerank?: Reranker;
  /** A ready logger (the process's), or `false` for none (tests); default: one made from config. */
  logger?: FastifyBaseLogger | false;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** What the last probe of each provider said (see providers/probe.ts). */
    probes: ProviderProbes;
  }
}

/** A client's `x-request-id` is kept only when it is short and plain, so logs cannot be forged through it. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/-]{1,128}$/;

function requestId(req: IncomingMessage): string {
  const sent = req.headers['x-request-id'];
  // An API key sent as a request id would be echoed in the answer and logged: refuse it.
  return typeof sent === 'string' && SANE_REQUEST_ID.test(sent) && !/eugpt_/i.test(sent) ? sent : randomUUID();
}

/** A hop count becomes proxy-addr's function form, which fastify's types accept. */
function trustProxy(value: Config['trustProxy']) {
  return typeof value === 'number' ? (_addr: string, hop: number) => hop < value : value;
}

export function loggerOptions(config: Config) {
  return {
    level: config.logLevel,
    // Errors, URLs and request ids are scrubbed: no query value, prompt, answer or key reaches the log.
    serializers: logSerializers,
    // Keys and cookies never reach the log, whatever a serializer or a child logger adds.
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]', 'headers.authorization'],
      censor: '[redacted]',
    },
    ...(config.logPretty ? { transport: { target: 'pino-pretty' } } : {}),
  };
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, database } = deps;
  const app = Fastify({
    ...(deps.logger === undefined
      ? { logger: loggerOptions(config) }
      : deps.logger === false
        ? { logger: false }
        : { loggerInstance: deps.logger }),
    genReqId: requestId,
    logController: new LogController({ requestIdLogLabel: 'request_id' }),
    bodyLimit: config.bodyLimit,
    trustProxy: trustProxy(config.trustProxy),
    // Answers to a bad URL go through the same envelope as every other error.
    frameworkErrors: (err, _req, reply) => {
      void sendError(reply, toApiError(err));
    },
    clientErrorHandler: answerClientError,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
  }).withTypeProvider<ZodTypeProvider>();

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  // During shutdown, a connection whose response just finished is closed instead of kept alive,
  // so that streams in flight can finish and the process can still exit within its grace period.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    reply.raw.once('finish', () => {
      if (closing) req.raw.socket.end();
    });
  });

  // Counted and timed (and traced when tracing is on) before any route exists, so every route is.
  observeRequests(app, { tracing: tracingOn() });

  const keyAuth = createKeyAuth({
    db: database.db,
    ttlMs: config.keyCacheTtlMs,
    flushMs: config.lastUsedFlushMs,
    onFlushError: (err) => app.log.warn({ err }, 'could not record API key last use'),
  });
  const now = deps.now ?? Date.now;
  await syncPlans(database.db, config.plans);
  const providers = createProviders(config.catalog);
  const probes = new ProviderProbes(config.catalog.providers, {
    ...config.probes,
    onChange: (provider, state, baseUrl) => {
      if (state.state === 'reachable') app.log.info({ provider, base_url: baseUrl }, 'model server reachable');
      else if (state.state === 'unreachable') app.log.warn({ provider, base_url: baseUrl, reason: state.reason }, 'model server unreachable');
    },
  });
  probes.start();
  app.decorate('probes', probes);
  const health = new HealthTable(
    config.catalog.router.breaker,
    // A provider whose connections are all busy is routed around before its queue is waited on.
    new Map(config.catalog.providers.map((p) => [p.id, p.max_concurrency ?? p.max_connections])),
    now,
  );
  // Before anything else starts, so that a metrics port already taken stops the start cleanly.
  const metricsServer = await serveMetrics(app, config, database, health);
  const writer = new ResponseWriter(database.db, {
    start: database.kind === 'postgres' ? 'now' : 'turn',
    onRetry: (err, attempt, jobs) => app.log.warn({ error: (err as Error).message, reason: unavailableReason(err), attempt, jobs }, 'database unavailable; retrying the write of finished responses'),
    onBare: (record, err) =>
      app.log.error({ err, response_id: record.responseId, user_id: record.userId, usage: record.usage }, 'could not store the response; stored without its content, usage counted'),
  });
  const cancels = new Cancels();
  const summaries = new Summariser({ db: database.db, catalog: config.catalog, providers, health, log: app.log, now, settings: config.summaries });
  // Tests wait on it to see a summary made.
  app.decorate('summaries', summaries);
  const recovery = new Recovery(database.db, randomUUID(), {
    ...config.recovery,
    cancels,
    onError: (what, err) => app.log.warn({ error: (err as Error).message }, `${what} failed`),
    onRecovered: (count) => app.log.warn({ count }, 'finalised responses left in progress by a stopped instance'),
  });
  await recovery.start();
  const toolbox = createToolbox(config.tools, deps.tools);
  const imageFetcher = createImageFetcher(config.images, deps.images?.lookup);
  // The database store always exists: files written before a move to S3 are still read from it.
  const databaseBlobs = new DatabaseBlobStore(database.db);
  let s3: S3BlobStore | undefined;
  let blobProbe: BlobProbe | undefined;
  if (config.files.blobStore.kind === 's3') {
    // Loaded only when used: the AWS SDK takes a while to load, which a deployment without S3 need not pay.
    const { BlobProbe, S3BlobStore } = await import('./files/s3-store.ts');
    s3 = new S3BlobStore(config.files.blobStore.s3);
    blobProbe = new BlobProbe(s3, deps.files?.probeMs ?? 15_000, (state) =>
      state === 'ok' ? app.log.info('the S3 blob store answers again') : app.log.warn({ reason: state }, 'the S3 blob store does not answer'),
    );
    blobProbe.start();
  }
  const blobs = s3 === undefined ? new BlobStores(databaseBlobs) : new BlobStores(s3, [databaseBlobs]);
  const fileJobs = new FileJobs(database.db, blobs, {
    timeoutMs: config.files.extractTimeoutMs,
    memoryMb: config.files.extractMemoryMb,
    pollMs: deps.files?.pollMs,
    onError: (err, fileId) => app.log.warn({ error: (err as Error).message, file_id: fileId }, 'text extraction failed'),
  });
  fileJobs.start();
  // Retrieval: pgvector when the database has it (tried once here), the optional embeddings model, the indexing job.
  const vectorInDb = await hasVector(database.db);
  app.log.info({ pgvector: vectorInDb, embeddings: config.retrieval.embeddings?.model ?? null }, 'retrieval ready');
  const embedder = config.retrieval.embeddings === undefined ? undefined : createEmbedder(config.retrieval.embeddings);
  const indexer = new ProjectIndexer(database.db, {
    chunking: { maxTokens: config.retrieval.chunk_tokens, overlapTokens: Math.min(config.retrieval.overlap_tokens, Math.floor(config.retrieval.chunk_tokens / 2)), maxChunks: 20_000 },
    embedder,
    pollMs: config.retrieval.poll_ms,
    embedRetryMs: config.retrieval.embed_retry_ms,
    onError: (err, fileId) => app.log.warn({ error: (err as Error).message, file_id: fileId }, 'indexing failed'),
  });
  indexer.start();
  const retriever = createRetriever(database.db, {
    embedder,
    rerank: deps.rerank,
    onEmbedError: (err) => app.log.warn({ error: (err as Error).message }, 'could not embed a query: full-text search only'),
  });
  // At the end of the shutdown grace period, streams still running are ended (and stored) instead of cut.
  const shutdown = new AbortController();
  // Every request in flight listens to it: there are as many listeners as requests, which is no leak.
  setMaxListeners(0, shutdown.signal);
  let shutdownTimer: NodeJS.Timeout | undefined;
  app.addHook('preClose', async () => {
    shutdownTimer = setTimeout(() => shutdown.abort(), config.shutdownGraceMs);
    shutdownTimer.unref();
  });
  // Housekeeping shared by all instances: old request-rate counters, and reservations whose process died.
  const prune = setInterval(() => {
    pruneRateWindows(database.db, now()).catch((err: unknown) => app.log.warn({ err }, 'could not prune rate counters'));
    releaseExpired(database.db, now())
      .then((n) => n > 0 && app.log.warn({ released: n }, 'gave back expired token reservations'))
      .catch((err: unknown) => app.log.warn({ err }, 'could not release expired reservations'));
  }, 60_000);
  prune.unref();
  const orphanSweep = { staleMs: config.recovery.staleMs, maxAgeMs: deps.files?.orphanMaxAgeMs ?? 24 * 3600_000 };
  const retention = setInterval(() => {
    purgeExpired(database.db, 500, 20, blobs, app.log)
      .then((n) => (n.responses > 0 || n.conversations > 0 || n.files > 0) && app.log.info(n, 'deleted content past its retention'))
      .catch((err: unknown) => app.log.warn({ error: (err as Error).message }, 'retention run failed'))
      // Blobs a crash left behind, and deletions that failed: after retention, which may add some.
      .then(() => sweepOrphans(database.db, blobs, orphanSweep, app.log))
      .then((n) => n > 0 && app.log.info({ blobs: n }, 'deleted orphaned blobs'))
      .catch((err: unknown) => app.log.warn({ error: (err as Error).message }, 'orphan sweep failed'));
  }, config.retentionIntervalMs);
  retention.unref();
  app.addHook('onClose', async () => {
    clearInterval(prune);
    clearInterval(retention);
    clearTimeout(shutdownTimer);
    await summaries.close();
    probes.close();
    await writer.close(config.storeWaitMs);
    // A clean exit leaves nothing in progress: this instance's row can go. Otherwise recovery elsewhere finishes its responses.
    await recovery.stop(writer.pending === 0).catch((err: unknown) => app.log.warn({ error: (err as Error).message }, 'could not remove the instance row'));
    await keyAuth.close();
    await providers.close();
    await toolbox.close();
    await fileJobs.close();
    await imageFetcher.close();
    await metricsServer.close();
    await blobProbe?.stop();
    s3?.close();
    await indexer.close();
    await embedder?.close();
  });

  const uploads = {
    db: database.db,
    blobs,
    instanceId: recovery.instanceId,
    maxBytes: config.files.maxBytes,
    orgStorageBytes: config.files.orgStorageBytes,
    onUploaded: (id: string, waitMs: number) => fileJobs.kick(id, waitMs),
    // Long enough for a typical document, so a client can use the file right after its upload.
    readyWaitMs: deps.files?.readyWaitMs ?? 5_000,
  };
  await app.register(sensible);
  await app.register(errorsPlugin);
  // After the error handler, so that a refused scrape gets the usual envelope.
  if (config.observability.metrics.token !== undefined) metricsRoute(app, config.observability.metrics.token);
  await app.register(openapiPlugin);
  await app.register(healthRoutes, { database, catalog: config.catalog, health, probes, blobProbe });
  await app.register(v1Routes, {
    prefix: '/v1',
    keyAuth,
    db: database.db,
    catalog: config.catalog,
    providers,
    health,
    writer,
    recovery,
    toolbox,
    projects: { retriever, config: config.retrieval },
    onProjectFileAdded: () => indexer.kick(),
    cancels,
    summaries,
    cancelWaitMs: config.storeWaitMs + 2 * config.recovery.checkpointMs,
    files: uploads,
    images: { db: database.db, blobs, fetcher: imageFetcher, config: config.images },
    shutdown: shutdown.signal,
    storeWaitMs: config.storeWaitMs,
    streamDefault: config.streamDefault,
    now,
    keepAliveMs: deps.responses?.keepAliveMs ?? config.sseKeepAliveMs,
  });
  await app.register(adminRoutes, {
    prefix: '/admin/v1',
    db: database.db,
    adminToken: config.adminToken,
    keyAuth,
    now,
    files: uploads,
    onProjectFileAdded: () => indexer.kick(),
  });
  return app;
}

/**
 * The metrics: gauges read from this app's health table and database, and
 * where Prometheus may read them (the main port with a token, a port of its own, or nowhere).
 */
async function serveMetrics(app: FastifyInstance, config: Config, database: Database, health: HealthTable): Promise<{ close(): Promise<void> }> {
  const models = config.catalog.models.map((m) => m.id);
  const removeSource = addGaugeSource({
    breakers: () => models.map((id) => [id, health.breakerState(id)] as [string, 0 | 1 | 2]),
    pool: () => database.poolStats(),
  });
  const { token, port, host } = config.observability.metrics;
  let server: MetricsServer | null = null;
  try {
    if (port !== undefined) server = await startMetricsServer(host, port);
  } catch (err) {
    removeSource();
    throw err;
  }
  app.decorate('metricsAddress', server?.address ?? null);
  const where = [token === undefined ? [] : ['GET /metrics on the main port (bearer token)'], server === null ? [] : [`http://${host}:${server.address.port}/metrics`]].flat();
  if (where.length === 0) app.log.info('metrics are off: set EUGPT_METRICS_TOKEN or EUGPT_METRICS_PORT to serve them');
  else app.log.info({ metrics: where }, 'serving metrics');
  return {
    async close() {
      removeSource();
      await server?.close();
    },
  };
}
