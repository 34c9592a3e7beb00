// `npm run eval:router`: the classifier against the labelled prompts in
// test/fixtures/router-eval.json, with the default router settings.
import { readFileSync } from 'node:fs';
import { routerSchema } from '../src/router/catalog.ts';
import { evaluate, formatEvaluation, type LabelledPrompt } from '../src/router/evaluate.ts';

const set = JSON.parse(readFileSync(new URL('../test/fixtures/router-eval.json', import.meta.url), 'utf8')) as LabelledPrompt[];
process.stdout.write(`${formatEvaluation(evaluate(set, routerSchema.parse({})))}\n`);
