import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * Reads settings from a `.env` file before anything else looks at the
 * environment: `EUGPT_ENV_FILE` names the file, else `.env` in the working
 * directory is read when there is one. A variable already set in the real
 * environment keeps its value. Returns the file read, or undefined.
 */
export function loadEnvFile(cwd = process.cwd()): string | undefined {
  const named = process.env.EUGPT_ENV_FILE;
  const path = resolve(cwd, named === undefined || named === '' ? '.env' : named);
  if (!existsSync(path)) {
    if (named === undefined || named === '') return undefined;
    throw new EnvFileError(`EUGPT_ENV_FILE: ${path} does not exist`);
  }
  try {
    // Node's own reader: the real environment wins over the file.
    process.loadEnvFile(path);
  } catch (err) {
    throw new EnvFileError(`cannot read ${path}: ${(err as Error).message}`);
  }
  return path;
}

export class EnvFileError extends Error {
  override name = 'EnvFileError';
}
