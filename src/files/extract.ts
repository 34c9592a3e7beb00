import { fileURLToPath } from 'node:url';
import { BINARY, detectType, DOCX, PDF, PPTX, XLSX } from './detect.ts';
import { Unusable } from './extract-errors.ts';

/**
 * A document's text, as given to models. This runs in the extraction
 * process (extract-worker.ts), never in the server's: parsing a hostile
 * document can take all the memory or time it is given.
 */

export interface ExtractLimits {
  /** Pages (of a PDF, slides of a presentation) read at most; the rest are left out with a note. */
  maxPages: number;
  /** Characters of text kept at most; the rest are cut with a note. */
  maxChars: number;
  /** Bytes all entries of an Office zip may inflate to (zip bombs). */
  maxUncompressed?: number;
}

export const DEFAULT_LIMITS: ExtractLimits = { maxPages: 2000, maxChars: 2_000_000, maxUncompressed: 256 * 1024 * 1024 };

export interface Extracted {
  text: string;
  pages: number | null;
  /** The type found in the whole file. */
  mime: string;
}

export const NO_TEXT_LAYER = 'the PDF has no text layer (scanned?); OCR is not supported';

export async function extractText(bytes: Uint8Array, limits: ExtractLimits = DEFAULT_LIMITS): Promise<Extracted> {
  const mime = await detectType(bytes);
  const { text, pages, notes } = await byType(bytes, mime, limits);
  let out = text.trim();
  if (out.length > limits.maxChars) {
    out = out.slice(0, limits.maxChars);
    notes.push(`the text was cut at ${limits.maxChars} characters`);
  }
  if (notes.length > 0) out += `\n\n[${notes.join('; ')}]`;
  return { text: out, pages, mime };
}

async function byType(bytes: Uint8Array, mime: string, limits: ExtractLimits): Promise<{ text: string; pages: number | null; notes: string[] }> {
  // Each format's libraries are loaded when a document of it comes: the process is started for one document.
  const office = () => import('./extract-office.ts');
  const page = () => import('../tools/page-content.ts');
  switch (mime) {
    case PDF:
      return pdfText(bytes, limits.maxPages, limits.maxChars);
    case DOCX:
      return { text: await (await office()).docxText(bytes, limits.maxUncompressed), pages: null, notes: [] };
    case PPTX: {
      const r = await (await office()).pptxText(bytes, limits.maxPages, limits.maxUncompressed);
      return { text: r.text, pages: r.pages, notes: r.cut ? [`only the first ${limits.maxPages} of ${r.pages} slides were read`] : [] };
    }
    case XLSX:
      return { text: await (await office()).xlsxText(bytes, limits.maxUncompressed), pages: null, notes: [] };
    case 'text/html': {
      const { htmlToMarkdown, decodePage } = await page();
      const doc = htmlToMarkdown(decodePage(bytes, 'html', undefined), 'file:///');
      return { text: doc.title === '' ? doc.markdown : `# ${doc.title}\n\n${doc.markdown}`, pages: null, notes: [] };
    }
    case 'application/json': {
      const { prettyJson, decodePage } = await page();
      return { text: prettyJson(decodePage(bytes, 'json', undefined)), pages: null, notes: [] };
    }
    case 'text/plain':
    case 'text/markdown':
    case 'text/csv':
      return { text: (await page()).decodePage(bytes, 'text', undefined), pages: null, notes: [] };
    default:
      throw new Unusable(
        mime === BINARY
          ? 'the file is not a document this server can read (PDF, DOCX, PPTX, XLSX, HTML, CSV, JSON, Markdown or plain text)'
          : `files of type ${mime} have no text this server can read`,
      );
  }
}

interface PdfTextItem {
  str?: string;
  hasEOL?: boolean;
}

/** A PDF's text, page by page, each page under a `[page n]` line so that answers can point to it. */
async function pdfText(bytes: Uint8Array, maxPages: number, maxChars: number): Promise<{ text: string; pages: number; notes: string[] }> {
  const pdfjs = await import('pdfjs-dist/legacy/build/pdf.mjs');
  let doc;
  try {
    // A copy: pdf.js takes over (detaches) the buffer it is given.
    doc = await pdfjs.getDocument({
      data: new Uint8Array(bytes),
      isEvalSupported: false,
      disableFontFace: true,
      useSystemFonts: false,
      // The metrics of the 14 standard fonts, from the package: without them pdf.js works around the missing data on every page, slower.
      standardFontDataUrl: fileURLToPath(new URL('./standard_fonts/', import.meta.resolve('pdfjs-dist/package.json'))),
      verbosity: 0,
    }).promise;
  } catch (err) {
    throw new Unusable(`the PDF cannot be read: ${(err as Error).message}`);
  }
  try {
    const pages: string[] = [];
    const last = Math.min(doc.numPages, maxPages);
    let chars = 0;
    // Pages past the character cap would be cut anyway: not reading them saves most of the time on a long document.
    for (let n = 1; n <= last && chars <= maxChars; n++) {
      const page = await doc.getPage(n);
      const content = await page.getTextContent();
      const text = (content.items as PdfTextItem[]).map((it) => (it.str ?? '') + (it.hasEOL ? '\n' : '')).join('');
      page.cleanup();
      pages.push(text.replace(/[ \t]+\n/g, '\n').trim());
      chars += pages.at(-1)!.length + 12;
    }
    if (pages.every((p) => p === '')) throw new Unusable(NO_TEXT_LAYER);
    const notes = doc.numPages > pages.length && pages.length === maxPages ? [`only the first ${maxPages} of ${doc.numPages} pages were read`] : [];
    return { text: pages.map((p, i) => `[page ${i + 1}]\n${p}`).join('\n\n'), pages: doc.numPages, notes };
  } finally {
    await doc.destroy();
  }
}
