import { createRequire } from 'node:module';
import type { ConfigOptions, MathJsInstance, MathNode } from 'mathjs';
import { ToolError } from './types.ts';

/**
 * The calculator's mathematics: one mathjs instance, locked down so that an
 * expression can compute but never change the instance, define anything or
 * reach JavaScript objects. It runs inside the calculator's worker processes
 * (see calculator-pool.ts), where time and memory are bounded; nothing here
 * guards against slow or huge computations.
 */

/**
 * mathjs's single-file build, the same code as the package's ES modules:
 * those are over a thousand files and take seconds to load on a busy machine,
 * this takes a tenth of that. Every time a worker is killed (an expression ran
 * too long or too large), the next call waits for a fresh one to load it.
 */
const mathjs = createRequire(import.meta.url)('mathjs/lib/browser/math.js') as {
  // It exports a ready instance, whose `create` already holds every function
  // and takes only the configuration.
  create(config: Partial<ConfigOptions>): MathJsInstance;
};

/**
 * Functions that parse or compile further expressions, change the shared
 * instance (new units, new functions, other number types) or hand out
 * JavaScript objects. A persistent worker serves every tenant, so one call must
 * never leave anything behind for the next.
 */
const REPLACED = [
  'import',
  'createUnit',
  'reviver',
  'evaluate',
  'parse',
  'compile',
  'parser',
  'chain',
  'simplify',
  'simplifyConstant',
  'simplifyCore',
  'derivative',
  'resolve',
  'rationalize',
  'leafCount',
  'symbolicEqual',
  // Its pages run the examples through `evaluate`, which is gone.
  'help',
] as const;

/**
 * Names an expression may not mention at all. `config` and `typed` cannot be
 * replaced like the others (mathjs itself uses them), so the check below is
 * their only guard; the rest are JavaScript internals that lead to `Function`.
 */
const FORBIDDEN = new Set<string>([
  ...REPLACED,
  'config',
  'typed',
  'constructor',
  '__proto__',
  'prototype',
  '__defineGetter__',
  '__defineSetter__',
  '__lookupGetter__',
  '__lookupSetter__',
]);

/** Matrices (and lists of results) with more entries than this are not written out. */
const MAX_ENTRIES = 1000;
/** A formatted result longer than this is refused rather than flooding the model's context. */
const MAX_RESULT_CHARS = 10_000;
const PRECISION = 14;

export type CalculatorValue = number | string;

/** Builds the locked-down instance; returns a function that evaluates one expression or throws a ToolError. */
export function createEvaluator(): (expression: string) => CalculatorValue {
  const math = mathjs.create({ number: 'number' });
  // Keep the real parser: the replacements below make the expression-level
  // `parse` throw, and our own code still needs it.
  const parse = math.parse;
  const disabled: Record<string, () => never> = {};
  for (const name of REPLACED) {
    disabled[name] = () => {
      throw new ToolError(`the function ${name} is not available in the calculator`);
    };
  }
  // One import call: after it, `import` itself is one of the disabled functions.
  math.import(disabled, { override: true });

  return (expression) => {
    let node: MathNode;
    try {
      node = parse(rewrite(expression));
    } catch (error) {
      throw new ToolError(`could not read the expression: ${messageOf(error)}`);
    }
    check(math, node);
    let value: unknown;
    try {
      // A fresh scope each time, though the check above already refuses assignments.
      value = node.compile().evaluate(new Map());
    } catch (error) {
      if (error instanceof ToolError) throw error;
      throw new ToolError(explain(messageOf(error)));
    }
    return present(math, value);
  };
}

/**
 * Rewrites what people write but mathjs does not read. mathjs already treats a
 * trailing `%` as a percentage (`80 + 15%` is 92, `200 * 7.5%` is 15), but
 * not "15% of 80", and it reads `20 C to F` as coulombs to farads.
 */
function rewrite(expression: string): string {
  const number = String.raw`(?<![\w.])(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?`;
  return (
    expression
      .replace(/℃/g, 'degC')
      .replace(/℉/g, 'degF')
      .replace(/°\s*([CF])\b/g, 'deg$1')
      // "15 percent" is "15%".
      .replace(new RegExp(`(${number})\\s*percent\\b`, 'gi'), '$1%')
      // "15% of 80" becomes "(15 / 100) * 80": "of" binds like a product, so
      // "20% of 150 + 10" is 40, as a person would read it.
      .replace(new RegExp(`(${number})\\s*%\\s*of\\b`, 'gi'), '($1 / 100) *')
      // A bare C or F on either side of a temperature conversion means
      // degrees: coulombs to farads is no conversion at all, so nothing
      // legitimate is lost.
      .replace(
        /^(\s*[-+]?[\d.]+(?:[eE][-+]?\d+)?\s*)(C|F|K|degC|degF)(\s+(?:to|in)\s+)(C|F|K|degC|degF)(\s*)$/,
        (_match, amount: string, from: string, word: string, to: string, tail: string) =>
          `${amount}${degrees(from)}${word}${degrees(to)}${tail}`,
      )
  );
}

function degrees(unit: string): string {
  if (unit === 'C') return 'degC';
  if (unit === 'F') return 'degF';
  return unit;
}

/**
 * Walks the parsed expression and refuses whatever a calculator has no use
 * for and an attacker would need: assignments and function definitions (also
 * inside `a; b` blocks), forbidden names, property access by name, and calls
 * on anything but a plain function name (`f(1)(2)`, `x.y()`).
 */
