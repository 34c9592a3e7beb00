import { readdirSync, readFileSync } from 'node:fs';
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
    const start = read('deploy/eugpt/start.sh');
    expect(start).toContain('name=host-ollama');
    expect(start).toContain('has ollama && name=ollama');
    expect(start).toContain('has searxng && name=$name-search');
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
    // Caddy sets X-Forwarded-For and -Proto by itself; start.sh trusts the caddy container's address.
    expect(read('deploy/eugpt/start.sh')).toMatch(/has caddy/);
  });
});
