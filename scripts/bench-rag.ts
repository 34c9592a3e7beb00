// `npx tsx scripts/bench-rag.ts`: indexes about 10,000 chunks into one project and reports the
// indexing throughput (chunks/s, full-text, then the vectors filled in from the local hashed
// embeddings stand-in) and retrieval latency (p50/p95, full-text and hybrid).
// BENCH_CHUNKS=n changes the size; EVAL_DATABASE_URL=postgres://… runs it on PostgreSQL.
import { sql } from 'drizzle-orm';
import { rowsOf } from '../src/db/client.ts';
import { DEFAULT_CHUNKING } from '../src/projects/chunk.ts';
import { createEmbedder } from '../src/projects/embeddings.ts';
import { ProjectIndexer } from '../src/projects/indexer.ts';
import { retrieve } from '../src/projects/retrieve.ts';
import { hasVector } from '../src/projects/vector.ts';
import { startFakeEmbeddings } from '../test/helpers/fake-embeddings.ts';
import { openWorld, percentile } from './rag-setup.ts';

const TARGET = Number(process.env.BENCH_CHUNKS ?? 10_000);
const PER_DOC = 200;
const QUERIES = 200;

// A deterministic vocabulary of made-up words, drawn with a skew so that some are common.
let seed = 42;
const rand = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
const syllables = ['ka', 'lo', 'mi', 'ten', 'vor', 'sa', 'del', 'ri', 'pon', 'gu', 'sta', 'ne', 'ber', 'fi', 'zu', 'ham'];
const vocabulary = Array.from({ length: 5000 }, () => Array.from({ length: 2 + Math.floor(rand() * 3) }, () => syllables[Math.floor(rand() * syllables.length)]).join(''));
const word = () => vocabulary[Math.floor(vocabulary.length * rand() ** 2)]!;
const sentence = () => `${Array.from({ length: 8 + Math.floor(rand() * 10) }, word).join(' ')}.`;

/** A document of PER_DOC sections: each a heading and a paragraph of ~150 words, one chunk each. */
function document(n: number): string {
  const parts: string[] = [];
  for (let s = 0; s < PER_DOC; s++) {
    if (s % 20 === 0) parts.push(`[page ${s / 20 + 1}]`);
    parts.push(`## Section ${n}.${s} ${word()} ${word()}`, Array.from({ length: 10 }, sentence).join(' '));
  }
  return parts.join('\n\n');
}

const world = await openWorld();
const db = world.database.db;
const docs = Math.ceil(TARGET / PER_DOC);
for (let i = 0; i < docs; i++) await world.addFile(`bench-${i}.md`, document(i));

const fullText = new ProjectIndexer(db, { chunking: DEFAULT_CHUNKING, pollMs: 3_600_000, embedRetryMs: 1, onError: (e) => console.error('indexing:', (e as Error).message) });
let t = performance.now();
await fullText.sweep();
const indexSeconds = (performance.now() - t) / 1000;
await fullText.close();
const [{ n: chunks } = { n: 0 }] = rowsOf<{ n: number }>(await db.execute(sql`select count(*)::int as n from file_chunks c join project_files pf on pf.file_id = c.file_id where pf.project_id = ${world.projectId}`));

// The vectors, filled in afterwards as for files indexed while the model was down.
const stand = await startFakeEmbeddings();
const embedder = createEmbedder({ base_url: stand.url, model: 'hash-256', apiKey: undefined, batch_size: 128, timeout_ms: 60_000 });
const withVectors = new ProjectIndexer(db, { chunking: DEFAULT_CHUNKING, embedder, pollMs: 3_600_000, embedRetryMs: 1 });
t = performance.now();
await withVectors.sweep();
const embedSeconds = (performance.now() - t) / 1000;
await withVectors.close();

const queries = Array.from({ length: QUERIES }, () => `${word()} ${word()} ${word()} ${word()}`);
async function latencies(hybrid: boolean): Promise<number[]> {
  const out: number[] = [];
  for (const q of queries) {
    const start = performance.now();
    const queryVector = hybrid ? { vector: (await embedder.embed([q]))[0]!, model: embedder.model } : null;
    await retrieve(db, { projectId: world.projectId, query: q, limit: 8, budgetTokens: 6000, queryVector });
    out.push(performance.now() - start);
  }
  return out;
}
await latencies(false); // warm-up
const ft = await latencies(false);
const hy = await latencies(true);

console.log(`database: ${world.database.kind}${(await hasVector(db)) ? ' with pgvector' : ', vectors compared in the server'}`);
console.log(`indexed ${chunks} chunks of ${docs} documents in ${indexSeconds.toFixed(1)} s: ${(chunks / indexSeconds).toFixed(0)} chunks/s (chunking, language, tsvector, insert)`);
console.log(`vectors for ${chunks} chunks (hashed stand-in, 256 dimensions) in ${embedSeconds.toFixed(1)} s: ${(chunks / embedSeconds).toFixed(0)} chunks/s`);
console.table([
  { retrieval: 'full-text', queries: QUERIES, 'p50 ms': percentile(ft, 50).toFixed(1), 'p95 ms': percentile(ft, 95).toFixed(1) },
  { retrieval: 'hybrid (query embedded + vectors + RRF)', queries: QUERIES, 'p50 ms': percentile(hy, 50).toFixed(1), 'p95 ms': percentile(hy, 95).toFixed(1) },
]);
await embedder.close();
await stand.close();
await world.database.close();
