import { z } from 'zod';

/** The `retrieval` section of the config file: project corpora, their index and what goes into prompts. See docs/retrieval.md. */

export const embeddingsSchema = z.strictObject({
  /** The root of an OpenAI-compatible API: chunks are sent to `{base_url}/embeddings`. */
  base_url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
  model: z.string().min(1).max(200),
  /** Name of the environment variable holding its API key, if it needs one. */
  api_key_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
  /** Asked of models that can shorten their vectors (`dimensions`); otherwise the model's own size. */
  dimensions: z.number().int().min(8).max(8192).optional(),
  /** Chunks per request. */
  batch_size: z.number().int().min(1).max(2048).default(64),
  timeout_ms: z.number().int().min(100).max(600_000).default(30_000),
});

export const retrievalSchema = z
  .strictObject({
    /** Absent: chunks are indexed and retrieved by full-text search only. */
    embeddings: embeddingsSchema.optional(),
    /** Tokens of a chunk at most, and repeated between neighbours. */
    chunk_tokens: z.number().int().min(50).max(4000).default(400),
    overlap_tokens: z.number().int().min(0).max(1000).default(60),
    /** Passages put into a response's prompt at most. */
    top_k: z.number().int().min(1).max(50).default(8),
    /** The share of the model's context window the passages may take… */
    context_share: z.number().min(0.01).max(0.9).default(0.25),
    /** …and never more than this many tokens. */
    max_context_tokens: z.number().int().min(100).max(200_000).default(6000),
    /** How often each instance looks for files to index. */
    poll_ms: z.number().int().min(100).max(3_600_000).default(5_000),
    /** After embeddings failed, how long before a file's vectors are tried again. */
    embed_retry_ms: z.number().int().min(100).max(86_400_000).default(300_000),
  })
  .prefault({});

export type RetrievalConfig = z.infer<typeof retrievalSchema>;
export type EmbeddingsConfig = z.infer<typeof embeddingsSchema>;
export type ResolvedRetrievalConfig = RetrievalConfig & { embeddings: (EmbeddingsConfig & { apiKey: string | undefined }) | undefined };
