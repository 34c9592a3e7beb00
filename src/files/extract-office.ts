import JSZip from 'jszip';
import mammoth from 'mammoth';
import TurndownService from 'turndown';
import { Unusable } from './extract-errors.ts';

/**
 * The Office formats are zip archives of XML. A zip bomb (a small archive of
 * entries that inflate to gigabytes) is caught before anything is inflated:
 * the central directory states every entry's uncompressed size, and an archive
 * whose entries add up to more than the cap is refused. An entry that lies
 * about its size is still bounded, by the process's heap limit.
 */

/** What all entries of one document may inflate to, unless told otherwise. */
export const MAX_UNCOMPRESSED = 256 * 1024 * 1024;
const MAX_ENTRIES = 20_000;

interface SizedEntry {
  _data?: { uncompressedSize?: number };
}

export async function openZip(bytes: Uint8Array, maxUncompressed = MAX_UNCOMPRESSED): Promise<JSZip> {
  let zip: JSZip;
  try {
    zip = await JSZip.loadAsync(bytes, { checkCRC32: false });
  } catch (err) {
    throw new Unusable(`the archive cannot be read: ${(err as Error).message}`);
  }
  const entries = Object.values(zip.files);
  if (entries.length > MAX_ENTRIES) throw new Unusable(`the archive has more than ${MAX_ENTRIES} entries`);
  let total = 0;
  for (const entry of entries) total += (entry as unknown as SizedEntry)._data?.uncompressedSize ?? 0;
  if (total > maxUncompressed) {
    throw new Unusable(`the archive would inflate to ${total} bytes, more than the ${maxUncompressed} allowed (a zip bomb?)`);
  }
  return zip;
}

const turndown = new TurndownService({ headingStyle: 'atx', codeBlockStyle: 'fenced', bulletListMarker: '-' });

/** A Word document as Markdown: headings, lists and tables survive, which helps a model more than flat text. */
export async function docxText(bytes: Uint8Array, maxUncompressed?: number): Promise<string> {
  await openZip(bytes, maxUncompressed);
  const { value } = await mammoth.convertToHtml({ buffer: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length) });
  return turndown.turndown(value).trim();
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

export function xmlText(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_m, e: string) => {
    if (e[0] === '#') {
      const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(code) && code <= 0x10ffff ? String.fromCodePoint(code) : '';
    }
    return ENTITIES[e.toLowerCase()] ?? '';
  });
}

/** The number in `ppt/slides/slide12.xml`, to put slides in their order (not the zip's). */
const numberIn = (name: string) => Number(/(\d+)\.xml$/.exec(name)?.[1] ?? 0);

/** A presentation's text, slide by slide: each paragraph of each shape on its own line. */
export async function pptxText(bytes: Uint8Array, maxPages: number, maxUncompressed?: number): Promise<{ text: string; pages: number; cut: boolean }> {
  const zip = await openZip(bytes, maxUncompressed);
  const slides = Object.keys(zip.files)
    .filter((n) => /^ppt\/slides\/slide\d+\.xml$/.test(n))
    .sort((a, b) => numberIn(a) - numberIn(b));
  const out: string[] = [];
  for (const [i, name] of slides.slice(0, maxPages).entries()) {
    const xml = await zip.file(name)!.async('string');
    const paragraphs = [...xml.matchAll(/<a:p>([\s\S]*?)<\/a:p>/g)]
      .map((p) => [...p[1]!.matchAll(/<a:t>([\s\S]*?)<\/a:t>/g)].map((t) => xmlText(t[1]!)).join(''))
      .filter((p) => p.trim() !== '');
    out.push(`[slide ${i + 1}]\n${paragraphs.join('\n')}`);
  }
  return { text: out.join('\n\n'), pages: slides.length, cut: slides.length > maxPages };
}

/** `AB` → 27: a cell's column from its reference. */
function columnOf(ref: string): number {
  let n = 0;
  for (const ch of /^[A-Z]+/.exec(ref)?.[0] ?? '') n = n * 26 + (ch.charCodeAt(0) - 64);
  return n - 1;
}

const csvField = (v: string) => (/[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

/** A workbook as text: each sheet under its name, its rows as CSV lines. */
export async function xlsxText(bytes: Uint8Array, maxUncompressed?: number): Promise<string> {
  const zip = await openZip(bytes, maxUncompressed);
  const read = async (name: string) => (await zip.file(name)?.async('string')) ?? '';
  const shared = [...(await read('xl/sharedStrings.xml')).matchAll(/<si>([\s\S]*?)<\/si>/g)].map((si) =>
    [...si[1]!.matchAll(/<t(?:\s[^>]*)?>([\s\S]*?)<\/t>/g)].map((t) => xmlText(t[1]!)).join(''),
  );
  const rels = new Map(
    [...(await read('xl/_rels/workbook.xml.rels')).matchAll(/<Relationship\b([^>]*)\/?>/g)].map((r) => [
      /\bId="([^"]+)"/.exec(r[1]!)?.[1] ?? '',
      (/\bTarget="([^"]+)"/.exec(r[1]!)?.[1] ?? '').replace(/^\/?xl\//, '').replace(/^\//, ''),
    ]),
  );
  const sheets = [...(await read('xl/workbook.xml')).matchAll(/<sheet\b([^>]*)\/?>/g)].map((s) => ({
    name: xmlText(/\bname="([^"]*)"/.exec(s[1]!)?.[1] ?? 'Sheet'),
    target: rels.get(/\br:id="([^"]+)"/.exec(s[1]!)?.[1] ?? '') ?? '',
  }));
  const out: string[] = [];
  for (const sheet of sheets) {
    const xml = await read(`xl/${sheet.target}`);
    const lines: string[] = [];
    for (const row of xml.matchAll(/<row\b[^>]*>([\s\S]*?)<\/row>/g)) {
      const cells: string[] = [];
      for (const c of row[1]!.matchAll(/<c\b([^>]*?)(?:\/>|>([\s\S]*?)<\/c>)/g)) {
        const attrs = c[1]!;
        const body = c[2] ?? '';
        const col = columnOf(/\br="([A-Z]+)\d*"/.exec(attrs)?.[1] ?? '');
        const type = /\bt="([^"]+)"/.exec(attrs)?.[1];
        const v = /<v>([\s\S]*?)<\/v>/.exec(body)?.[1];
        let value = '';
        if (type === 's' && v !== undefined) value = shared[Number(v)] ?? '';
        else if (type === 'inlineStr') value = [...body.matchAll(/<t(?:\s[^>]*)?>([\s\S]*?)<\/t>/g)].map((t) => xmlText(t[1]!)).join('');
        else if (type === 'b' && v !== undefined) value = v === '1' ? 'TRUE' : 'FALSE';
        else if (v !== undefined) value = xmlText(v);
        cells[col >= 0 ? col : cells.length] = csvField(value);
      }
      lines.push(Array.from(cells, (c) => c ?? '').join(','));
    }
    out.push(`## Sheet: ${sheet.name}\n${lines.join('\n')}`);
  }
  return out.join('\n\n');
}
