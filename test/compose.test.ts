import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../src/config.ts';
import { timeoutsSchema } from '../src/router/catalog.ts';

/**
 * The promises of docker-compose.yml and the shipped proxy configs, read as
 * files: no Docker needed. `docker compose config -q` (in .ci/run, when Docker
 * is there) checks the syntax; this checks what the stack is meant to do.
 */

const root = new URL('../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

interface Service {
  image?: string;
  build?: unknown;
  profiles?: string[];
  healthcheck?: { test: unknown };
  depends_on?: Record<string, { condition: string; required?: boolean }>;
  environment?: Record<string, string>;
  command?: string[];
  ports?: string[];
  restart?: string;
  entrypoint?: string[];
}

const composeText = read('docker-compose.yml');
const compose = parse(composeText) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const services = compose.services;
const config = loadConfig({});
const timeouts = timeoutsSchema.parse(undefined);

/** Services that run once and exit (an init step), as opposed to those that keep running. */
const oneShot = (s: Service) => s.restart === 'no';

/** `900s`, `15m`, `1h` in milliseconds. */
function duration(text: string): number {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(text.trim());
  if (m === null) throw new Error(`not a duration: ${text}`);
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[m[2] ?? 's']!;
  return Number(m[1]) * unit;
}

/** `51m`, `51MiB`, `52428800` in bytes. */
function size(text: string): number {
  const m = /^(\d+)\s*(k|m|g|KiB|MiB|GiB|KB|MB|GB)?$/i.exec(text.trim());
  if (m === null) throw new Error(`not a size: ${text}`);
  const unit = m[2] ?? '';
  const factor = /^(k|KiB)$/i.test(unit) ? 1024 : /^(m|MiB)$/i.test(unit) ? 1024 ** 2 : /^(g|GiB)$/i.test(unit) ? 1024 ** 3 : /^KB$/i.test(unit) ? 1e3 : /^MB$/i.test(unit) ? 1e6 : /^GB$/i.test(unit) ? 1e9 : 1;
  return Number(m[1]) * factor;
}

/** The value of the first `directive value;` (nginx) or `directive value` (Caddy) line. */
function directive(text: string, name: string): string {
  const m = new RegExp(`^\\s*${name}\\s+([^;\\n]+?);?\\s*$`, 'm').exec(text);
  if (m === null) throw new Error(`no ${name} directive`);
  return m[1]!;
}

describe('docker-compose.yml', () => {
  it('runs the server on PostgreSQL with pgvector by default, each waiting for what it needs', () => {
    const defaults = Object.entries(services).filter(([, s]) => s.profiles === undefined).map(([name]) => name);
    expect(defaults.sort()).toEqual(['db', 'eugpt']);
    expect(services.db!.image).toMatch(/^pgvector\/pgvector:pg1[67]$/);
    expect(services.eugpt!.build).toBeDefined();
    expect(services.eugpt!.depends_on!.db).toEqual({ condition: 'service_healthy' });
    expect(services.eugpt!.environment!.DATABASE_URL).toMatch(/^postgres:\/\/eugpt:\$\{POSTGRES_PASSWORD:-eugpt\}@db:5432\/eugpt$/);
    // Published on this machine only: the proxy profile, or your own proxy, faces the network.
    expect(services.eugpt!.ports).toEqual(['127.0.0.1:${EUGPT_PORT:-8080}:8080']);
  });

  it('has the optional profiles ollama, search, s3 and proxy, and the server waits for each only when it is on', () => {
    const byProfile = (p: string) => Object.keys(services).filter((name) => services[name]!.profiles?.includes(p)).sort();
    expect(byProfile('ollama')).toEqual(['ollama', 'ollama-init']);
    expect(byProfile('search')).toEqual(['searxng']);
    expect(byProfile('s3')).toEqual(['minio', 'minio-init']);
    expect(byProfile('proxy')).toEqual(['caddy']);
    for (const [name, dep] of Object.entries(services.eugpt!.depends_on!)) {
      if (name === 'db') continue;
      expect(services[name]!.profiles, name).toBeDefined();
      expect(dep.required, name).toBe(false);
    }
    expect(services.eugpt!.depends_on!['ollama-init']!.condition).toBe('service_completed_successfully');
    expect(services.eugpt!.depends_on!['minio-init']!.condition).toBe('service_completed_successfully');
  });

  it('gives every long-running service a healthcheck, and init steps wait for their service to be healthy', () => {
    for (const [name, s] of Object.entries(services)) {
      if (oneShot(s)) {
        const deps = Object.values(s.depends_on ?? {});
        expect(deps.length, name).toBeGreaterThan(0);
        for (const d of deps) expect(d.condition, name).toBe('service_healthy');
      } else {
        expect(s.healthcheck?.test, name).toBeDefined();
        expect(s.restart, name).toBe('unless-stopped');
      }
    }
    // The server is healthy when it can serve: its readiness, not only its liveness.
    expect(JSON.stringify(services.eugpt!.healthcheck!.test)).toContain('/readyz');
  });

  it('pulls the model that the ollama profile configures', () => {
    const pulled = services['ollama-init']!.command!.at(-1);
    for (const file of ['ollama.yaml', 'ollama-search.yaml']) {
      const c = loadConfig({ EUGPT_CONFIG: new URL(`../deploy/config/${file}`, import.meta.url).pathname });
      expect(c.catalog.models.map((m) => m.upstream_model)).toEqual([pulled]);
      expect(c.catalog.providers[0]!.base_url).toBe('http://ollama:11434/v1');
    }
  });

  it('ships a valid config for each combination start.sh picks, the search ones pointing at the searxng service', () => {
    const shipped = readdirSync(new URL('deploy/config/', root)).sort();
    expect(shipped).toEqual(['host-ollama-search.yaml', 'host-ollama.yaml', 'ollama-search.yaml', 'ollama.yaml']);
    for (const file of shipped) {
      const c = loadConfig({ EUGPT_CONFIG: new URL(`../deploy/config/${file}`, import.meta.url).pathname });
      expect(c.catalog.models.length, file).toBe(1);
      expect(c.tools.web_search.backend, file).toBe(file.includes('search') ? 'searxng' : 'duckduckgo');
      if (file.includes('search')) expect(c.tools.web_search.base_url).toBe('http://searxng:8080');
    }
    const searx = parse(read('deploy/searxng/settings.yml')) as { search: { formats: string[] }; server: { limiter: boolean } };
    expect(searx.search.formats).toContain('json');
    expect(searx.server.limiter).toBe(false);
  });

  it('holds no secret literal: secrets come from .env, with only the documented development defaults', () => {
    const devDefaults = new Set(['eugpt', 'eugpt-dev-secret', 'eugpt-dev-searxng-secret']);
    const secretish = /PASSWORD|SECRET|TOKEN|ACCESS_KEY/;
    for (const [name, s] of Object.entries(services)) {
      for (const [key, value] of Object.entries(s.environment ?? {})) {
        if (!secretish.test(key)) continue;
        const v = String(value);
        expect(v, `${name}.${key}`).toMatch(/^\$\{/);
        for (const m of v.matchAll(/:-([^${}]+)\}/g)) expect(devDefaults.has(m[1]!), `${name}.${key}: ${m[1]}`).toBe(true);
      }
    }
    // The admin token is never a default: empty means generated at first start.
    expect(services.eugpt!.environment!.EUGPT_ADMIN_TOKEN).toBe('${EUGPT_ADMIN_TOKEN:-}');
    const example = read('.env.example');
    for (const value of devDefaults) expect(example).toContain(`=${value}`);
  });

  it('lists every variable it reads in .env.example', () => {
    const used = new Set([...composeText.matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]!));
    const example = new Set([...read('.env.example').matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]!));
    expect([...used].filter((v) => !example.has(v))).toEqual([]);
  });
});

