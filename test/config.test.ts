import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { loadCliConfig } from '../src/cli/env.ts';
import { ConfigError, loadConfig } from '../src/config.ts';

const fileWith = (name: string, text: string) => {
  const path = join(mkdtempSync(join(tmpdir(), 'eugpt-config-')), name);
  writeFileSync(path, text);
  return path;
};

describe('config', () => {
  it('has working defaults: port 8080, embedded database, no admin token', () => {
    const c = loadConfig({});
    expect(c.port).toBe(8080);
    expect(c.host).toBe('127.0.0.1');
    expect(c.databaseUrl).toBeUndefined();
    expect(c.dataDir).toMatch(/data$/);
    expect(c.adminToken).toBeUndefined();
    expect(c.trustProxy).toBe(false);
    expect(c.keyCacheTtlMs).toBeLessThanOrEqual(2000);
  });

  it('treats empty values as unset', () => {
    expect(loadConfig({ PORT: '', DATABASE_URL: '' }).port).toBe(8080);
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ EUGPT_ADMIN_TOKEN: 'short' }, 'EUGPT_ADMIN_TOKEN'],
    [{ EUGPT_BODY_LIMIT: '-1' }, 'EUGPT_BODY_LIMIT'],
    [{ EUGPT_KEY_CACHE_TTL_MS: '60000' }, 'EUGPT_KEY_CACHE_TTL_MS'],
    [{ EUGPT_TRUST_PROXY: 'everyone' }, 'EUGPT_TRUST_PROXY'],
  ])('rejects %o with a message naming %s', (env, name) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(new RegExp(`^${name}: `));
  });

  it('parses the trust-proxy forms', () => {
    expect(loadConfig({ EUGPT_TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(loadConfig({ EUGPT_TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(loadConfig({ EUGPT_TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' }).trustProxy).toEqual(['10.0.0.0/8', '127.0.0.1']);
  });

  it('reads an empty YAML or JSON config file', () => {
    for (const path of [fileWith('c.yaml', '# nothing yet\n'), fileWith('c.json', '{}')]) {
      const { catalog } = loadConfig({ EUGPT_CONFIG: path });
      expect(catalog).toMatchObject({ providers: [], models: [] });
      expect(catalog.router).toMatchObject({ fast_max_tokens: 100, breaker: { failures: 3 }, failover: { max_attempts: 3 } });
    }
  });

  it('names the file and the bad entry of a config file', () => {
    const bad = fileWith('bad.yaml', 'surprise: 1\n');
    expect(() => loadConfig({ EUGPT_CONFIG: bad })).toThrow(/EUGPT_CONFIG .*bad\.yaml.*surprise/);
    const broken = fileWith('broken.yaml', 'a: [1,\n');
    expect(() => loadConfig({ EUGPT_CONFIG: broken })).toThrow(/not valid YAML or JSON/);
    expect(() => loadConfig({ EUGPT_CONFIG: '/nonexistent/eugpt.yaml' })).toThrow(/cannot read/);
  });

  const issueYaml = `providers:
  - id: local
    type: openai-compatible
    base_url: http://127.0.0.1:11434/v1
    api_key_env: LOCAL_API_KEY        # optional
models:
  - id: llama-small
    provider: local
    upstream_model: llama3.2:3b
    categories: [fast, general]
    context_window: 32768
    max_output_tokens: 4096
    price: { input: 0.1, output: 0.3 }
`;

  it('reads providers and models in the documented shape, YAML or JSON, with the key from the environment', () => {
    const yaml = loadConfig({ EUGPT_CONFIG: fileWith('c.yaml', issueYaml), LOCAL_API_KEY: 'sk-1' }).catalog;
    expect(yaml.providers[0]).toMatchObject({ id: 'local', apiKey: 'sk-1', timeouts: { connect_ms: 10_000 }, max_connections: 512 });
    expect(yaml.models[0]).toMatchObject({ id: 'llama-small', upstream_model: 'llama3.2:3b', enabled: true, price: { input: 0.1, output: 0.3 } });
    const json = loadConfig({ EUGPT_CONFIG: fileWith('c.json', JSON.stringify(parseYaml(issueYaml))), LOCAL_API_KEY: 'sk-1' });
    expect(json.catalog).toEqual(yaml);
  });

  it.each([
    ['a missing API key variable', issueYaml, {}, /providers\[0\] \(local\): environment variable LOCAL_API_KEY/],
    ['an unknown provider', issueYaml.replace('provider: local', 'provider: remote'), { LOCAL_API_KEY: 'k' }, /models\[0\] \(llama-small\): provider "remote"/],
    ['a non-http base URL', issueYaml.replace('http://127.0.0.1:11434/v1', 'ftp://x'), { LOCAL_API_KEY: 'k' }, /providers\[0\]\.base_url/],
    ['an unknown provider type', issueYaml.replace('openai-compatible', 'magic'), { LOCAL_API_KEY: 'k' }, /providers\[0\]\.type/],
    ['output as large as the context', issueYaml.replace('4096', '32768'), { LOCAL_API_KEY: 'k' }, /max_output_tokens must be smaller/],
    ['a model called auto', issueYaml.replace('id: llama-small', 'id: auto'), { LOCAL_API_KEY: 'k' }, /reserved/],
  ])('names the entry at fault for %s', (_name, text, env, pattern) => {
    expect(() => loadConfig({ EUGPT_CONFIG: fileWith('c.yaml', text), ...env })).toThrow(pattern);
  });

  it.each(['ollama.yaml', 'examples.yaml'])('accepts the shipped config/%s', (name) => {
    const path = new URL(`../config/${name}`, import.meta.url).pathname;
    expect(loadConfig({ EUGPT_CONFIG: path, MISTRAL_API_KEY: 'k', ANTHROPIC_API_KEY: 'k' }).catalog.models.length).toBeGreaterThan(0);
  });

  it('keeps files in the database by default, and in S3 with its settings checked', () => {
    expect(loadConfig({}).files.blobStore).toEqual({ kind: 'database' });
    const s3 = { EUGPT_BLOB_STORE: 's3', EUGPT_S3_BUCKET: 'eugpt-files', EUGPT_S3_ENDPOINT: 'https://s3.fr-par.scw.cloud' };
    expect(loadConfig(s3).files.blobStore).toEqual({
      kind: 's3',
      s3: { endpoint: 'https://s3.fr-par.scw.cloud', region: 'us-east-1', bucket: 'eugpt-files', accessKeyId: undefined, secretAccessKey: undefined, forcePathStyle: true, prefix: '' },
    });
    const full = loadConfig({ ...s3, EUGPT_S3_REGION: 'fr-par', EUGPT_S3_ACCESS_KEY_ID: 'id', EUGPT_S3_SECRET_ACCESS_KEY: 'secret', EUGPT_S3_FORCE_PATH_STYLE: 'false', EUGPT_S3_PREFIX: 'eugpt/' });
    expect(full.files.blobStore).toMatchObject({ s3: { region: 'fr-par', accessKeyId: 'id', secretAccessKey: 'secret', forcePathStyle: false, prefix: 'eugpt/' } });
    expect(() => loadConfig({ EUGPT_BLOB_STORE: 's3' })).toThrow(/^EUGPT_S3_BUCKET: must be set when EUGPT_BLOB_STORE is s3/);
    expect(() => loadConfig({ EUGPT_BLOB_STORE: 'disk' })).toThrow(/^EUGPT_BLOB_STORE: must be database or s3/);
    expect(() => loadConfig({ ...s3, EUGPT_S3_ACCESS_KEY_ID: 'id' })).toThrow(/^EUGPT_S3_SECRET_ACCESS_KEY: must be set with the other S3 credential/);
    expect(() => loadConfig({ ...s3, EUGPT_S3_ENDPOINT: 'ftp://x' })).toThrow(/^EUGPT_S3_ENDPOINT: must be an http/);
    expect(() => loadConfig({ ...s3, EUGPT_S3_BUCKET: 'No_Such' })).toThrow(/^EUGPT_S3_BUCKET: must be a bucket name/);
    expect(() => loadConfig({ ...s3, EUGPT_S3_PREFIX: '/abs' })).toThrow(/^EUGPT_S3_PREFIX: /);
  });

  it('gives the CLI its server URL from EUGPT_URL or PORT', () => {
    expect(loadCliConfig({}).url).toBe('http://127.0.0.1:8080');
    expect(loadCliConfig({ PORT: '9000' }).url).toBe('http://127.0.0.1:9000');
    expect(loadCliConfig({ EUGPT_URL: 'https://gpt.example.eu' }).url).toBe('https://gpt.example.eu');
    expect(() => loadCliConfig({ EUGPT_URL: 'not a url' })).toThrow(/^EUGPT_URL: /);
  });
});
