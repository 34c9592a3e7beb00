import type { Catalog, ModelConfig } from './catalog.ts';
import { classify, type Category, type RequestFeatures } from './classify.ts';
import type { HealthView } from './health.ts';
import { residencyAllows } from './residency.ts';

export interface Decision {
  model: ModelConfig;
  category: Category;
  reason: string;
  /** The next models to try, in order, if the first fails before its first token. */
  fallbacks: ModelConfig[];
  /**
   * Every capable model was out (breaker open, resting after a 429, provider
   * full), so these are tried anyway, the one back soonest first.
   */
  failOpen: boolean;
}

export type PickResult = Decision | { model: null; category: Category; reason: string; why: 'nothing_fits' };

/** Categories from weaker to stronger; a request may go to a stronger one when its own has no model. */
const LADDER: Category[] = ['fast', 'general', 'reasoning'];

/**
 * How far a model is from the wanted category: 0 in it, 1, 2… for stronger
 * ones, 10+ for weaker ones (kept only as last-resort fallbacks).
 */
function distance(model: ModelConfig, wanted: Category): number {
  if (model.categories.includes(wanted)) return 0;
  if (wanted === 'long-context') return 1; // any model whose window fits will do
  const want = LADDER.indexOf(wanted);
  const steps = model.categories
    .map((c) => LADDER.indexOf(c as Category))
    .filter((i) => i >= 0)
    .map((i) => (i >= want ? i - want : 10 + want - i));
  return steps.length === 0 ? 5 : Math.min(...steps);
}

const reserved = (model: ModelConfig, f: RequestFeatures) => Math.min(f.maxOutputTokens ?? model.max_output_tokens, model.max_output_tokens);

/** EUR for the prompt (history trimmed to the window) and the expected answer, from the per-million prices. */
function expectedCost(model: ModelConfig, f: RequestFeatures, expectedOutput: number): number {
  const prompt = Math.min(f.promptTokens, model.context_window - reserved(model, f));
  const output = Math.min(f.maxOutputTokens ?? expectedOutput, model.max_output_tokens, expectedOutput);
  return (model.price.input * prompt + model.price.output * output) / 1_000_000;
}

/** Whether instructions, input and the output the request may use fit the model's window. */
export function fits(model: ModelConfig, f: RequestFeatures): boolean {
  return f.requiredTokens + reserved(model, f) <= model.context_window;
}

/**
 * Chooses the model for a request: among enabled models that have the needed
 * capabilities, whose window fits and whose country the residency policy allows, and that are healthy, those of the
 * category (or the nearest stronger one), the lowest expected cost first;
 * ties go to the lower observed latency, then the higher weight, then the id.
 * The other candidates, in the same order, are the fallbacks.
 *
 * When no capable model is healthy, it fails open (as Envoy does below its
 * panic threshold): all capable models, the one whose breaker or rest ends
 * soonest first, a full provider counting as back now. Refusing instead would
 * turn a struggling upstream into an outage, with nothing to learn recovery from.
 */
export function pick(f: RequestFeatures, catalog: Catalog, health: HealthView): PickResult {
  const { category, reason } = classify(f, catalog.router);
  const capable = catalog.models.filter(
    (m) => m.enabled && f.needs.every((n) => m.capabilities.includes(n)) && fits(m, f) && residencyAllows(m, f.allowedCountries ?? null),
  );
  if (capable.length === 0) return { model: null, category, reason, why: 'nothing_fits' };
  const healthy = capable.filter((m) => health.available(m.id) && !health.saturated(m.provider));
  const failOpen = healthy.length === 0;

  const expected = catalog.router.expected_output_tokens;
  const ranked = (failOpen ? capable : healthy)
    .map((m) => ({
      m,
      ready: failOpen ? health.readyAt(m.id) : 0,
      d: distance(m, category),
      cost: expectedCost(m, f, expected),
      latency: health.latencyMs(m.id) ?? Number.POSITIVE_INFINITY,
    }))
    .sort(
      (a, b) =>
        a.ready - b.ready || a.d - b.d || a.cost - b.cost || a.latency - b.latency || b.m.weight - a.m.weight || a.m.id.localeCompare(b.m.id),
    );
  const [first, ...rest] = ranked;
  const where = first!.d === 0 ? `a ${category} model` : `nearest to ${category}`;
  const peers = ranked.filter((r) => r.d === first!.d).length;
  return {
    model: first!.m,
    category,
    reason: failOpen
      ? `${reason}; no capable model is healthy, so the one back soonest (${where}) of ${ranked.length}`
      : `${reason}; ${where}, cheapest of ${peers} healthy`,
    fallbacks: rest.map((r) => r.m),
    failOpen,
  };
}
