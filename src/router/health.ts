import type { RouterSettings } from './catalog.ts';

/**
 * Per-model health from real traffic: failures, timeouts, latency to the
 * first token (EWMA), and a circuit breaker. The breaker opens after
 * `failures` consecutive failures, stays open for a cooldown (doubling up to
 * `max_cooldown_ms` while probes keep failing), then lets one probe through;
 * a success closes it. An upstream 429 is no failure: it rests the model for
 * its `retry-after` (bounded) and leaves the breaker alone. Per instance:
 * every instance learns from its own traffic.
 *
 * Neither an open breaker nor a rest ever refuses a request on its own: when
 * every candidate is out, pick() fails open to the one back soonest and the
 * attempt goes through with `acquire(…, { force: true })`.
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
  /** Resting after a 429 until then (ms on the table's clock); 0 when not. */
  coolUntil: number;
  /** Upstream 429s seen; they count apart from failures. */
  rateLimited: number;
  probing: boolean;
  inFlight: number;
}

/** What pick() may read: a pure view of the table at one moment. */
export interface HealthView {
  available(modelId: string): boolean;
  /** When the model's breaker or rest next lets a request through: 0 when available now. */
  readyAt(modelId: string): number;
  latencyMs(modelId: string): number | undefined;
  /** True when the provider has as many requests in flight as its cap allows. */
  saturated(providerId: string): boolean;
}

const ALPHA = 0.2;

export type Outcome =
  | { type: 'success'; latencyMs: number }
  | { type: 'failure'; timeout: boolean }
  /** Says nothing about the model: the client left, the request was at fault, no connection was free. */
  | { type: 'neutral' }
  /** The upstream asked us to slow down (429), for `retryAfterMs` if it said. */
  | { type: 'rate_limited'; retryAfterMs: number | undefined };

/** What /readyz shows of routing: `degraded` while any model's breaker is not closed or it rests after a 429. */
export interface RoutingState {
  state: 'ok' | 'degraded';
  /** Models whose breaker is open or half-open, by id. */
  open: string[];
  /** Models resting after an upstream 429, by id. */
  cooling: string[];
}

export class HealthTable implements HealthView {
  private readonly models = new Map<string, ModelHealth>();
  private readonly providerLoad = new Map<string, number>();
  private readonly reportedAt = new Map<string, number>();

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
        coolUntil: 0,
        rateLimited: 0,
        probing: false,
        inFlight: 0,
      };
      this.models.set(modelId, h);
    }
    return h;
  }

  available(modelId: string): boolean {
    const h = this.get(modelId);
    if (this.now() < h.coolUntil) return false;
    if (h.state === 'closed') return true;
    if (h.state === 'open') return this.now() >= h.openUntil;
    return !h.probing;
  }

  readyAt(modelId: string): number {
    if (this.available(modelId)) return 0;
    const h = this.get(modelId);
    // A half-open model whose probe is out is back as soon as the probe ends: its cooldown end is the best guess.
    return Math.max(h.coolUntil, h.openUntil);
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
   * `force` claims it anyway: failing open when every candidate is out.
   */
  acquire(modelId: string, providerId: string, opts: { force?: boolean } = {}): boolean {
    const free = this.available(modelId) && !this.saturated(providerId);
    if (!free && opts.force !== true) return false;
    const h = this.get(modelId);
    if (h.state === 'open' && this.now() >= h.openUntil) h.state = 'half_open';
    if (h.state === 'half_open') h.probing = true;
    h.inFlight++;
    this.providerLoad.set(providerId, (this.providerLoad.get(providerId) ?? 0) + 1);
    return true;
  }

  /** Ends an attempt with what it says about the model (see Outcome). */
  release(modelId: string, providerId: string, outcome: Outcome): void {
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
    } else if (outcome.type === 'rate_limited') {
      h.rateLimited++;
      const { rate_limit_cooldown_ms: fallback, max_rate_limit_cooldown_ms: max } = this.settings;
      const rest = Math.min(max, Math.max(0, outcome.retryAfterMs ?? fallback));
      h.coolUntil = Math.max(h.coolUntil, this.now() + rest);
    }
  }

  /** For the metrics: 0 closed, 1 resting after a 429, 2 open or probing. Reads without adding the model to the table. */
  breakerState(modelId: string): 0 | 1 | 2 {
    const h = this.models.get(modelId);
    if (h === undefined) return 0;
    if (h.state !== 'closed') return 2;
    return this.now() < h.coolUntil ? 1 : 0;
  }

  /**
   * Whether a failure of the model should be logged now: once per model per
   * `periodMs`, so an upstream that is down gives one line each period
   * instead of one per request.
   */
  shouldReport(modelId: string, periodMs: number): boolean {
    const at = this.reportedAt.get(modelId);
    if (at !== undefined && this.now() - at < periodMs) return false;
    this.reportedAt.set(modelId, this.now());
    return true;
  }

  /** The routing summary for /readyz. */
  routingState(): RoutingState {
    const now = this.now();
    const open: string[] = [];
    const cooling: string[] = [];
    for (const [id, h] of [...this.models].sort(([a], [b]) => a.localeCompare(b))) {
      if (h.state !== 'closed') open.push(id);
      if (now < h.coolUntil) cooling.push(id);
    }
    return { state: open.length + cooling.length > 0 ? 'degraded' : 'ok', open, cooling };
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
