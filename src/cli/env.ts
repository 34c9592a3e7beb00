import { EXIT } from './exit-codes.ts';
import { CliError } from './client.ts';

/**
 * The few settings the admin commands read. Checked by hand rather than with
 * the server's config module, so an admin command loads nothing of the server.
 */
export interface CliConfig {
  /** Where the admin commands send their requests. */
  url: string;
  adminToken: string | undefined;
}

export function loadCliConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  const get = (name: string) => (env[name] === '' ? undefined : env[name]);
  const url = get('EUGPT_URL');
  if (url !== undefined && !/^https?:$/.test(safeProtocol(url))) {
    throw new CliError('EUGPT_URL: must be a URL such as http://127.0.0.1:8080', EXIT.usage);
  }
  const port = get('PORT') ?? '8080';
  if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new CliError('PORT: must be a port number from 1 to 65535', EXIT.usage);
  }
  return { url: url ?? `http://127.0.0.1:${port}`, adminToken: get('EUGPT_ADMIN_TOKEN') };
}

function safeProtocol(url: string): string {
  try {
    return new URL(url).protocol;
  } catch {
    return '';
  }
}
