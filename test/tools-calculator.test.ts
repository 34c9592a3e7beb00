import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCalculatorTool, type CalculatorTool } from '../src/tools/calculator.ts';
import { calculatorSchema } from '../src/tools/config.ts';
import { ToolError, type ToolRunContext } from '../src/tools/types.ts';

// Each tool owns worker processes; the first call of each waits for one to
// start (up to a few seconds on a busy machine, where tsx compiles the
// worker), so the tests share a few tools.

function context(signal = new AbortController().signal): ToolRunContext {
  return { signal, now: () => Date.now() };
}

async function calc(tool: CalculatorTool, expression: string, signal?: AbortSignal): Promise<unknown> {
  const outcome = await tool.run(tool.input.parse({ expression }), context(signal));
  return outcome.result.result;
}

/** The call fails with a ToolError whose message matches, and carries no stack trace or internals. */
async function refused(tool: CalculatorTool, expression: string, message: RegExp, signal?: AbortSignal): Promise<ToolError> {
  const error = await calc(tool, expression, signal).then(
    (value) => {
      throw new Error(`"${expression}" gave ${JSON.stringify(value)} instead of failing`);
    },
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(ToolError);
  const { message: text } = error as ToolError;
  expect(text).toMatch(message);
  expect(text).not.toMatch(/\n\s+at |node_modules|\.ts:\d|\.js:\d/);
  return error as ToolError;
}

describe('calculator', () => {
  let tool: CalculatorTool;
  beforeAll(() => {
    tool = createCalculatorTool(calculatorSchema.parse({}));
  });
  afterAll(() => tool.close());

  it('is described to the model and bounds the input', () => {
    expect(tool.name).toBe('calculator');
    expect(tool.description).toMatch(/percent/i);
    expect(tool.description).toMatch(/ to mi/);
    expect(tool.timeoutMs).toBeGreaterThanOrEqual(2_000);
    expect(tool.input.safeParse({ expression: '1+1' }).success).toBe(true);
    expect(tool.input.safeParse({ expression: '1'.repeat(1000) }).success).toBe(true);
    expect(tool.input.safeParse({ expression: '1'.repeat(1001) }).success).toBe(false);
    expect(tool.input.safeParse({ expression: '' }).success).toBe(false);
    expect(tool.input.safeParse({}).success).toBe(false);
    expect(tool.input.safeParse({ expression: 42 }).success).toBe(false);
  });

  it('does arithmetic', async () => {
    const cases: [string, unknown][] = [
      ['2 + 3 * 4', 14],
      ['(2 + 3) * 4', 20],
      ['2^10', 1024],
      ['10 / 4', 2.5],
      ['-7 + 2', -5],
      ['7 mod 3', 1],
      ['5!', 120],
      ['-0', 0],
      ['1e-20', 1e-20],
    ];
    for (const [expression, expected] of cases) expect(await calc(tool, expression), expression).toBe(expected);
  });

  it('rounds away floating-point noise but keeps whole numbers exact', async () => {
    expect(await calc(tool, '0.1 + 0.2')).toBe(0.3);
    expect(await calc(tool, '1.1 * 1.1')).toBe(1.21);
    expect(await calc(tool, '1 / 3')).toBe(0.33333333333333);
    expect(await calc(tool, '123456789012345')).toBe(123456789012345);
    expect(await calc(tool, '2^53 - 1')).toBe(9007199254740991);
    // Beyond exact integers, text in exponent form instead of made-up digits.
    expect(await calc(tool, '2^64')).toBe('1.844674407371e+19');
  });

  it('applies functions and constants', async () => {
    const cases: [string, unknown][] = [
      ['sqrt(16)', 4],
      ['sin(pi / 2)', 1],
      ['sin(30 deg)', 0.5],
      ['cos(0)', 1],
      ['log(e)', 1],
      ['log(100, 10)', 2],
      ['log10(1000)', 3],
      ['exp(1)', 2.718281828459],
      ['round(2.345, 2)', 2.35],
      ['abs(-3)', 3],
      ['gcd(12, 18)', 6],
      ['combinations(10, 3)', 120],
      ['mean([1, 2, 3, 4])', 2.5],
      ['max(3, 9, 4)', 9],
      ['sum(1:100)', 5050],
      ['det([1, 2; 3, 4])', -2],
      ['[10, 20, 30][2]', 20],
    ];
    for (const [expression, expected] of cases) expect(await calc(tool, expression), expression).toBe(expected);
  });

  it('returns units, complex numbers and matrices as text', async () => {
    expect(await calc(tool, 'sqrt(-4)')).toBe('2i');
    expect(await calc(tool, '3 + 4i')).toBe('3 + 4i');
    expect(await calc(tool, 'inv([1, 2; 3, 4])')).toBe('[[-2, 1], [1.5, -0.5]]');
    expect(await calc(tool, 'isPrime(97)')).toBe('true');
  });

  it('converts units', async () => {
    expect(await calc(tool, '5 km to mi')).toBe('3.1068559611867 mi');
    expect(await calc(tool, '20 C to F')).toBe('68 degF');
    expect(await calc(tool, '68 F to C')).toBe('20 degC');
    expect(await calc(tool, '20 degC to degF')).toBe('68 degF');
    expect(await calc(tool, '20 °C to °F')).toBe('68 degF');
    expect(await calc(tool, '100 km/h to m/s')).toBe('27.777777777778 m / s');
    expect(await calc(tool, '2 hours + 30 minutes to minutes')).toBe('150 minutes');
    expect(await calc(tool, 'number(5 km, m)')).toBe(5000);
    await refused(tool, '5 km + 3 kg', /Units do not match/);
  });

  it('reads percentages as people mean them', async () => {
    const cases: [string, unknown][] = [
      ['15% of 80', 12],
      ['15 % of 80', 12],
      ['12.5% of 40', 5],
      ['15 percent of 80', 12],
      ['20% of 150 + 10', 40],
      ['80 + 15%', 92],
      ['80 - 15%', 68],
      ['200 * 7.5%', 15],
      ['7.5% * 200', 15],
      ['50%', 0.5],
      ['8% of 50 km', '4 km'],
      // `%` between two numbers is still the remainder.
      ['10 % 3', 1],
    ];
    for (const [expression, expected] of cases) expect(await calc(tool, expression), expression).toBe(expected);
  });

  it('explains results that are not finite and expressions it cannot read', async () => {
    await refused(tool, '1 / 0', /infinite/);
    await refused(tool, '0 / 0', /NaN/);
    await refused(tool, '10^400', /infinite/);
    await refused(tool, 'factorial(1e7)', /infinite/);
    await refused(tool, '[1, Infinity]', /infinite or NaN/);
    await refused(tool, '2 +', /could not read the expression/);
    await refused(tool, 'x + 1', /unknown name "x"/);
    await refused(tool, 'frobnicate(2)', /unknown function "frobnicate"/);
    await refused(tool, 'sqrt', /a function, not a value/);
    await refused(tool, '   ', /empty/);
    await refused(tool, 'ones(100, 100)', /10000 entries/);
  });

  it('refuses to define, import, re-parse or reach JavaScript objects', async () => {
    const attempts: [string, RegExp][] = [
      ['import({}, {override: true})', /"import" is not available/],
      ['evaluate("1+1")', /"evaluate" is not available/],
      ['parse("1")', /"parse" is not available/],
      ['compile("1")', /"compile" is not available/],
      ['simplify("x + x")', /"simplify" is not available/],
      ['createUnit("foo")', /"createUnit" is not available/],
      ['config({number: "BigNumber"})', /"config" is not available/],
      ['typed("f", {})', /"typed" is not available/],
      ['map([1, 4], evaluate)', /"evaluate" is not available/],
      ['x = 5', /assignments are not supported/],
      ['f(x) = x^2', /assignments are not supported/],
      ['a = 1; a + 1', /assignments are not supported/],
      ['[1].constructor', /"constructor" is not available/],
      ['cos.constructor("return process")()', /could not read the expression/],
      ['a.__proto__', /"__proto__" is not available/],
      ['sqrt["constructor"]', /"constructor" is not available/],
      ['{prototype: 1}', /"prototype" is not available/],
      ['{a: 1}.a', /property access is not supported/],
    ];
    for (const [expression, message] of attempts) await refused(tool, expression, message);
    // Nothing leaked into the shared instance: numbers are still plain
    // numbers and no unit was created.
    expect(await calc(tool, '1 / 3')).toBe(0.33333333333333);
    await refused(tool, '5 foo', /unknown name "foo"/);
  });
});

// Every stop costs a worker and the next call waits for a fresh one: slow on a busy machine.
describe('calculator limits', { timeout: 60_000 }, () => {
  let tool: CalculatorTool;
  beforeAll(() => {
    tool = createCalculatorTool(calculatorSchema.parse({ timeout_ms: 1_000 }));
  });
  afterAll(() => tool.close());

  it('stops an expression that runs too long and carries on with a fresh worker', async () => {
    expect(await calc(tool, '1 + 1')).toBe(2); // the worker is up: its start does not count below
    const started = Date.now();
    await refused(tool, 'combinations(1e15, 5e14)', /took too long/);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(10_000);
    expect(await calc(tool, '2 + 2')).toBe(4);
  });

  it('survives memory bombs', async () => {
    // On a busy machine the heap may fill more slowly than the time limit runs out: either stop is fine.
    for (const bomb of ['1:1e9', 'ones(20000, 20000)', 'sum(1:1e9)']) {
      await refused(tool, bomb, /too much memory|took too long/);
    }
    expect(await calc(tool, '3 + 3')).toBe(6);
  });

  it('keeps answering while other calls are stuck', async () => {
    const calls = ['combinations(1e15, 5e14)', 'combinations(1e15, 5e14)', '1 + 2', '2 + 3'].map((expression) =>
      calc(tool, expression).then(
        (value) => ({ value }),
        (error: Error) => ({ error: error.message }),
      ),
    );
    const [slowA, slowB, a, b] = await Promise.all(calls);
    expect(slowA).toEqual({ error: expect.stringMatching(/took too long/) });
    expect(slowB).toEqual({ error: expect.stringMatching(/took too long/) });
    expect(a).toEqual({ value: 3 });
    expect(b).toEqual({ value: 5 });
  });

  it('stops when the caller aborts', async () => {
    const patient = createCalculatorTool(calculatorSchema.parse({ timeout_ms: 600_000 }));
    try {
      expect(await calc(patient, '4 + 4')).toBe(8); // the worker is up, so the abort below hits a running call
      const started = Date.now();
      await refused(patient, 'combinations(1e15, 5e14)', /stopped/, AbortSignal.timeout(500));
      expect(Date.now() - started).toBeLessThan(20_000);
      await refused(patient, '1 + 1', /stopped/, AbortSignal.abort());
      expect(await calc(patient, '5 + 5')).toBe(10);
    } finally {
      await patient.close();
    }
  });

  it('fails calls after close', async () => {
    const closing = createCalculatorTool(calculatorSchema.parse({}));
    expect(await calc(closing, '5 + 5')).toBe(10);
    await closing.close();
    await refused(closing, '1 + 1', /shut down/);
  });
});