describe("deploy/eugpt/start.sh, the server's entry point in the stack", () => {
  const dir = mkdtempSync(join(tmpdir(), 'eugpt-start-'));
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  // The compose network's DNS, for the services named in FAKE_HOSTS only.
  writeFileSync(
    join(bin, 'getent'),
    '#!/bin/sh\n[ "$1" = hosts ] || exit 2\ni=10\nfor h in $FAKE_HOSTS; do i=$((i+1)); if [ "$h" = "$2" ]; then echo "172.18.0.$i    $2"; exit 0; fi; done\nexit 2\n',
    { mode: 0o755 },
  );
  const script = fileURLToPath(new URL('deploy/eugpt/start.sh', root));
  const repo = fileURLToPath(root).replace(/\/$/, '');

  /** Runs the script with `env`; answers what it printed and the environment it handed the server. */
  function start(env: Record<string, string>, dataDir: string) {
    const printEnv = 'process.stdout.write("\\n" + JSON.stringify({ config: process.env.EUGPT_CONFIG, token: process.env.EUGPT_ADMIN_TOKEN, trust: process.env.EUGPT_TRUST_PROXY ?? null }))';
    const out = execFileSync('sh', [script, process.execPath, '-e', printEnv], {
      env: { PATH: `${bin}:${process.env.PATH}`, EUGPT_DATA_DIR: dataDir, FAKE_HOSTS: '', ...env },
      encoding: 'utf8',
      timeout: 10_000,
    });
    const lines = out.trimEnd().split('\n');
    return { log: lines.slice(0, -1).join('\n'), env: JSON.parse(lines.at(-1)!) as { config: string; token: string; trust: string | null } };
  }

  it('picks the config file of the profiles that are on, or the one EUGPT_CONFIG_FILE names', () => {
    const data = mkdtempSync(join(dir, 'data-'));
    const cases: [string, string][] = [
      ['', 'host-ollama.yaml'],
      ['ollama', 'ollama.yaml'],
      ['searxng', 'host-ollama-search.yaml'],
      ['db ollama searxng minio caddy', 'ollama-search.yaml'],
    ];
    for (const [hosts, file] of cases) expect(start({ FAKE_HOSTS: hosts }, data).env.config, hosts).toBe(`${repo}/deploy/config/${file}`);
    expect(start({ FAKE_HOSTS: 'ollama', EUGPT_CONFIG_FILE: 'examples.yaml' }, data).env.config).toBe(`${repo}/config/examples.yaml`);
    expect(start({ EUGPT_CONFIG_FILE: 'ollama.yaml' }, data).env.config).toBe(`${repo}/config/ollama.yaml`);
    expect(start({ EUGPT_CONFIG_FILE: 'ollama-search.yaml' }, data).env.config).toBe(`${repo}/deploy/config/ollama-search.yaml`);
    expect(start({ EUGPT_CONFIG_FILE: '/etc/eugpt.yaml' }, data).env.config).toBe('/etc/eugpt.yaml');
  });

  it('generates the admin token once, prints it that once, keeps it private and reuses it; a set one wins', () => {
    const data = mkdtempSync(join(dir, 'data-'));
    const first = start({}, data);
    expect(first.env.token).toMatch(/^[0-9a-f]{64}$/);
    expect(first.log).toContain(`EUGPT_ADMIN_TOKEN=${first.env.token}`);
    expect(statSync(join(data, 'admin-token')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(data, 'admin-token'), 'utf8')).toBe(first.env.token);

    const again = start({}, data);
    expect(again.env.token).toBe(first.env.token);
    expect(again.log).not.toContain(first.env.token);

    const chosen = start({ EUGPT_ADMIN_TOKEN: 'chosen-token-0123456789' }, data);
    expect(chosen.env.token).toBe('chosen-token-0123456789');
    expect(chosen.log).not.toContain(first.env.token);
  });

  it('trusts X-Forwarded-For from the caddy container only, unless EUGPT_TRUST_PROXY is set', () => {
    const data = mkdtempSync(join(dir, 'data-'));
    expect(start({}, data).env.trust).toBeNull();
    expect(start({ FAKE_HOSTS: 'ollama caddy' }, data).env.trust).toBe('172.18.0.12');
    expect(start({ FAKE_HOSTS: 'caddy', EUGPT_TRUST_PROXY: '10.0.0.0/8' }, data).env.trust).toBe('10.0.0.0/8');
    // What the script trusts is a value the server accepts.
    expect(loadConfig({ EUGPT_TRUST_PROXY: '172.18.0.12' }).trustProxy).toEqual(['172.18.0.12']);
  });
});

