import type { RouterSettings } from './catalog.ts';

/**
 * Per-model health from real traffic: failures, timeouts, latency to the
 * first token (EWMA), and a circuit breaker. The breaker opens after
 * `failures` consecutive failures, stays open for a cooldown (doubling up to
 * `max_cooldown_ms` while probes keep failing), then lets one probe through;
 * a success closes it. Per instance: every instance learns from its own traffic.
 */

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface ModelHealth {
  state: BreakerState;
  consecutiveFailures: number;
  successes: number;
  failures: number;
  timeouts: number;
  /** EWMA of the time to the first token, in ms; undefined until a success. */
  latencyMs: number | undefined;
  openUntil: number;
  cooldownMs: number;
  probing: boolean;
  inFlight: number;
}

/** What pick() may read: a pure view of the table at one moment. */
export interface HealthView {
  available(modelId: string): boolean;
  latencyMs(modelId: string): number | undefined;
  /** True when the provider has as many requests in flight as its cap allows. */
  saturated(providerId: string): boolean;
}

const ALPHA = 0.2;

export class HealthTable implements HealthView {
  private readonly models = new Map<string, ModelHealth>();
  private readonly providerLoad = new Map<string, number>();

  constructor(
    private readonly settings: RouterSettings['breaker'],
    private readonly caps: ReadonlyMap<string, number | undefined>,
    private readonly now: () => number = Date.now,
  ) {}

  private get(modelId: string): ModelHealth {
    let h = this.models.get(modelId);
    if (h === undefined) {
      h = {
        state: 'closed',
        consecutiveFailures: 0,
        successes: 0,
        failures: 0,
        timeouts: 0,
        latencyMs: undefined,
        openUntil: 0,
        cooldownMs: this.settings.cooldown_ms,
        probing: false,
        inFlight: 0,
      };
      this.models.set(modelId, h);
    }
    return h;
  }

  available(modelId: string): boolean {
    const h = this.get(modelId);
    if (h.state === 'closed') return true;
    if (h.state === 'open') return this.now() >= h.openUntil;
    return !h.probing;
  }

  latencyMs(modelId: string): number | undefined {
    return this.get(modelId).latencyMs;
  }

  saturated(providerId: string): boolean {
    const cap = this.caps.get(providerId);
    return cap !== undefined && (this.providerLoad.get(providerId) ?? 0) >= cap;
  }

  /**
   * Claims a slot for one attempt, or returns false when the model is not
   * available any more (another request took the probe, the provider filled up).
   */
  acquire(modelId: string, providerId: string): boolean {
    if (!this.available(modelId) || this.saturated(providerId)) return false;
    const h = this.get(modelId);
    if (h.state === 'open') h.state = 'half_open';
    if (h.state === 'half_open') h.probing = true;
    h.inFlight++;
    this.providerLoad.set(providerId, (this.providerLoad.get(providerId) ?? 0) + 1);
    return true;
  }

  /** Ends an attempt: `success` with its first-token latency, `failure`, or `neutral` (the client left). */
  release(modelId: string, providerId: string, outcome: { type: 'success'; latencyMs: number } | { type: 'failure'; timeout: boolean } | { type: 'neutral' }): void {
    const h = this.get(modelId);
    h.inFlight = Math.max(0, h.inFlight - 1);
    this.providerLoad.set(providerId, Math.max(0, (this.providerLoad.get(providerId) ?? 0) - 1));
    const wasProbe = h.state === 'half_open' && h.probing;
    if (wasProbe) h.probing = false;
    if (outcome.type === 'success') {
      h.successes++;
      h.consecutiveFailures = 0;
      h.latencyMs = h.latencyMs === undefined ? outcome.latencyMs : ALPHA * outcome.latencyMs + (1 - ALPHA) * h.latencyMs;
      h.state = 'closed';
      h.cooldownMs = this.settings.cooldown_ms;
    } else if (outcome.type === 'failure') {
      h.failures++;
      if (outcome.timeout) h.timeouts++;
      h.consecutiveFailures++;
      if (wasProbe) {
        h.cooldownMs = Math.min(this.settings.max_cooldown_ms, h.cooldownMs * 2);
        this.open(h);
      } else if (h.state === 'closed' && h.consecutiveFailures >= this.settings.failures) {
        this.open(h);
      }
    }
  }

  private open(h: ModelHealth) {
    h.state = 'open';
    h.openUntil = this.now() + h.cooldownMs;
  }

  /** For /readyz: every model seen so far. */
  report(): Record<string, Omit<ModelHealth, 'probing'>> {
    return Object.fromEntries(
      [...this.models].map(([id, h]) => {
        const { probing: _p, ...rest } = h;
        return [id, { ...rest, latencyMs: h.latencyMs === undefined ? undefined : Math.round(h.latencyMs) }];
      }),
    );
  }
}
