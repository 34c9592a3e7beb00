import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  check,
  index,
  date,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
  customType,
  real,
} from 'drizzle-orm/pg-core';

/**
 * One schema for both drivers (embedded PGlite and PostgreSQL). Migrations are
 * generated from this file by drizzle-kit (`npm run db:generate`).
 */

const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow();

export const organizations = pgTable(
  'organizations',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    name: text('name').notNull(),
    plan: text('plan').notNull().default('default'),
    status: text('status', { enum: ['active', 'suspended'] }).notNull().default('active'),
    apiAccess: boolean('api_access').notNull().default(true),
    /** Overrides of the plan's organisation-wide token limits; null: the plan's. */
    dailyTokenLimit: bigint('daily_token_limit', { mode: 'number' }),
    monthlyTokenLimit: bigint('monthly_token_limit', { mode: 'number' }),
    trialEndsAt: timestamp('trial_ends_at', { withTimezone: true }),
    /** Data residency: `eu`, or country codes joined by commas; null: models anywhere (router/residency.ts). */
    residency: text('residency'),
    /** Days conversations, responses and files are kept; null: the plan's (data/retention.ts). */
    retentionDays: integer('retention_days'),
    createdAt: createdAt(),
  },
  (t) => [check('organizations_status_check', sql`${t.status} in ('active', 'suspended')`)],
);

export const users = pgTable(
  'users',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    /** Stored lower-cased: addresses are compared case-insensitively. */
    email: text('email').notNull(),
    role: text('role', { enum: ['owner', 'admin', 'member'] }).notNull().default('member'),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('users_email_key').on(t.email),
    index('users_organization_idx').on(t.organizationId),
    check('users_role_check', sql`${t.role} in ('owner', 'admin', 'member')`),
  ],
);

export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    label: text('label').notNull(),
    /** The first characters of the key, safe to show in listings. */
    prefix: text('prefix').notNull(),
    /** Hex SHA-256 of the whole key; the key itself is never stored. */
    secretHash: text('secret_hash').notNull(),
    createdAt: createdAt(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (t) => [uniqueIndex('api_keys_secret_hash_key').on(t.secretHash), index('api_keys_user_idx').on(t.userId)],
);

export const projects = pgTable(
  'projects',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('projects_organization_name_key').on(t.organizationId, t.name)],
);

export const projectMembers = pgTable(
  'project_members',
  {
    projectId: uuid('project_id')
      .notNull()
      .references(() => projects.id, { onDelete: 'cascade' }),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.projectId, t.userId] }), index('project_members_user_idx').on(t.userId)],
);

export const conversations = pgTable(
  'conversations',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    title: text('title'),
    /** Up to 16 string pairs set by the client (OpenAI's conversation metadata). */
    metadata: jsonb('metadata').notNull().default({}),
    /** Made for a stateless request: not listed to the user, still continuable by id. */
    hidden: boolean('hidden').notNull().default(false),
    createdAt: createdAt(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('conversations_user_idx').on(t.userId, t.updatedAt)],
);

export const responses = pgTable(
  'responses',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    conversationId: uuid('conversation_id').references(() => conversations.id, { onDelete: 'set null' }),
    projectId: uuid('project_id').references(() => projects.id, { onDelete: 'set null' }),
    apiKeyId: uuid('api_key_id').references(() => apiKeys.id, { onDelete: 'set null' }),
    model: text('model').notNull(),
    status: text('status', { enum: ['in_progress', 'completed', 'failed', 'incomplete'] }).notNull(),
    inputTokens: integer('input_tokens').notNull().default(0),
    outputTokens: integer('output_tokens').notNull().default(0),
    cachedTokens: integer('cached_tokens').notNull().default(0),
    reasoningTokens: integer('reasoning_tokens').notNull().default(0),
    totalTokens: integer('total_tokens').notNull().default(0),
    createdAt: createdAt(),
    completedAt: timestamp('completed_at', { withTimezone: true }),
    /** Milliseconds from request start to the first output token, and to the end. */
    firstTokenMs: integer('first_token_ms'),
    durationMs: integer('duration_ms'),
    /** The final response object as the API returns it (while in progress: the last checkpoint). */
    body: jsonb('body'),
    error: jsonb('error'),
    /** The server instance producing it, while in progress: a dead instance's responses are finalised by another. */
    instanceId: uuid('instance_id'),
    /**
     * While in progress: what finalising it needs if its instance dies (the
     * input items to store, the prompt's tokens, the reservation, the usage
     * windows). Cleared when the response ends.
     */
    pending: jsonb('pending'),
  },
  (t) => [
    index('responses_user_idx').on(t.userId, t.createdAt),
    index('responses_in_progress_idx').on(t.instanceId).where(sql`${t.status} = 'in_progress'`),
    index('responses_organization_idx').on(t.organizationId, t.createdAt),
    index('responses_conversation_idx').on(t.conversationId),
    check('responses_status_check', sql`${t.status} in ('in_progress', 'completed', 'failed', 'incomplete')`),
  ],
);