function check(math: MathJsInstance, root: MathNode): void {
  const unavailable = (name: string) => new ToolError(`"${name}" is not available in the calculator`);
  root.traverse((node) => {
    if (math.isAssignmentNode(node) || math.isFunctionAssignmentNode(node)) {
      throw new ToolError(
        'assignments are not supported: variables and functions cannot be defined; write the numbers into one expression',
      );
    }
    if (math.isSymbolNode(node) && FORBIDDEN.has(node.name)) throw unavailable(node.name);
    if (math.isFunctionNode(node) && !math.isSymbolNode(node.fn)) {
      throw new ToolError('only named functions can be called, such as sqrt(2)');
    }
    if (math.isObjectNode(node)) {
      const bad = Object.keys(node.properties).find((key) => FORBIDDEN.has(key));
      if (bad !== undefined) throw unavailable(bad);
    }
    if (math.isAccessorNode(node) && node.optionalChaining) throw new ToolError('property access is not supported');
    if (math.isIndexNode(node)) {
      const key = node.dimensions
        .map((dimension) => (math.isConstantNode(dimension) ? dimension.value : undefined))
        .find((value) => typeof value === 'string');
      if (key !== undefined && FORBIDDEN.has(key)) throw unavailable(key);
      if (node.dotNotation || key !== undefined) {
        throw new ToolError('property access is not supported; only matrix indexes such as [10, 20, 30][2] are');
      }
    }
  });
}

/** Turns the value into what the model sees: a plain number when that is exact enough, otherwise text. */
function present(math: MathJsInstance, value: unknown): CalculatorValue {
  if (value === undefined) throw new ToolError('the expression is empty');
  if (typeof value === 'function') {
    throw new ToolError('the expression is a function, not a value: call it with arguments, such as sqrt(2)');
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw notFinite(value);
    return plainNumber(math, value);
  }
  const entries = countEntries(math, value);
  if (entries > MAX_ENTRIES) {
    throw new ToolError(
      `the result has ${entries} entries, too many to return; ask for a summary instead, such as sum(...), max(...) or size(...)`,
    );
  }
  if (hasNonFinite(math, value)) {
    throw new ToolError('the result contains an infinite or NaN value; check for division by zero or undefined operations');
  }
  if (typeof value === 'string') {
    if (value.length > MAX_RESULT_CHARS) throw tooLong();
    return value;
  }
  const text = math.format(value, { precision: PRECISION });
  if (text.length > MAX_RESULT_CHARS) throw tooLong();
  return text;
}

function tooLong(): ToolError {
  return new ToolError('the result is too long to return; ask for a shorter form, such as fewer digits or a summary');
}

/**
 * Rounds to 14 significant digits, so that `0.1 + 0.2` is 0.3 and not
 * 0.30000000000000004, but keeps whole numbers exact. Numbers too large for
 * that to mean anything become text in exponent notation, so the model does
 * not read 2^64 as 18446744073709552000.
 */
function plainNumber(math: MathJsInstance, value: number): CalculatorValue {
  if (Number.isSafeInteger(value)) return value === 0 ? 0 : value;
  const rounded = Number(value.toPrecision(PRECISION));
  if (Math.abs(rounded) < 1e15) return rounded === 0 ? 0 : rounded;
  return math.format(value, { precision: PRECISION });
}

function notFinite(value: number): ToolError {
  if (Number.isNaN(value)) {
    return new ToolError('the result is not a number (NaN), as for 0/0; check the expression for undefined operations');
  }
  return new ToolError(
    'the result is infinite or too large for a floating-point number (above about 1.8e308); check for division by zero or use smaller inputs',
  );
}

function countEntries(math: MathJsInstance, value: unknown): number {
  if (math.isMatrix(value)) return value.size().reduce((product, n) => product * n, 1);
  if (Array.isArray(value)) return value.reduce<number>((sum, item) => sum + countEntries(math, item), 0);
  if (math.isResultSet(value)) return countEntries(math, value.entries);
  return 1;
}

function hasNonFinite(math: MathJsInstance, value: unknown): boolean {
  if (typeof value === 'number') return !Number.isFinite(value);
  if (math.isBigNumber(value)) return !value.isFinite();
  if (math.isComplex(value)) return !Number.isFinite(value.re) || !Number.isFinite(value.im);
  // A bare unit such as `km` has null for its amount, which passes.
  if (math.isUnit(value)) return hasNonFinite(math, value.value);
  if (math.isMatrix(value)) return hasNonFinite(math, value.toArray());
  if (Array.isArray(value)) return value.some((item) => hasNonFinite(math, item));
  if (math.isResultSet(value)) return hasNonFinite(math, value.entries);
  return false;
}

/** mathjs's messages are short and plain; add what the model can do about the common ones. */
function explain(message: string): string {
  const symbol = /^Undefined symbol (\S+)/.exec(message);
  if (symbol) {
    return `unknown name "${symbol[1]}": there are no variables; use numbers, units (km, kg, degC, ...), constants (pi, e, i) and functions such as sqrt(...)`;
  }
  const fn = /^Undefined function (\S+)/.exec(message);
  if (fn) return `unknown function "${fn[1]}"`;
  if (/^Units do not match/.test(message)) return `${message}: a unit can only be converted to one of the same kind`;
  return `could not evaluate the expression: ${message}`;
}

/** The first line of an error's message, shortened: never a stack trace. */
function messageOf(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const line = text.split('\n', 1)[0]?.trim() ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line || 'unknown error';
}
