import { z } from 'zod';
import { CalculatorPool } from './calculator-pool.ts';
import type { CalculatorConfig } from './config.ts';
import type { Tool } from './types.ts';

/**
 * The `calculator` tool: evaluates one math expression with mathjs, locked
 * down (calculator-engine.ts) and run in worker processes bounded in time
 * and memory (calculator-pool.ts), so a hostile expression costs a worker,
 * never the server.
 */

/** Worker processes at most: two, so one slow expression does not hold up everyone else's. */
const WORKERS = 2;
/** Heap per worker: ample for any sensible calculation, small enough to stop a memory bomb early. */
const WORKER_MEMORY_MB = 128;
/** Loading mathjs (and, in a checkout, compiling TypeScript) on a busy machine can take seconds. */
const WORKER_START_TIMEOUT_MS = 30_000;
/**
 * The expression's own limit is `timeout_ms`, enforced in the pool from the
 * moment a worker takes it. The call as a whole also waits for a worker to
 * start or come free, so the runner's limit allows a few seconds more.
 */
const WAIT_MARGIN_MS = 5_000;
const MAX_EXPRESSION_CHARS = 1000;

const DESCRIPTION = [
  'Evaluates one math expression and returns {result}. Use it for any arithmetic instead of computing in your head.',
  'Supports + - * / ^, parentheses, mod, n!, percentages ("15% of 80", "80 + 15%", "200 * 7.5%"),',
  'functions (sqrt, cbrt, nthRoot, abs, round(x, digits), floor, ceil, exp, log(x) natural, log(x, base), log10, log2,',
  'sin, cos, tan, asin, acos, atan, atan2 (radians; write "sin(30 deg)" for degrees), factorial, gcd, lcm, combinations,',
  'permutations, isPrime, sum, prod, mean, median, std, min, max), constants (pi, e, i),',
  'unit conversion with "to" ("5 km to mi", "20 degC to degF", "3 cup to ml", "100 km/h to m/s"),',
  'complex numbers, and matrices ("[1, 2; 3, 4]", det, inv, transpose).',
  'There are no variables, assignments or function definitions, and no currencies: write all numbers into the expression',
  'and chain several calls when one result feeds the next. Numbers are rounded to 14 significant digits;',
  'very large numbers, units, complex numbers and matrices come back as text.',
].join(' ');

const inputSchema = z.object({
  expression: z
    .string()
    .min(1)
    .max(MAX_EXPRESSION_CHARS)
    .describe('The expression, in mathjs syntax, e.g. "sqrt(2) * 3^2" or "12 km to mi".'),
});

export type CalculatorInput = z.infer<typeof inputSchema>;

/** The calculator is a Tool that also owns worker processes: `close()` ends them (at server shutdown). */
export interface CalculatorTool extends Tool<CalculatorInput> {
  close(): Promise<void>;
}

export function createCalculatorTool(config: CalculatorConfig): CalculatorTool {
  const pool = new CalculatorPool({
    size: WORKERS,
    timeoutMs: config.timeout_ms,
    memoryMb: WORKER_MEMORY_MB,
    startTimeoutMs: WORKER_START_TIMEOUT_MS,
  });
  return {
    name: 'calculator',
    description: DESCRIPTION,
    input: inputSchema,
    timeoutMs: config.timeout_ms + WAIT_MARGIN_MS,
    async run(input, context) {
      const result = await pool.evaluate(input.expression, context.signal);
      return { result: { result } };
    },
    close: () => pool.close(),
  };
}