export const conversationItems = pgTable(
  'conversation_items',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    conversationId: uuid('conversation_id')
      .notNull()
      .references(() => conversations.id, { onDelete: 'cascade' }),
    /** Order within the conversation, from 0; a deleted response leaves a gap. */
    position: integer('position').notNull(),
    /** system | user | assistant | developer | tool */
    role: text('role').notNull(),
    /** message | function_call | function_call_output */
    type: text('type').notNull().default('message'),
    /** The id clients know the item by (`msg_…`, `fc_…`), for `item_reference` inputs; null for items without one. */
    itemId: text('item_id'),
    /** input: sent by the client in its request; output: made by the response. */
    origin: text('origin', { enum: ['input', 'output'] }).notNull().default('input'),
    content: jsonb('content').notNull(),
    /** Tokens of the item's text, counted once at write time for history windows. */
    tokens: integer('tokens').notNull().default(0),
    responseId: uuid('response_id').references(() => responses.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('conversation_items_position_key').on(t.conversationId, t.position),
    index('conversation_items_item_id_idx').on(t.itemId).where(sql`${t.itemId} is not null`),
  ],
);

/**
 * Token usage summed per user and per organisation for each UTC day and
 * month, written in the same transaction as the response it counts.
 */
export const usageTotals = pgTable(
  'usage_totals',
  {
    subjectType: text('subject_type', { enum: ['user', 'organization'] }).notNull(),
    subjectId: uuid('subject_id').notNull(),
    window: text('window', { enum: ['day', 'month'] }).notNull(),
    /** First day of the window (UTC). */
    windowStart: date('window_start', { mode: 'string' }).notNull(),
    inputTokens: bigint('input_tokens', { mode: 'number' }).notNull().default(0),
    outputTokens: bigint('output_tokens', { mode: 'number' }).notNull().default(0),
    totalTokens: bigint('total_tokens', { mode: 'number' }).notNull().default(0),
    requests: integer('requests').notNull().default(0),
    /** Tokens held by requests in flight (their estimates), released when each is reconciled. */
    reservedTokens: bigint('reserved_tokens', { mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.subjectType, t.subjectId, t.window, t.windowStart] })],
);

/** Named plans: token limits (null: none), feature flags, an optional trial length. */
export const plans = pgTable('plans', {
  name: text('name').primaryKey(),
  dailyTokens: bigint('daily_tokens', { mode: 'number' }),
  monthlyTokens: bigint('monthly_tokens', { mode: 'number' }),
  userDailyTokens: bigint('user_daily_tokens', { mode: 'number' }),
  userMonthlyTokens: bigint('user_monthly_tokens', { mode: 'number' }),
  requestsPerMinute: integer('requests_per_minute'),
  trialDays: integer('trial_days'),
  /** Days the content of its organisations is kept; null: kept until deleted. */
  retentionDays: integer('retention_days'),
  features: jsonb('features').notNull().default({}),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

/** Requests per API key per UTC minute, for the optional request rate limit. */
export const rateWindows = pgTable(
  'rate_windows',
  {
    keyId: uuid('key_id').notNull(),
    windowStart: timestamp('window_start', { withTimezone: true }).notNull(),
    count: integer('count').notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.keyId, t.windowStart] }), index('rate_windows_start_idx').on(t.windowStart)],
);

