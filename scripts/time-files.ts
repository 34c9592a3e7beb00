/**
 * Times an upload, its text extraction and its download for a generated PDF
 * of about 10 MB (1700 pages of text), on embedded PGlite in memory:
 * `npx tsx scripts/time-files.ts [megabytes] [database|s3]`. With `s3`, the
 * bytes go to an s3rver on loopback (the test suite's), as a deployment with
 * EUGPT_BLOB_STORE=s3 would send them to its object store.
 */
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/client.ts';
import { ADMIN_TOKEN, bearer, createTenant } from '../test/helpers/app.ts';
import { makePdf } from '../test/helpers/documents.ts';
import { startFakeS3 } from '../test/helpers/fake-s3.ts';

const megabytes = Number(process.argv[2] ?? 10);
const backend = process.argv[3] ?? 'database';
if (backend !== 'database' && backend !== 's3') throw new Error('the backend is database or s3');
const line = (p: number, l: number) => `Page ${p} line ${l}: the quarterly report describes revenue, costs and outlook in some detail.`;
const pages: string[][] = [];
let size = 0;
for (let p = 0; size < megabytes * 1024 * 1024; p++) {
  const lines = Array.from({ length: 60 }, (_, l) => line(p, l));
  pages.push(lines);
  size += lines.join('').length + 120;
}
const pdf = makePdf(pages);
const mb = pdf.length / 1024 / 1024;
console.log(`PDF: ${mb.toFixed(1)} MB, ${pages.length} pages, blob store: ${backend}`);

const s3 = backend === 's3' ? await startFakeS3() : undefined;
const database = await openDatabase({ dataDir: 'memory://' });
await database.migrate();
const config = loadConfig({ EUGPT_ADMIN_TOKEN: ADMIN_TOKEN, ...(s3 === undefined ? {} : s3.env()) });
const app = await buildApp({ config, database, logger: false, files: { readyWaitMs: 0, pollMs: 100 } });
await app.ready();
const tenant = await createTenant(app);
const fd = new FormData();
fd.append('purpose', 'user_data');
fd.append('file', new Blob([pdf], { type: 'application/pdf' }), 'big.pdf');
const req = new Request('http://x/', { method: 'POST', body: fd });
const payload = Buffer.from(await req.arrayBuffer());

const rate = (ms: number) => `${ms.toFixed(0)} ms, ${(mb / (ms / 1000)).toFixed(1)} MB/s`;
const started = performance.now();
const res = await app.inject({ method: 'POST', url: '/v1/files', headers: { ...bearer(tenant.key), 'content-type': req.headers.get('content-type')! }, payload });
const uploaded = performance.now();
const { id } = res.json<{ id: string }>();
console.log(`upload: ${res.statusCode} in ${rate(uploaded - started)}`);
for (;;) {
  const f = (await app.inject({ method: 'GET', url: `/v1/files/${id}`, headers: bearer(tenant.key) })).json<{ status: string; status_details: string | null }>();
  if (f.status !== 'uploaded') {
    console.log(`extraction: ${f.status}${f.status_details ? ` (${f.status_details})` : ''} ${(performance.now() - uploaded).toFixed(0)} ms after the upload`);
    break;
  }
  await new Promise((r) => setTimeout(r, 50));
}
const t = performance.now();
const content = await app.inject({ method: 'GET', url: `/v1/files/${id}/content`, headers: bearer(tenant.key) });
console.log(`download: ${content.rawPayload.length} bytes in ${rate(performance.now() - t)}, identical: ${content.rawPayload.equals(pdf)}`);
await app.close();
await database.close();
await s3?.close();
