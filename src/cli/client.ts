import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { EXIT, exitForStatus, type ExitCode } from './exit-codes.ts';

/** A small client of the admin API for the CLI; errors become one readable line and an exit status. */

export class CliError extends Error {
  override name = 'CliError';

  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.failed,
  ) {
    super(message);
  }
}

export interface AdminClient {
  /** `body`: JSON, or a FormData sent as multipart/form-data (a file upload); `timeoutMs` for a slow upload. */
  request<T = Record<string, unknown>>(method: string, path: string, body?: unknown, opts?: { timeoutMs?: number }): Promise<T>;
}

const TIMEOUT_MS = 30_000;

export function createAdminClient(baseUrl: string, token: string | undefined): AdminClient {
  const base = baseUrl.replace(/\/+$/, '');
  return {
    async request<T>(method: string, path: string, body?: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
      const timeoutMs = opts.timeoutMs ?? TIMEOUT_MS;
      if (token === undefined) {
        throw new CliError('EUGPT_ADMIN_TOKEN is not set: export the admin token the server was started with (or put it in .env)', EXIT.auth);
      }
      const url = `${base}/admin/v1${path}`;
      let res: { status: number; text: string };
      try {
        res = body instanceof FormData ? await sendForm(method, url, token, body, timeoutMs) : await send(method, url, token, body, timeoutMs);
      } catch (err) {
        const e = err as Error & { code?: string };
        const cause = e.name === 'TimeoutError' || e.name === 'AbortError' ? `no answer within ${timeoutMs / 1000} s` : (e.code ?? e.message);
        throw new CliError(`cannot reach the server at ${base} (${cause}); is it running? Set --url or EUGPT_URL to point elsewhere`, EXIT.server);
      }
      const { text } = res;
      let data: unknown;
      try {
        data = text === '' ? {} : JSON.parse(text);
      } catch {
        throw new CliError(`the server at ${base} answered HTTP ${res.status} with a body that is not JSON; is --url the eugpt server?`, EXIT.server);
      }
      if (res.status < 200 || res.status > 299) {
        const e = (data as { error?: { message?: string; code?: string } }).error;
        throw new CliError(`${e?.message ?? 'request failed'} (${e?.code ?? 'error'}, HTTP ${res.status})`, exitForStatus(res.status));
      }
      return data as T;
    },
  };
}

/** The largest answer read: an export of a big organisation is a few MB; past this the server is not ours. */
const MAX_BODY_BYTES = 512 * 1024 * 1024;

/** One request with node:http (it loads faster than fetch, which matters for a command that lives a second). */
function send(method: string, url: string, token: string, body: unknown, timeoutMs: number): Promise<{ status: number; text: string }> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'application/json' };
  if (payload !== undefined) headers['content-type'] = 'application/json';
  const request = url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) req.destroy(new Error('the answer is too large'));
        else chunks.push(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** A multipart form (a file upload) goes through fetch, which streams a file opened with openAsBlob and sets the boundary. */
async function sendForm(method: string, url: string, token: string, form: FormData, timeoutMs: number): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { method, headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, body: form, signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, text: await res.text() };
}
