import { request } from 'undici';
import type { Catalog, ProviderConfig } from '../router/catalog.ts';
import { API_VERSION } from './anthropic.ts';

/**
 * Asks each provider a cheap authenticated question (its model list) at start
 * and then periodically, so an operator learns that a model server is down or
 * refuses the key before the first user does, and /readyz can say so.
 * Probes never route a request and never delay start-up.
 */

export type ProbeState =
  | { state: 'pending' }
  | { state: 'reachable'; checkedAt: number }
  | { state: 'unreachable'; reason: string; checkedAt: number };

/** The URL as it may be shown: no user, password or query, which could hold a secret. */
export function displayUrl(url: string): string {
  const u = new URL(url);
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

function probeHeaders(p: ProviderConfig): Record<string, string> {
  const auth: Record<string, string> =
    p.apiKey === undefined ? {} : p.type === 'anthropic' ? { 'x-api-key': p.apiKey } : { authorization: `Bearer ${p.apiKey}` };
  return { accept: 'application/json', ...(p.type === 'anthropic' ? { 'anthropic-version': API_VERSION } : {}), ...p.headers, ...auth };
}

/** One probe: reachable when the server answers, unless it refuses the key or fails (5xx). */
export async function probeProvider(p: ProviderConfig, timeoutMs: number, signal?: AbortSignal): Promise<{ ok: true } | { ok: false; reason: string }> {
  const base = new URL(p.base_url);
  const url = `${base.origin}${base.pathname.replace(/\/+$/, '')}/models`;
  try {
    // undici, as the model calls themselves use: it reaches any port the provider may be on.
    const res = await request(url, {
      method: 'GET',
      headers: probeHeaders(p),
      signal: signal === undefined ? AbortSignal.timeout(timeoutMs) : AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
    });
    await res.body.dump({ limit: 65_536 }).catch(() => undefined);
    if (res.statusCode === 401 || res.statusCode === 403) return { ok: false, reason: `refused the API key (HTTP ${res.statusCode})` };
    if (res.statusCode >= 500) return { ok: false, reason: `answered HTTP ${res.statusCode}` };
    // Any other answer (also a 404 from a server without a model list) says the server is there.
    return { ok: true };
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e.name === 'TimeoutError' || e.name === 'AbortError') return { ok: false, reason: `no answer within ${timeoutMs} ms` };
    return { ok: false, reason: `cannot connect (${e.code ?? e.message})` };
  }
}

export interface ProbeOptions {
  /** Between two rounds; 0: probe only at start. */
  intervalMs: number;
  timeoutMs: number;
  /** Hears each change of a provider's state (not every round). */
  onChange?: (providerId: string, state: ProbeState, baseUrl: string) => void;
}

export class ProviderProbes {
  private readonly states = new Map<string, ProbeState>();
  private readonly stop = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  /** Resolves when the first round has ended (every provider answered or timed out). */
  firstRound: Promise<void> = Promise.resolve();

  constructor(
    private readonly providers: ProviderConfig[],
    private readonly opts: ProbeOptions,
    private readonly now: () => number = Date.now,
  ) {
    for (const p of providers) this.states.set(p.id, { state: 'pending' });
  }

  start(): void {
    this.firstRound = this.probeAll();
    if (this.opts.intervalMs > 0) {
      this.timer = setInterval(() => {
        // A round never overlaps the one before (each is bounded by the timeout).
        if (this.round === undefined) void this.probeAll();
      }, this.opts.intervalMs);
      this.timer.unref();
    }
  }

  private probeAll(): Promise<void> {
    const round = Promise.all(
      this.providers.map(async (p) => {
        const result = await probeProvider(p, this.opts.timeoutMs, this.stop.signal);
        if (this.stop.signal.aborted) return;
        const before = this.states.get(p.id)!;
        const next: ProbeState = result.ok ? { state: 'reachable', checkedAt: this.now() } : { state: 'unreachable', reason: result.reason, checkedAt: this.now() };
        this.states.set(p.id, next);
        if (before.state !== next.state || (before.state === 'unreachable' && next.state === 'unreachable' && before.reason !== next.reason)) {
          this.opts.onChange?.(p.id, next, displayUrl(p.base_url));
        }
      }),
    ).then(() => {
      this.round = undefined;
    });
    this.round = round;
    return round;
  }

  state(providerId: string): ProbeState {
    return this.states.get(providerId) ?? { state: 'pending' };
  }

  /**
   * The models' side of readiness: `ok` while some enabled model's provider
   * is reachable or not probed yet, `degraded` when only some are, `down`
   * when none is, with a reason naming the servers (never their keys).
   */
  summary(catalog: Catalog): { state: 'ok' | 'degraded' | 'down'; detail: string } {
    const enabled = catalog.models.filter((m) => m.enabled);
    const byId = new Map(catalog.providers.map((p) => [p.id, p]));
    const down = enabled.filter((m) => this.state(m.provider).state === 'unreachable');
    if (down.length === 0) return { state: 'ok', detail: 'ok' };
    const providers = [...new Set(down.map((m) => m.provider))].map((id) => {
      const s = this.state(id);
      return `${id} at ${displayUrl(byId.get(id)!.base_url)}${s.state === 'unreachable' ? `: ${s.reason}` : ''}`;
    });
    const models = down.map((m) => m.id).join(', ');
    if (down.length === enabled.length) return { state: 'down', detail: `no model is reachable: ${providers.join('; ')}` };
    return { state: 'degraded', detail: `degraded: ${models} unreachable: ${providers.join('; ')}` };
  }

  close(): void {
    clearInterval(this.timer);
    this.stop.abort();
  }
}
