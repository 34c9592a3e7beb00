import { TextDecoder } from 'node:util';
import { Readability } from '@mozilla/readability';
import { parseHTML } from 'linkedom';
import TurndownService from 'turndown';

/**
 * Turning the bytes of a fetched page into text for the model: which content
 * types are read at all, how they are decoded, and HTML to Markdown (the
 * article only, without menus and footers, where Readability finds one).
 */

export type PageKind = 'html' | 'text' | 'json';

/** The parts of a DOM element this module uses; linkedom's types lean on the browser's DOM library, which is not loaded here. */
interface DomElement {
  getAttribute(name: string): string | null;
  setAttribute(name: string, value: string): void;
  removeAttribute(name: string): void;
  remove(): void;
  readonly textContent: string | null;
  readonly innerHTML: string;
}

interface DomDocument {
  readonly title: string;
  readonly body: DomElement | null;
  querySelector(selectors: string): DomElement | null;
  querySelectorAll(selectors: string): Iterable<DomElement>;
}

const HTML_TYPES = new Set(['text/html', 'application/xhtml+xml']);
const TEXT_TYPES = new Set(['text/plain', 'text/markdown', 'text/x-markdown', 'text/csv']);
const JSON_TYPES = new Set(['application/json', 'text/json']);

export interface ContentType {
  /** The media type in lower case, without parameters; undefined when the header is missing or empty. */
  mime: string | undefined;
  charset: string | undefined;
}

export function parseContentType(header: string | undefined): ContentType {
  if (!header) return { mime: undefined, charset: undefined };
  const [type = '', ...params] = header.split(';');
  let charset: string | undefined;
  for (const param of params) {
    const match = /^\s*charset\s*=\s*"?([^";\s]+)"?\s*$/i.exec(param);
    if (match) charset = match[1];
  }
  return { mime: type.trim().toLowerCase() || undefined, charset };
}

/** What kind of page a media type is, or undefined when web_fetch does not read that type. */
export function kindOf(mime: string): PageKind | undefined {
  if (HTML_TYPES.has(mime)) return 'html';
  if (TEXT_TYPES.has(mime)) return 'text';
  // Vendor and structured-syntax JSON types such as application/ld+json or application/problem+json.
  if (JSON_TYPES.has(mime) || /^application\/[\w.+-]+\+json$/.test(mime)) return 'json';
  return undefined;
}

/**
 * The kind of a page served without a content type, guessed from its first
 * bytes: markup is HTML, anything without NUL bytes is text, the rest is
 * binary and refused (undefined).
 */
export function sniffKind(bytes: Uint8Array): PageKind | undefined {
  const head = Buffer.from(bytes.subarray(0, 1024)).toString('latin1');
  if (/^\s*(<!doctype html|<html[\s>]|<head[\s>]|<body[\s>])/i.test(head)) return 'html';
  if (head.includes('\0')) return undefined;
  return 'text';
}

/**
 * The page as a string. A byte order mark wins, then the charset of the
 * Content-Type header, then (for HTML) a `<meta charset>` near the top, then
 * UTF-8. Decoding never fails: bytes that do not fit become U+FFFD, so a page
 * cut in the middle of a character still reads.
 */
export function decodePage(bytes: Uint8Array, kind: PageKind, headerCharset: string | undefined): string {
  const label = bomEncoding(bytes) ?? headerCharset ?? (kind === 'html' ? metaCharset(bytes) : undefined) ?? 'utf-8';
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(label);
  } catch {
    decoder = new TextDecoder('utf-8');
  }
  return decoder.encoding === 'windows-1252' ? decodeWindows1252(bytes) : decoder.decode(bytes);
}

/**
 * What bytes 0x80 to 0x9F stand for in windows-1252 (the encoding that
 * latin1, iso-8859-1 and ascii labels all mean on the web); 0 marks the five
 * unassigned bytes, which stay as their C1 control characters.
 */
const WINDOWS_1252_HIGH = [
  0x20ac, 0, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017d, 0,
  0, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0, 0x017e, 0x0178,
];

/**
 * Node 20's TextDecoder reads windows-1252 as plain latin1, so curly quotes,
 * dashes and the euro sign of such pages would come out as control
 * characters: this decodes the 32 bytes where the two differ itself.
 */
function decodeWindows1252(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    .toString('latin1')
    .replace(/[\u0080-\u009f]/g, (c) => {
      const mapped = WINDOWS_1252_HIGH[c.charCodeAt(0) - 0x80];
      return mapped ? String.fromCharCode(mapped) : c;
    });
}

function bomEncoding(bytes: Uint8Array): string | undefined {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return 'utf-8';
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return 'utf-16be';
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return 'utf-16le';
  return undefined;
}

