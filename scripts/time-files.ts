/**
 * Times an upload and its text extraction for a generated PDF of about 10 MB
 * (1700 pages of text), on embedded PGlite in memory: `npx tsx scripts/time-files.ts [megabytes]`.
 */
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/client.ts';
import { ADMIN_TOKEN, bearer, createTenant } from '../test/helpers/app.ts';
import { makePdf } from '../test/helpers/documents.ts';

const megabytes = Number(process.argv[2] ?? 10);
const line = (p: number, l: number) => `Page ${p} line ${l}: the quarterly report describes revenue, costs and outlook in some detail.`;
const pages: string[][] = [];
let size = 0;
for (let p = 0; size < megabytes * 1024 * 1024; p++) {
  const lines = Array.from({ length: 60 }, (_, l) => line(p, l));
  pages.push(lines);
  size += lines.join('').length + 120;
}
const pdf = makePdf(pages);
console.log(`PDF: ${(pdf.length / 1024 / 1024).toFixed(1)} MB, ${pages.length} pages`);

const database = await openDatabase({ dataDir: 'memory://' });
await database.migrate();
const app = await buildApp({ config: loadConfig({ EUGPT_ADMIN_TOKEN: ADMIN_TOKEN }), database, logger: false, files: { readyWaitMs: 0, pollMs: 100 } });
await app.ready();
const tenant = await createTenant(app);
const fd = new FormData();
fd.append('purpose', 'user_data');
fd.append('file', new Blob([pdf], { type: 'application/pdf' }), 'big.pdf');
const req = new Request('http://x/', { method: 'POST', body: fd });
const payload = Buffer.from(await req.arrayBuffer());

const started = performance.now();
const res = await app.inject({ method: 'POST', url: '/v1/files', headers: { ...bearer(tenant.key), 'content-type': req.headers.get('content-type')! }, payload });
const uploaded = performance.now();
const { id } = res.json<{ id: string }>();
console.log(`upload: ${res.statusCode} in ${(uploaded - started).toFixed(0)} ms`);
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
console.log(`download: ${content.rawPayload.length} bytes in ${(performance.now() - t).toFixed(0)} ms`);
await app.close();
await database.close();
