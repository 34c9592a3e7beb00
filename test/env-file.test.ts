import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EnvFileError, loadEnvFile } from '../src/env-file.ts';

const NAMES = ['EUGPT_ENV_FILE', 'EUGPT_TEST_FROM_FILE', 'EUGPT_TEST_BOTH', 'EUGPT_TEST_OTHER'];
afterEach(() => {
  for (const n of NAMES) delete process.env[n];
});

describe('.env file', () => {
  it('reads .env in the working directory, and the real environment wins', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eugpt-env-'));
    writeFileSync(join(dir, '.env'), '# settings\nEUGPT_TEST_FROM_FILE=file value\nEUGPT_TEST_BOTH="from the file"\n');
    process.env.EUGPT_TEST_BOTH = 'real';
    expect(loadEnvFile(dir)).toBe(join(dir, '.env'));
    expect(process.env.EUGPT_TEST_FROM_FILE).toBe('file value');
    expect(process.env.EUGPT_TEST_BOTH).toBe('real');
  });

  it('reads the file EUGPT_ENV_FILE names instead, and says when it is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eugpt-env-'));
    writeFileSync(join(dir, '.env'), 'EUGPT_TEST_FROM_FILE=default\n');
    writeFileSync(join(dir, 'prod.env'), 'EUGPT_TEST_OTHER=named\n');
    process.env.EUGPT_ENV_FILE = 'prod.env';
    expect(loadEnvFile(dir)).toBe(join(dir, 'prod.env'));
    expect(process.env.EUGPT_TEST_OTHER).toBe('named');
    expect(process.env.EUGPT_TEST_FROM_FILE).toBeUndefined();
    process.env.EUGPT_ENV_FILE = 'missing.env';
    expect(() => loadEnvFile(dir)).toThrow(EnvFileError);
    expect(() => loadEnvFile(dir)).toThrow(/EUGPT_ENV_FILE: .*missing\.env does not exist/);
  });

  it('is optional when not named', () => {
    expect(loadEnvFile(mkdtempSync(join(tmpdir(), 'eugpt-env-')))).toBeUndefined();
  });
});
