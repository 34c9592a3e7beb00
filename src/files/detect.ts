import { fileTypeFromBuffer } from 'file-type';

/**
 * A file's type, found in its bytes: a name or a client's content-type can
 * say anything, and a PDF named `notes.txt` is still a PDF. Formats with a
 * signature (PDF, the Office zips, images) are recognised by `file-type`;
 * text formats have none, so the bytes are tried as UTF-8 text and then
 * classified by what they look like.
 */

export const PDF = 'application/pdf';
export const DOCX = 'application/vnd.openxmlformats-officedocument.wordprocessingml.document';
export const XLSX = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';
export const PPTX = 'application/vnd.openxmlformats-officedocument.presentationml.presentation';
export const BINARY = 'application/octet-stream';

/** Types whose text this server can extract. */
export const EXTRACTABLE = new Set([PDF, DOCX, XLSX, PPTX, 'text/plain', 'text/markdown', 'text/csv', 'application/json', 'text/html']);

export async function detectType(head: Uint8Array): Promise<string> {
  const found = await fileTypeFromBuffer(head).catch(() => undefined);
  if (found !== undefined) return found.mime;
  return sniffText(head) ?? BINARY;
}

/** Of a text: its kind, or undefined when the bytes are not text. */
export function sniffText(head: Uint8Array): string | undefined {
  const text = decodeHead(head);
  if (text === undefined) return undefined;
  return classify(text);
}

/**
 * The bytes as UTF-8, or undefined for binary content. A head cut in the
 * middle of a multi-byte character is trimmed by up to three bytes first.
 */
function decodeHead(head: Uint8Array): string | undefined {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  for (let cut = 0; cut <= Math.min(3, head.length); cut++) {
    try {
      const text = decoder.decode(head.subarray(0, head.length - cut));
      return looksLikeText(text) ? text : undefined;
    } catch {
      // Try a shorter head: the last character may be incomplete.
    }
  }
  return undefined;
}

function looksLikeText(text: string): boolean {
  if (text.includes('\u0000')) return false;
  let control = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (c < 32 && c !== 9 && c !== 10 && c !== 13 && c !== 12) control++;
  }
  return control <= text.length / 100;
}

function classify(text: string): string {
  const start = text.trimStart().slice(0, 512).toLowerCase();
  if (/^(<!doctype html|<html[\s>]|<head[\s>]|<body[\s>])/.test(start) || /<html[\s>]/.test(start)) return 'text/html';
  if (start.startsWith('{') || start.startsWith('[')) {
    if (looksLikeJson(text)) return 'application/json';
  }
  if (looksLikeCsv(text)) return 'text/csv';
  if (/^(#{1,6} |[-*] |\d+\. |```|> )/m.test(text) && /^(#{1,6} |```)/m.test(text)) return 'text/markdown';
  return 'text/plain';
}

/** JSON that parses, or a head of it that is cut off: starts like JSON and has its punctuation. */
function looksLikeJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return /^\s*[[{]\s*("|\[|\{|\]|\}|-?\d|true|false|null)/.test(text);
  }
}

/** At least two lines, each with the same number (≥1) of commas or semicolons outside quotes. */
function looksLikeCsv(text: string): boolean {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '').slice(0, 20);
  // The last line of a head may be cut off.
  if (lines.length > 2) lines.pop();
  if (lines.length < 2) return false;
  for (const sep of [',', ';', '\t']) {
    const counts = lines.map((l) => l.replace(/"[^"]*"/g, '').split(sep).length - 1);
    if (counts[0]! >= 1 && counts.every((c) => c === counts[0])) return true;
  }
  return false;
}
