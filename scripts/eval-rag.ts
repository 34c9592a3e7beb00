// `npx tsx scripts/eval-rag.ts` (npm run eval:rag): retrieval quality on the labelled corpus in
// test/fixtures/rag-eval/ — recall@5, MRR and latency, full-text only and hybrid.
//
// Hybrid needs embeddings. By default they come from a local stand-in: a real HTTP server speaking
// POST /v1/embeddings whose vectors are hashed bags of words and character trigrams. It is NOT a
// model (it knows no meaning and no translation), so the hybrid figures it gives say that the
// pipeline works, not how well a real model would do. For that, point it at one:
//   EVAL_EMBEDDINGS_URL=https://host/v1 EVAL_EMBEDDINGS_MODEL=name [EVAL_EMBEDDINGS_KEY=…]
// EVAL_DATABASE_URL=postgres://… runs it on PostgreSQL instead of the embedded database.
import { readdirSync, readFileSync } from 'node:fs';
import { sql } from 'drizzle-orm';
import { rowsOf } from '../src/db/client.ts';
import { DEFAULT_CHUNKING } from '../src/projects/chunk.ts';
import { createEmbedder, type Embedder } from '../src/projects/embeddings.ts';
import { ProjectIndexer } from '../src/projects/indexer.ts';
import { retrieve } from '../src/projects/retrieve.ts';
import { hasVector } from '../src/projects/vector.ts';
import { startFakeEmbeddings } from '../test/helpers/fake-embeddings.ts';
import { openWorld, percentile } from './rag-setup.ts';

interface Doc {
  id: string;
  filename: string;
  text: string;
}
interface Question {
  lang: string;
  doc: string;
  question: string;
  passage: string;
  cross?: boolean;
}

const dir = new URL('../test/fixtures/rag-eval/', import.meta.url);
const docs: Doc[] = readdirSync(dir)
  .filter((f) => /^docs-.*\.json$/.test(f))
  .flatMap((f) => JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as Doc[]);
const questions = JSON.parse(readFileSync(new URL('questions.json', dir), 'utf8')) as Question[];

const K = 5;
const DEPTH = 10;

const stand = process.env.EVAL_EMBEDDINGS_URL ? undefined : await startFakeEmbeddings();
const embedder: Embedder = createEmbedder({
  base_url: process.env.EVAL_EMBEDDINGS_URL ?? stand!.url,
  model: process.env.EVAL_EMBEDDINGS_MODEL ?? 'hashed-bag-of-words-stand-in',
  apiKey: process.env.EVAL_EMBEDDINGS_KEY,
  batch_size: 32,
  timeout_ms: 60_000,
});

const world = await openWorld();
const db = world.database.db;
const fileOf = new Map<string, string>();
for (const d of docs) fileOf.set(d.id, await world.addFile(d.filename, d.text));
const indexer = new ProjectIndexer(db, { chunking: DEFAULT_CHUNKING, embedder, pollMs: 60_000, embedRetryMs: 60_000, onError: (e) => console.error('indexing:', (e as Error).message) });
const started = performance.now();
await indexer.sweep();
const indexMs = performance.now() - started;
await indexer.close();

const norm = (s: string) => s.replace(/\s+/g, ' ').trim();

interface Outcome {
  rank: number | null;
  docRank: number | null;
  ms: number;
}

async function run(hybrid: boolean): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const q of questions) {
    const t = performance.now();
    const queryVector = hybrid ? { vector: (await embedder.embed([q.question]))[0]!, model: embedder.model } : null;
    const found = await retrieve(db, { projectId: world.projectId, query: q.question, limit: DEPTH, budgetTokens: 1_000_000, queryVector });
    const ms = performance.now() - t;
    const file = fileOf.get(q.doc);
    const at = found.findIndex((c) => c.fileId === file && norm(c.text).includes(norm(q.passage)));
    const docAt = found.findIndex((c) => c.fileId === file);
    out.push({ rank: at < 0 ? null : at + 1, docRank: docAt < 0 ? null : docAt + 1, ms });
  }
  return out;
}

function summary(name: string, outcomes: Outcome[], subset: (q: Question) => boolean) {
  const chosen = outcomes.filter((_, i) => subset(questions[i]!));
  const n = chosen.length;
  const recall = chosen.filter((o) => o.rank !== null && o.rank <= K).length / n;
  const mrr = chosen.reduce((s, o) => s + (o.rank === null ? 0 : 1 / o.rank), 0) / n;
  const docRecall = chosen.filter((o) => o.docRank !== null && o.docRank <= K).length / n;
  const ms = chosen.map((o) => o.ms);
  return { mode: name, questions: n, 'recall@5': recall.toFixed(3), MRR: mrr.toFixed(3), 'doc recall@5': docRecall.toFixed(3), 'p50 ms': percentile(ms, 50).toFixed(1), 'p95 ms': percentile(ms, 95).toFixed(1) };
}

// A few queries first, so that the figures do not include warming up.
for (const q of questions.slice(0, 5)) await retrieve(db, { projectId: world.projectId, query: q.question, limit: DEPTH, budgetTokens: 1_000_000 });
const fullText = await run(false);
const hybrid = await run(true);

const [chunks] = rowsOf<{ n: number }>(await db.execute(sql`select count(*)::int as n from file_chunks c join project_files pf on pf.file_id = c.file_id where pf.project_id = ${world.projectId}`));
console.log(`corpus: ${docs.length} documents, ${chunks!.n} chunks, ${questions.length} questions (${questions.filter((q) => q.cross).length} cross-language)`);
console.log(`database: ${world.database.kind}${(await hasVector(db)) ? ' with pgvector' : ', vectors compared in the server'}; indexing took ${indexMs.toFixed(0)} ms`);
console.log(`embeddings: ${stand === undefined ? `${embedder.model} at ${process.env.EVAL_EMBEDDINGS_URL}` : 'local hashed bag-of-words stand-in (not a model: hybrid figures show the pipeline works, not what a real model gives)'}`);
const all = () => true;
const same = (q: Question) => q.cross !== true;
const cross = (q: Question) => q.cross === true;
console.table([
  summary('full-text, all', fullText, all),
  summary('hybrid, all', hybrid, all),
  summary('full-text, same language', fullText, same),
  summary('hybrid, same language', hybrid, same),
  summary('full-text, cross-language', fullText, cross),
  summary('hybrid, cross-language', hybrid, cross),
]);
const missed = fullText.flatMap((o, i) => (o.rank === null || o.rank > K ? [questions[i]!.question] : []));
if (missed.length > 0) console.log(`full-text misses (not in the top ${K}):\n  ${missed.join('\n  ')}`);

await embedder.close();
await stand?.close();
await world.database.close();