describe('the reverse proxy configs', () => {
  // A stream:false answer is silent until the whole upstream call is done; a stream is silent until the first token.
  const longestSilenceMs = Math.max(timeouts.total_ms, timeouts.first_byte_ms, 300_000);
  const largestBody = Math.max(config.files.maxBytes, config.bodyLimit);

  it('nginx: no buffering, long timeouts, the server\'s body size, forwarded headers', () => {
    const conf = read('deploy/nginx/eugpt.conf');
    expect(directive(conf, 'proxy_buffering')).toBe('off');
    expect(directive(conf, 'proxy_request_buffering')).toBe('off');
    expect(directive(conf, 'proxy_http_version')).toBe('1.1');
    for (const t of ['proxy_read_timeout', 'proxy_send_timeout', 'send_timeout']) expect(duration(directive(conf, t)), t).toBeGreaterThanOrEqual(longestSilenceMs);
    expect(duration(directive(conf, 'proxy_read_timeout'))).toBeGreaterThan(config.sseKeepAliveMs);
    expect(size(directive(conf, 'client_max_body_size'))).toBeGreaterThan(largestBody);
    expect(conf).toMatch(/proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;/);
    expect(conf).toMatch(/proxy_set_header X-Forwarded-Proto \$scheme;/);
  });

  it('Caddy: flushes at once, long timeouts, the server\'s body size, local TLS by default', () => {
    const conf = read('deploy/caddy/Caddyfile');
    expect(directive(conf, 'flush_interval')).toBe('-1');
    for (const t of ['read_timeout', 'write_timeout', 'response_header_timeout']) expect(duration(directive(conf, t)), t).toBeGreaterThanOrEqual(longestSilenceMs);
    expect(size(directive(conf, 'max_size'))).toBeGreaterThan(largestBody);
    expect(directive(conf, 'tls')).toBe('{$EUGPT_CADDY_TLS:internal}');
    expect(directive(conf, 'reverse_proxy')).toBe('eugpt:8080 {');
  });
});
