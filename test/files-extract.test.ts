import { describe, expect, it } from 'vitest';
import { detectType, DOCX, PDF, PPTX, XLSX } from '../src/files/detect.ts';
import { Unusable } from '../src/files/extract-errors.ts';
import { ExtractFailed, runExtraction } from '../src/files/extract-runner.ts';
import { extractText, NO_TEXT_LAYER } from '../src/files/extract.ts';
import { makeDocx, makePdf, makePptx, makeXlsx, makeZipBombDocx } from './helpers/documents.ts';

/** Type detection and text extraction of each format, and the limits of the extraction process. */

const limits = { maxPages: 2000, maxChars: 2_000_000 };
const text = (s: string) => Buffer.from(s);

describe('type detection from the bytes', () => {
  it('finds the formats with a signature, whatever they are called', async () => {
    expect(await detectType(makePdf([['Hello']]))).toBe(PDF);
    expect(await detectType(await makeDocx(['Hello']))).toBe(DOCX);
    expect(await detectType(await makePptx([['Hello']]))).toBe(PPTX);
    expect(await detectType(await makeXlsx({ S: [['a']] }))).toBe(XLSX);
  });

  it('tells the text formats apart by their look', async () => {
    expect(await detectType(text('<!DOCTYPE html><html><body><p>x</p></body></html>'))).toBe('text/html');
    expect(await detectType(text('{"a": [1, 2]}'))).toBe('application/json');
    expect(await detectType(text('name,age\nAda,36\nAlan,41\n'))).toBe('text/csv');
    expect(await detectType(text('# Title\n\nSome *markdown* text.\n'))).toBe('text/markdown');
    expect(await detectType(text('Just a note, nothing more.\nA second line.'))).toBe('text/plain');
    expect(await detectType(text('Grüße aus Köln – “quoted”'))).toBe('text/plain');
    expect(await detectType(new Uint8Array([0, 1, 2, 3, 255, 254, 0, 7]))).toBe('application/octet-stream');
  });
});

describe('text extraction', () => {
  it('reads a PDF page by page', async () => {
    const r = await extractText(makePdf([['First page line one', 'line two'], ['Second page (with parentheses)']]), limits);
    expect(r.mime).toBe(PDF);
    expect(r.pages).toBe(2);
    expect(r.text).toContain('[page 1]');
    expect(r.text).toContain('First page line one');
    expect(r.text).toMatch(/\[page 2\]\nSecond page \(with parentheses\)/);
  });

  it('refuses a PDF without a text layer, saying why', async () => {
    await expect(extractText(makePdf([null, null]), limits)).rejects.toThrow(NO_TEXT_LAYER);
  });

  it('reads only the first pages of a long PDF and says so', async () => {
    const r = await extractText(makePdf([['one'], ['two'], ['three']]), { maxPages: 2, maxChars: 1000 });
    expect(r.text).toContain('two');
    expect(r.text).not.toContain('three');
    expect(r.text).toContain('only the first 2 of 3 pages were read');
  });

  it('cuts a long text with a note', async () => {
    const r = await extractText(text('word '.repeat(1000)), { maxPages: 10, maxChars: 100 });
    expect(r.text.startsWith('word word')).toBe(true);
    expect(r.text).toContain('[the text was cut at 100 characters]');
  });

  it('reads a DOCX as Markdown', async () => {
    const r = await extractText(await makeDocx(['# Annual report', 'Revenue grew by 12 % in 2025.']), limits);
    expect(r.mime).toBe(DOCX);
    expect(r.text).toContain('# Annual report');
    expect(r.text).toContain('Revenue grew by 12 % in 2025.');
  });

  it('reads a PPTX slide by slide, in slide order', async () => {
    const r = await extractText(await makePptx([['Welcome', 'Agenda'], ['Results & outlook']]), limits);
    expect(r.pages).toBe(2);
    expect(r.text).toBe('[slide 1]\nWelcome\nAgenda\n\n[slide 2]\nResults & outlook');
  });

  it('reads an XLSX sheet by sheet as CSV lines', async () => {
    const r = await extractText(await makeXlsx({ Budget: [['item', 'cost'], ['rent, Berlin', 1200]], Notes: [['ok']] }), limits);
    expect(r.text).toBe('## Sheet: Budget\nitem,cost\n"rent, Berlin",1200\n\n## Sheet: Notes\nok');
  });

  it('reads HTML as Markdown, CSV and JSON as text', async () => {
    const html = await extractText(text('<html><head><title>Hours</title></head><body><main><h1>Opening hours</h1><p>We open at nine on weekdays and stay open until five in the afternoon.</p></main></body></html>'), limits);
    expect(html.text).toContain('Opening hours');
    expect(html.text).not.toContain('<p>');
    expect((await extractText(text('a,b\n1,2\n'), limits)).text).toBe('a,b\n1,2');
    expect((await extractText(text('{"a":1}'), limits)).text).toContain('"a": 1');
  });

  it('refuses a zip bomb before inflating it', async () => {
    // 20 MB of zeros in a zip of a few kilobytes, against a 10 MB cap (the default is 256 MB; the check is the same).
    const bomb = await makeZipBombDocx(20 * 1024 * 1024);
    expect(bomb.length).toBeLessThan(100 * 1024);
    await expect(extractText(bomb, { ...limits, maxUncompressed: 10 * 1024 * 1024 })).rejects.toThrow(/zip bomb/);
  });

  it('refuses binary content it cannot read', async () => {
    await expect(extractText(new Uint8Array([0, 1, 2, 3, 255, 254, 0, 7]), limits)).rejects.toBeInstanceOf(Unusable);
  });
});

describe('the extraction process', () => {
  it('extracts in a child process', async () => {
    const r = await runExtraction(makePdf([['In a child process']]), { timeoutMs: 30_000, memoryMb: 256, limits });
    expect(r.text).toContain('In a child process');
  }, 40_000);

  it('is killed when it takes longer than its time limit', async () => {
    const started = Date.now();
    await expect(runExtraction(makePdf([['slow']]), { timeoutMs: 50, memoryMb: 256, limits })).rejects.toBeInstanceOf(ExtractFailed);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('passes an unreadable document on as such', async () => {
    await expect(runExtraction(makePdf([null]), { timeoutMs: 30_000, memoryMb: 256, limits })).rejects.toThrow(NO_TEXT_LAYER);
  }, 40_000);
});
