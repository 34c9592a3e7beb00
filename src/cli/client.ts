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
  request<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T>;
}

const TIMEOUT_MS = 30_000;

export function createAdminClient(baseUrl: string, token: string | undefined): AdminClient {
  const base = baseUrl.replace(/\/+$/, '');
  return {
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      if (token === undefined) {
        throw new CliError('EUGPT_ADMIN_TOKEN is not set: export the admin token the server was started with (or put it in .env)', EXIT.auth);
      }
      const url = `${base}/admin/v1${path}`;
      let res: Response;
      let text: string;
      try {
        res = await fetch(url, {
          method,
          headers: {
            authorization: `Bearer ${token}`,
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(TIMEOUT_MS),
        });
        text = await res.text();
      } catch (err) {
        const e = err as Error & { cause?: { code?: string; message?: string } };
        const cause = e.name === 'TimeoutError' ? `no answer within ${TIMEOUT_MS / 1000} s` : (e.cause?.code ?? e.cause?.message ?? e.message);
        throw new CliError(`cannot reach the server at ${base} (${cause}); is it running? Set --url or EUGPT_URL to point elsewhere`, EXIT.server);
      }
      let data: unknown;
      try {
        data = text === '' ? {} : JSON.parse(text);
      } catch {
        throw new CliError(`the server at ${base} answered HTTP ${res.status} with a body that is not JSON; is --url the eugpt server?`, EXIT.server);
      }
      if (!res.ok) {
        const e = (data as { error?: { message?: string; code?: string } }).error;
        throw new CliError(`${e?.message ?? 'request failed'} (${e?.code ?? 'error'}, HTTP ${res.status})`, exitForStatus(res.status));
      }
      return data as T;
    },
  };
}