/**
 * One row per token reservation in flight, so that one left behind by a
 * process that died is given back when it expires (limits/quota.ts).
 */
export const reservations = pgTable(
  'reservations',
  {
    id: uuid('id').primaryKey(),
    estimate: bigint('estimate', { mode: 'number' }).notNull(),
    /** The usage_totals rows holding the estimate: [{subjectType, subjectId, window, windowStart}]. */
    held: jsonb('held').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  },
  (t) => [index('reservations_expires_idx').on(t.expiresAt)],
);

/**
 * Server instances that are alive: each writes its heartbeat every few
 * seconds; an in-progress response whose instance stopped beating is
 * finalised by another instance (responses/recovery.ts).
 */
export const instances = pgTable('instances', {
  id: uuid('id').primaryKey(),
  startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
  heartbeatAt: timestamp('heartbeat_at', { withTimezone: true }).notNull().defaultNow(),
});

/** Binary content as PostgreSQL stores it. */
const bytea = customType<{ data: Buffer; driverData: Buffer | Uint8Array }>({
  dataType: () => 'bytea',
  fromDriver: (v) => (Buffer.isBuffer(v) ? v : Buffer.from(v)),
});

/**
 * Files uploaded through /v1/files: their metadata, where their bytes are
 * (the blob store), and the text extracted from them. Extraction runs as a
 * job any instance can claim (`locked_until`), so a crash mid-extraction is
 * retried elsewhere.
 */
export const files = pgTable(
  'files',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    organizationId: uuid('organization_id')
      .notNull()
      .references(() => organizations.id, { onDelete: 'cascade' }),
    filename: text('filename').notNull(),
    purpose: text('purpose').notNull(),
    bytes: bigint('bytes', { mode: 'number' }).notNull(),
    /** The type found in the bytes, not the one the name or the client claims. */
    mimeType: text('mime_type'),
    sha256: text('sha256').notNull(),
    /** Where the bytes are: the key in the blob store named by `storage`. */
    storage: text('storage', { enum: ['database', 's3'] }).notNull(),
    storageKey: text('storage_key').notNull(),
    /** uploaded → processed, or error (with `status_details`). */
    status: text('status', { enum: ['uploaded', 'processed', 'error'] }).notNull().default('uploaded'),
    statusDetails: text('status_details'),
    /** The document's text, as given to models; null until processed. */
    text: text('text'),
    /** Pages of a paged document (PDF, slides), when known. */
    pages: integer('pages'),
    /** Extraction job: tries so far, and until when the instance working on it holds it. */
    attempts: integer('attempts').notNull().default(0),
    lockedUntil: timestamp('locked_until', { withTimezone: true }),
    createdAt: createdAt(),
    processedAt: timestamp('processed_at', { withTimezone: true }),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
  },
  (t) => [
    index('files_user_idx').on(t.userId, t.createdAt),
    index('files_organization_idx').on(t.organizationId),
    index('files_pending_idx').on(t.createdAt).where(sql`${t.status} = 'uploaded'`),
  ],
);

/** The database blob store: each blob's bytes in chunks, so no row is ever huge and streaming needs no large buffer. */
export const blobChunks = pgTable(
  'blob_chunks',
  {
    key: text('key').notNull(),
    seq: integer('seq').notNull(),
    data: bytea('data').notNull(),
  },
  (t) => [primaryKey({ columns: [t.key, t.seq] })],
);

/**
 * Every admin action: who (the admin credential, by fingerprint), what, on
 * which target, when, from where. The application only ever inserts; a
 * trigger refuses updates and deletes (migrations/0006_*.sql).
 */
export const auditEvents = pgTable(
  'audit_events',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
    /** e.g. `admin:3f2a9c1e` (a fingerprint of the admin token), never the token. */
    actor: text('actor').notNull(),
    /** e.g. `organization.create`, `api_key.revoke`. */
    action: text('action').notNull(),
    targetType: text('target_type'),
    targetId: text('target_id'),
    ip: text('ip'),
    requestId: text('request_id'),
    /** What changed, by field name; never a secret or a key. */
    details: jsonb('details').notNull().default({}),
  },
  (t) => [index('audit_events_at_idx').on(t.at), index('audit_events_target_idx').on(t.targetType, t.targetId)],
);

