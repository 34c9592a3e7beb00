import { countMessageTokens } from '../tokens.ts';
import type { RouterSettings } from './catalog.ts';
import { classify, type Category } from './classify.ts';

/** One labelled prompt of the router evaluation set (test/fixtures/router-eval.json). */
export interface LabelledPrompt {
  prompt: string;
  label: Category;
  lang: string;
  /** Tokens of earlier turns in the conversation. */
  history_tokens?: number;
  /** Sent with a project (retrieval). */
  project?: boolean;
  effort?: string;
}

export interface Evaluation {
  total: number;
  correct: number;
  accuracy: number;
  /** confusion[label][predicted] = count */
  confusion: Record<Category, Record<Category, number>>;
  misses: { prompt: string; label: Category; predicted: Category; reason: string }[];
}

export const CATEGORIES: Category[] = ['fast', 'general', 'reasoning', 'long-context'];

export function evaluate(set: LabelledPrompt[], settings: RouterSettings): Evaluation {
  const confusion = Object.fromEntries(CATEGORIES.map((c) => [c, Object.fromEntries(CATEGORIES.map((d) => [d, 0]))])) as Evaluation['confusion'];
  const misses: Evaluation['misses'] = [];
  for (const item of set) {
    const required = countMessageTokens([{ content: item.prompt }]);
    const { category, reason } = classify(
      {
        promptTokens: required + (item.history_tokens ?? 0),
        requiredTokens: required,
        inputText: item.prompt,
        retrieval: item.project === true,
        reasoningEffort: item.effort ?? null,
        needs: [],
        maxOutputTokens: null,
      },
      settings,
    );
    confusion[item.label][category]++;
    if (category !== item.label) misses.push({ prompt: item.prompt, label: item.label, predicted: category, reason });
  }
  const correct = set.length - misses.length;
  return { total: set.length, correct, accuracy: set.length === 0 ? 0 : correct / set.length, confusion, misses };
}

/** The evaluation as a table for people. */
export function formatEvaluation(e: Evaluation): string {
  const w = 14;
  const lines = [
    `router evaluation: ${e.correct}/${e.total} correct, accuracy ${(e.accuracy * 100).toFixed(1)}%`,
    '',
    `${'label \\ picked'.padEnd(w)}${CATEGORIES.map((c) => c.padStart(w)).join('')}`,
    ...CATEGORIES.map((l) => `${l.padEnd(w)}${CATEGORIES.map((p) => String(e.confusion[l][p]).padStart(w)).join('')}`),
  ];
  if (e.misses.length > 0) {
    lines.push('', 'misses:');
    for (const m of e.misses) lines.push(`  [${m.label} → ${m.predicted}] ${m.prompt.replace(/\s+/g, ' ').slice(0, 70)} (${m.reason})`);
  }
  return lines.join('\n');
}
