import type { Capability, RouterSettings } from './catalog.ts';

/**
 * Request classification (issue 4): a deterministic function from cheap
 * signals of a request to a category. The rules, in order:
 *
 * 1. `long-context` when the prompt (instructions + history + input) is over
 *    `long_context_tokens`.
 * 2. `reasoning.effort` when sent: high/medium → `reasoning`, low/minimal → `fast`.
 * 3. `reasoning` when the reasoning cues of the latest input weigh at least
 *    `reasoning_min_cues` (proofs and "step by step" weigh 2; maths, code,
 *    a programming task, analysis and many-part questions weigh 1 each).
 * 4. `fast` when the prompt is at most `fast_max_tokens`, without retrieval
 *    (project or files), without any reasoning cue, and without asking for a
 *    long answer (a report, an article, "detailed", "600 words"…).
 * 5. `general` otherwise.
 */

export type Category = 'fast' | 'general' | 'reasoning' | 'long-context';

export interface RequestFeatures {
  /** Instructions + the whole history + input, in tokens. */
  promptTokens: number;
  /** Instructions + input: what must fit a model (history is trimmed to fit). */
  requiredTokens: number;
  /** The text of this request's input (where the cues are looked for). */
  inputText: string;
  retrieval: boolean;
  reasoningEffort: string | null;
  /** Capabilities the chosen model must have. */
  needs: Capability[];
  /** The output the request asked for at most, if it did. */
  maxOutputTokens: number | null;
  /** The countries the organisation's residency policy allows models to run in; absent or null: any. */
  allowedCountries?: ReadonlySet<string> | null | undefined;
}

export interface Classification {
  category: Category;
  reason: string;
  cues: string[];
}

interface Cue {
  name: string;
  weight: number;
  test: (text: string) => boolean;
}

/** Cue words in the EU's most used languages: en, fr, de, nl, es, it, pt, pl, sv, da. */
const CUES: Cue[] = [
  {
    name: 'step-by-step',
    weight: 2,
    test: (t) => /step[- ]by[- ]step|étape par étape|schritt für schritt|stap voor stap|paso a paso|passo (a|dopo) passo|krok po kroku|steg för steg|trin for trin/i.test(t),
  },
  {
    name: 'proof',
    weight: 2,
    test: (t) => /\b(prove|proof|démontre[rz]?|démonstration|beweis\w*|bewijs\w*|demuestra\w*|demostración|dimostra\w*|udowodnij|dowód|demonstre|bevisa|bevis)\b/i.test(t),
  },
  {
    name: 'maths',
    weight: 1,
    test: (t) =>
      /[∫∑√≤≥≠∂π]|\b\d+\s*[x*×/^]\s*\d+|\d\s*[+\-*/^=]\s*\(?\d|\b[a-z]\s*\^\s*\d|=\s*\d+\s*$/im.test(t) ||
      /\b(integral|derivative|equation|theorem|lemma|probability|matrix|eigenvalue|polynomial|solve for|intégrale|dérivée|équation|théorème|probabilité|integral|ableitung|gleichung|wahrscheinlichkeit|vergelijking|afgeleide|kans|ecuaci[oó]n|derivada|probabilidad|equazione|derivata|probabilità|równanie|pochodna|prawdopodobieństwo|ekvation|sannolikhet|ligning)\w*/i.test(t),
  },
  {
    name: 'code',
    weight: 1,
    test: (t) => /```|\b(def|function|class|const|let|var|return|import|public static|#include)\b.*[({=;:]|=>/i.test(t),
  },
  {
    name: 'programming',
    weight: 1,
    test: (t) =>
      /\b(algorithm|complexity|big-?o|refactor|debug|stack trace|segfault|race condition|deadlock|regex|sql query|unit test|algorithme|algorithmus|algoritme|algoritmo|algorytm|complexité|komplexität|complejidad|complessità|złożoność)\w*/i.test(t),
  },
  {
    name: 'analysis',
    weight: 1,
    test: (t) =>
      /\b(analy[sz]e|trade-?offs?|pros and cons|compare and contrast|critically|evaluate|analyse[rz]?|compare[rz]? les|avantages et inconvénients|analysiere|vergleiche|vor- und nachteile|analyseer|vergelijk|voor- en nadelen|analiza|compara|ventajas y desventajas|analizza|confronta|vantaggi e svantaggi|przeanalizuj|porównaj|analysera|jämför)\b/i.test(t),
  },
  {
    name: 'many-part',
    weight: 1,
    test: (t) => (t.match(/\?/g)?.length ?? 0) >= 3 || (t.match(/^\s*(\d+[.)]|[-*•])\s+\S/gm)?.length ?? 0) >= 3,
  },
];

/** Asking for a long piece of writing: no task for the fastest model, however short the prompt. */
const LONG_ANSWER =
  /\b\d{3,}[- ]?(words?|mots|wörter|woorden|palabras|parole|słów|palavras|ord)\b|\b(detailed|in detail|comprehensive|essay|report|article|blog post|white ?paper|guide|détaillée?|rapport|dissertation|ausführlich\w*|bericht|aufsatz|artikel|uitgebreid\w*|verslag|detallad[oa]|informe|ensayo|artículo|dettagliat[oa]|relazione|saggio|articolo|szczegółow\w*|raport|artykuł|utförlig\w*|detalhad[oa]|relatório|udførlig\w*)\b/i;

export const asksForLongAnswer = (text: string) => LONG_ANSWER.test(text);

export function reasoningCues(text: string): { cues: string[]; weight: number } {
  const hits = CUES.filter((c) => c.test(text));
  return { cues: hits.map((c) => c.name), weight: hits.reduce((w, c) => w + c.weight, 0) };
}

export function classify(f: RequestFeatures, s: RouterSettings): Classification {
  const { cues, weight } = reasoningCues(f.inputText);
  if (f.promptTokens > s.long_context_tokens) {
    return { category: 'long-context', reason: `prompt of ${f.promptTokens} tokens is over ${s.long_context_tokens}`, cues };
  }
  const effort = f.reasoningEffort?.toLowerCase();
  if (effort === 'high' || effort === 'medium') return { category: 'reasoning', reason: `reasoning.effort is ${effort}`, cues };
  if (effort === 'low' || effort === 'minimal') return { category: 'fast', reason: `reasoning.effort is ${effort}`, cues };
  if (weight >= s.reasoning_min_cues) return { category: 'reasoning', reason: `reasoning cues: ${cues.join(', ')}`, cues };
  const longAnswer = asksForLongAnswer(f.inputText);
  if (f.promptTokens <= s.fast_max_tokens && !f.retrieval && weight === 0 && !longAnswer) {
    return { category: 'fast', reason: `short prompt (${f.promptTokens} tokens) without reasoning cues`, cues };
  }
  const why = f.retrieval
    ? 'retrieval'
    : weight > 0
      ? `a weak reasoning cue (${cues.join(', ')})`
      : longAnswer
        ? 'asks for a long answer'
        : `prompt of ${f.promptTokens} tokens`;
  return { category: 'general', reason: `general: ${why}`, cues };
}