/**
 * Blob writes under way: a row is made before the first byte is stored and
 * removed once the file row that points at the blob is committed. A row
 * whose instance stopped beating (or that is very old) marks bytes a crash
 * left behind, which the retention loop deletes (files/orphans.ts).
 */
export const blobUploads = pgTable('blob_uploads', {
  key: text('key').primaryKey(),
  storage: text('storage', { enum: ['database', 's3'] }).notNull(),
  instanceId: uuid('instance_id').notNull(),
  startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
});

/** A project's corpus: the files its members added for retrieval. */
export const projectFiles = pgTable(
  'project_files',
  {
    projectId: uuid('project_id')
      .notNull()
      .references(() => projects.id, { onDelete: 'cascade' }),
    fileId: uuid('file_id')
      .notNull()
      .references(() => files.id, { onDelete: 'cascade' }),
    /** The member who added it; null once that user is erased. */
    addedBy: uuid('added_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.projectId, t.fileId] }), index('project_files_file_idx').on(t.fileId)],
);

/**
 * A file's retrieval index: made once per file (whatever the number of
 * projects holding it) by a job any instance can claim (`locked_until`).
 */
export const fileIndexes = pgTable(
  'file_indexes',
  {
    fileId: uuid('file_id')
      .primaryKey()
      .references(() => files.id, { onDelete: 'cascade' }),
    /** pending → indexed, or error (with `details`). */
    status: text('status', { enum: ['pending', 'indexed', 'error'] }).notNull().default('pending'),
    details: text('details'),
    /** The text-search configuration chosen for the document's language (`german`, `simple`…). */
    language: text('language'),
    chunks: integer('chunks').notNull().default(0),
    /** The embeddings model the chunks' vectors came from; null when indexed for full-text only. */
    embeddingModel: text('embedding_model'),
    attempts: integer('attempts').notNull().default(0),
    lockedUntil: timestamp('locked_until', { withTimezone: true }),
    createdAt: createdAt(),
    indexedAt: timestamp('indexed_at', { withTimezone: true }),
  },
  (t) => [index('file_indexes_pending_idx').on(t.createdAt).where(sql`${t.status} = 'pending'`)],
);

/** A full-text search document as PostgreSQL stores it. */
const tsvector = customType<{ data: string; driverData: string }>({ dataType: () => 'tsvector' });

/** The retrieval units of an indexed file, each with its heading and page when known. */
export const fileChunks = pgTable(
  'file_chunks',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    fileId: uuid('file_id')
      .notNull()
      .references(() => files.id, { onDelete: 'cascade' }),
    seq: integer('seq').notNull(),
    text: text('text').notNull(),
    heading: text('heading'),
    page: integer('page'),
    tokens: integer('tokens').notNull(),
    /** The text-search configuration `tsv` was made with. */
    language: text('language').notNull(),
    tsv: tsvector('tsv').notNull(),
    /** The chunk's embedding; compared with pgvector when the database has it, in the server otherwise. */
    embedding: real('embedding').array(),
  },
  (t) => [
    uniqueIndex('file_chunks_file_seq_key').on(t.fileId, t.seq),
    index('file_chunks_tsv_idx').using('gin', t.tsv),
  ],
);

/**
 * The running summary of a conversation's older turns: the items up to
 * `through_position` are replaced by `text` when the history does not fit a
 * model's window. Updated incrementally (the old summary plus the turns
 * since) as the conversation grows (conversations/summary.ts).
 */
export const conversationSummaries = pgTable('conversation_summaries', {
  conversationId: uuid('conversation_id')
    .primaryKey()
    .references(() => conversations.id, { onDelete: 'cascade' }),
  text: text('text').notNull(),
  throughPosition: integer('through_position').notNull(),
  tokens: integer('tokens').notNull(),
  model: text('model').notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});
