/** A small client of the admin API for the CLI; errors become one readable line. */

export class CliError extends Error {
  override name = 'CliError';
}

export interface AdminClient {
  /** `body`: JSON, or a FormData sent as multipart/form-data (a file upload). */
  request<T = Record<string, unknown>>(method: string, path: string, body?: unknown, opts?: { timeoutMs?: number }): Promise<T>;
}

const TIMEOUT_MS = 30_000;

export function createAdminClient(baseUrl: string, token: string | undefined): AdminClient {
  const base = baseUrl.replace(/\/+$/, '');
  return {
    async request<T>(method: string, path: string, body?: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
      if (token === undefined) {
        throw new CliError('EUGPT_ADMIN_TOKEN is not set: export the admin token the server was started with');
      }
      const url = `${base}/admin/v1${path}`;
      const form = body instanceof FormData;
      let res: Response;
      try {
        res = await fetch(url, {
          method,
          headers: {
            authorization: `Bearer ${token}`,
            // A form sets its own type, with the boundary.
            ...(body === undefined || form ? {} : { 'content-type': 'application/json' }),
          },
          ...(body === undefined ? {} : { body: form ? body : JSON.stringify(body) }),
          signal: AbortSignal.timeout(opts.timeoutMs ?? TIMEOUT_MS),
        });
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
        throw new CliError(`cannot reach the server at ${base} (${cause}); is it running? Set --url or EUGPT_URL to point elsewhere`);
      }
      const text = await res.text();
      let data: unknown;
      try {
        data = text === '' ? {} : JSON.parse(text);
      } catch {
        throw new CliError(`the server at ${base} answered HTTP ${res.status} with a body that is not JSON`);
      }
      if (!res.ok) {
        const e = (data as { error?: { message?: string; code?: string } }).error;
        throw new CliError(`${e?.message ?? 'request failed'} (${e?.code ?? 'error'}, HTTP ${res.status})`);
      }
      return data as T;
    },
  };
}
