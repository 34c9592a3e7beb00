import { Unusable } from './extract-errors.ts';
import { extractText, type ExtractLimits } from './extract.ts';

/**
 * The extraction process: started for one document, given its bytes over
 * IPC, it answers with the text and exits. Its heap is capped by the parent
 * (`--max-old-space-size`), so a document that needs more kills this process,
 * not the server.
 */

export interface ExtractRequest {
  bytes: Uint8Array;
  limits: ExtractLimits;
}

export type ExtractReply =
  | { ok: true; text: string; pages: number | null; mime: string }
  | { ok: false; unusable: boolean; message: string };

process.once('message', (raw) => {
  const req = raw as ExtractRequest;
  void extractText(req.bytes, req.limits)
    .then((r): ExtractReply => ({ ok: true, text: r.text, pages: r.pages, mime: r.mime }))
    .catch((err: unknown): ExtractReply => ({ ok: false, unusable: err instanceof Unusable, message: (err as Error).message }))
    .then((reply) => process.send!(reply, () => process.exit(0)));
});
