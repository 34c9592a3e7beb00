import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerUsesResult, datetimeForms, usesNumber } from '../scripts/eval-tools-checks.ts';
import { coverage, eventsOf, formatReport, headline, loadCases, observe, promptOf, rows, runCases, score, type EvalCase, type Observation } from '../scripts/eval-tools-core.ts';
import { startFakeServer, type EvalServer } from '../scripts/eval-tools-server.ts';

/** `npm run eval:tools` in fake mode: the whole labelled set through the real loop, a fake model and a fake web. */

const cases = loadCases();

describe('the tools eval set', () => {
  it('is large and varied enough to say something', () => {
    const { byTool, languages } = coverage(cases);
    expect(cases.length).toBeGreaterThanOrEqual(48);
    expect(languages.length).toBeGreaterThanOrEqual(6);
    for (const tool of ['calculator', 'current_datetime', 'web_search', 'web_fetch'] as const) expect(byTool[tool], tool).toBeGreaterThanOrEqual(8);
    expect(byTool.none).toBeGreaterThanOrEqual(6);
  });

  it('asks the fake model for the expected call in fake mode only', () => {
    const fetch = cases.find((c) => c.expect_tool === 'web_fetch')!;
    const fake = promptOf(fetch, 'fake', { port: '4242' });
    expect(fake).toMatch(/\[\[call:web_fetch:\{"url":"http:\/\/[a-z-]+\.test:4242\/[^"]*"\}\]\]$/);
    expect(fake).not.toContain('{{port}}');
    expect(promptOf(fetch, 'real', { port: '4242' })).not.toContain('[[call:');
    const chat = cases.find((c) => c.expect_tool === null)!;
    expect(promptOf(chat, 'fake', {})).toBe(chat.prompt);
  });
});

describe('fake mode over the whole set', () => {
  let server: EvalServer;
  beforeAll(async () => {
    server = await startFakeServer();
  }, 60_000);
  afterAll(async () => {
    await server?.close();
  });

  it('calls the expected tool in every case, completes it, and puts its result in the answer', async () => {
    // Two at a time: quicker on a two-core machine, and still one model call each per step.
    const results = await runCases({ ...server.target, timeoutMs: 20_000 }, cases, 'fake', 2);
    const failed = results.filter((r) => r.reasons.length > 0).map((r) => `${r.id}: ${r.reasons.join('; ')}`);
    expect(failed).toEqual([]);
    for (const row of rows(results)) {
      expect(row.selected, row.name).toBe(row.cases);
      expect(row.toolOk, row.name).toBe(row.called);
      expect(row.used, row.name).toBe(row.checked);
      // One step to call the tool and one to answer; one step for a plain answer.
      if (row.name !== 'overall') expect(row.meanSteps, row.name).toBe(row.name === '(no tool)' ? 1 : 2);
    }
    const report = formatReport(headline('fake'), results);
    expect(report.split('\n')[0]).toBe('eval:tools, fake mode: loop mechanics only; the fake model is told which tool to call');
    expect(report).toContain(`${cases.length}/${cases.length} cases passed`);
  }, 90_000);
});

describe('scoring', () => {
  it('finds a calculator result as people write it, and not a number that is merely close', () => {
    expect(usesNumber(397.8, 'Das sind 397,80 €.')).toBe(true);
    expect(usesNumber(397.8, 'About 398 euros.')).toBe(true);
    expect(usesNumber(1484.6078820586, 'Je hebt dan € 1.484,61.')).toBe(true);
    expect(usesNumber(152084.59262964, 'Cerca de 152 084,59 €.')).toBe(true);
    expect(usesNumber('26.097590073968 mi', 'Environ 26,1 miles.')).toBe(true);
    expect(usesNumber('20 m / s', '72 km/t er 20 m/s.')).toBe(true);
    expect(usesNumber(397.8, 'Das sind 379,80 €.')).toBe(false);
    expect(usesNumber('26.097590073968 mi', 'About 27 miles.')).toBe(false);
    expect(usesNumber(0.4, 'Roughly 0.')).toBe(false);
  });

  it('reads the date and time in the language of the answer', () => {
    const output = { iso: '2026-11-23T00:39:28-01:00', timezone: 'Atlantic/Azores', weekday: 'Monday', date: '2026-11-23', time: '00:39:28', unix_ms: 1795397968933 };
    expect(datetimeForms(output, 'de')).toEqual(expect.arrayContaining(['montag', '23. november', '23.11.2026', '00:39']));
    const check = { kind: 'contains_result' } as const;
    expect(answerUsesResult('current_datetime', [JSON.stringify(output)], 'Nos Açores é segunda-feira, 0h39.', check, 'pt')).toBe(true);
    expect(answerUsesResult('current_datetime', [JSON.stringify(output)], 'Es ist Dienstag.', check, 'de')).toBe(false);
  });

  it('wants a search result or a phrase of the page in the answer', () => {
    const found = JSON.stringify({ results: [{ title: 'Fairphone 5 review: built to last', url: 'https://reviews.example/fairphone-5/', snippet: '…' }] });
    const check = { kind: 'contains_result' } as const;
    expect(answerUsesResult('web_search', [found], 'See reviews.example/fairphone-5 for details.', check, 'en')).toBe(true);
    expect(answerUsesResult('web_search', [found], 'It is a sturdy phone.', check, 'en')).toBe(false);
    const page = JSON.stringify({ url: 'http://x.test/', title: 'Release notes: eugpt 2.4', content: 'Version 2.4 adds citations to streamed answers and more.' });
    expect(answerUsesResult('web_fetch', [page], 'In short, it adds citations to streamed answers.', check, 'en')).toBe(true);
    expect(answerUsesResult('web_fetch', [page], 'It has a few new features.', check, 'en')).toBe(false);
  });

  it('fails a case for the wrong tool, a failed call, an unneeded call, or a broken stream', () => {
    const calc = cases.find((c) => c.id === 'calc-de-percent')!;
    const chat: EvalCase = { id: 'chat', lang: 'en', prompt: 'Hi', expect_tool: null };
    const seen = (o: Partial<Observation>): Observation => ({ status: 'completed', calls: [], text: '', steps: 1, latencyMs: 1, ...o });
    expect(score(calc, seen({ calls: [{ name: 'calculator', status: 'completed', output: '{"result":397.8}' }], text: '397,80 €', steps: 2 })).reasons).toEqual([]);
    expect(score(calc, seen({ calls: [{ name: 'web_search', status: 'completed', output: '{"results":[]}' }] })).reasons[0]).toBe('called web_search first, expected calculator');
    const broken = score(calc, seen({ calls: [{ name: 'calculator', status: 'failed', output: '{"error":"bad expression"}' }] }));
    expect(broken).toMatchObject({ toolOk: false, usedResult: null });
    expect(broken.reasons).toEqual(['calculator failed: bad expression']);
    expect(score(chat, seen({ calls: [{ name: 'calculator', status: 'completed', output: '{}' }] })).reasons).toEqual(['called calculator although no tool was needed']);
    const cut = observe(eventsOf('event: message\ndata: {"type":"response.created"}\n\n'), 5);
    expect(score(chat, cut).reasons).toEqual(['the stream ended without response.completed']);
  });
});