/** The charset a page declares in its first kilobyte, as `<meta charset>` or the older http-equiv form. */
function metaCharset(bytes: Uint8Array): string | undefined {
  const head = Buffer.from(bytes.subarray(0, 1024)).toString('latin1');
  const label = /<meta\b[^>]*?charset\s*=\s*["']?\s*([\w.:+-]+)/i.exec(head)?.[1];
  // A page that can be read as ASCII to find this tag cannot really be UTF-16, whatever it says.
  return label && /^utf-?16/i.test(label) ? 'utf-8' : label;
}

/** Elements that never hold text a reader wants, and may hold code or huge inline data. */
const NOISE = 'script, style, noscript, template, iframe, frame, frameset, object, embed, button, input, select, textarea, svg, canvas, dialog';

/**
 * A form with less text than this is a search box, a login or a newsletter
 * sign-up and goes. Some sites wrap their whole page in one form, so a form
 * holding more text than that stays, without its controls.
 */
const SMALL_FORM_CHARS = 500;

/** Page furniture dropped when Readability finds no article and the whole body is used. */
const FURNITURE = 'nav, header, footer, aside, [role="navigation"], [role="banner"], [role="contentinfo"]';

const turndown = new TurndownService({ headingStyle: 'atx', codeBlockStyle: 'fenced', bulletListMarker: '-', emDelimiter: '_' });
turndown.remove(['script', 'style', 'noscript', 'iframe']);
turndown.addRule('images', {
  filter: 'img',
  // An inline data: image is kilobytes of base64 the model cannot see: keep only its alt text.
  replacement: (_content, node) => {
    const img = node as unknown as DomElement;
    const src = img.getAttribute('src') ?? '';
    const alt = (img.getAttribute('alt') ?? '').replace(/\s+/g, ' ').trim();
    if (!src || /^data:/i.test(src)) return alt;
    return `![${alt.replace(/[[\]]/g, '\\$&')}](${src.replace(/[()\s]/g, encodeURIComponent)})`;
  },
});

/**
 * The article of an HTML page as Markdown, with its title. Links and images
 * are made absolute against the page's URL (or its `<base href>`) so the
 * model can fetch them in turn.
 */
export function htmlToMarkdown(html: string, pageUrl: string): { title: string; markdown: string } {
  const document = parseDocument(html);
  const pageTitle = (document.title || document.querySelector('title')?.textContent || '').replace(/\s+/g, ' ').trim();
  tidy(document, pageUrl);

  const article = new Readability(document, { keepClasses: false }).parse();
  if (article?.content && article.textContent?.trim()) {
    const title = article.title?.replace(/\s+/g, ' ').trim() || pageTitle;
    return { title, markdown: toMarkdown(article.content) };
  }

  // Readability changed the document as it searched; start again from the source for the plain body.
  const fallback = parseDocument(html);
  tidy(fallback, pageUrl);
  for (const element of [...fallback.querySelectorAll(FURNITURE)]) element.remove();
  return { title: pageTitle, markdown: toMarkdown(fallback.body?.innerHTML ?? '') };
}

/**
 * linkedom builds the tree as written, without the implied `<head>` and
 * `<body>` a browser adds, so a fragment or a page without a `<body>` tag
 * would have no body at all: wrap it in one.
 */
function parseDocument(html: string): DomDocument {
  const source = /<body[\s>]/i.test(html)
    ? html
    : `<!doctype html><html><head></head><body>${html.replace(/<!doctype[^>]*>|<\/?html\b[^>]*>/gi, '')}</body></html>`;
  return (parseHTML(source) as unknown as { document: DomDocument }).document;
}

/** Drops the noise, and makes links and image sources absolute (dropping javascript: links and the like). */
function tidy(document: DomDocument, pageUrl: string): void {
  const base = resolve(document.querySelector('base[href]')?.getAttribute('href') ?? '', pageUrl) ?? pageUrl;
  for (const element of [...document.querySelectorAll(`${NOISE}, title, meta, link, base`)]) element.remove();
  for (const form of [...document.querySelectorAll('form')]) {
    if ((form.textContent ?? '').replace(/\s+/g, ' ').trim().length < SMALL_FORM_CHARS) form.remove();
  }
  for (const link of [...document.querySelectorAll('a[href]')]) {
    const href = resolve(link.getAttribute('href') ?? '', base);
    if (href && /^(https?|mailto):/i.test(href)) link.setAttribute('href', href);
    else link.removeAttribute('href');
  }
  for (const img of [...document.querySelectorAll('img')]) {
    img.removeAttribute('srcset');
    const src = img.getAttribute('src') ?? '';
    if (/^data:/i.test(src)) continue;
    const absolute = resolve(src, base);
    if (absolute && /^https?:/i.test(absolute)) img.setAttribute('src', absolute);
    else img.removeAttribute('src');
  }
}

function resolve(reference: string, base: string): string | undefined {
  if (!reference.trim()) return undefined;
  try {
    return new URL(reference.trim(), base).href;
  } catch {
    return undefined;
  }
}

function toMarkdown(html: string): string {
  return turndown
    .turndown(html)
    .replace(/[ \t]+$/gm, '')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

/** JSON pretty-printed; a document cut short by the byte cap, or not JSON after all, is kept as it came. */
export function prettyJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    // Not complete JSON: the raw text is still the best the model can get.
    return text.trim();
  }
}

/** A fenced code block whose fence is longer than any run of backticks inside, so the content cannot close it. */
export function fence(body: string, language: string): string {
  const longest = Math.max(2, ...(body.match(/`+/g) ?? []).map((run) => run.length));
  const marks = '`'.repeat(longest + 1);
  return `${marks}${language}\n${body}\n${marks}`;
}
