import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Unusable } from './extract-errors.ts';
import type { ExtractLimits } from './extract.ts';
import type { ExtractReply } from './extract-worker.ts';

/**
 * Runs one extraction in a process of its own. A process rather than a
 * worker thread, for the reason the calculator gives (calculator-pool.ts): a
 * thread whose heap overshoots its limit in one allocation aborts the whole
 * server, while a process that does dies alone. A PDF or zip crafted to
 * inflate is exactly that case. One fresh process per document also means no
 * state (pdf.js caches, a leak) carries from one upload to the next.
 */

export interface RunOptions {
  timeoutMs: number;
  memoryMb: number;
  limits: ExtractLimits;
  /** Ends the run (the server is closing): the process is killed. */
  signal?: AbortSignal;
}

export type RunResult = { text: string; pages: number | null; mime: string };

/** A run that failed for a reason that would fail again (too slow, too big): the file is marked `error` without retries. */
export class ExtractFailed extends Unusable {}

export function runExtraction(bytes: Uint8Array, opts: RunOptions): Promise<RunResult> {
  const typescript = import.meta.url.endsWith('.ts');
  const entry = fileURLToPath(new URL(typescript ? './extract-worker.ts' : './extract-worker.js', import.meta.url));
  const execArgv = [`--max-old-space-size=${opts.memoryMb}`];
  if (typescript) execArgv.push(`--import=${import.meta.resolve('tsx/esm')}`);
  const child = fork(entry, [], {
    execArgv,
    // None of the server's environment (API keys, database URL, NODE_OPTIONS).
    env: {},
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    // Structured clone: the bytes travel as binary, not as a JSON array of numbers.
    serialization: 'advanced',
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  return new Promise<RunResult>((resolve, reject) => {
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(() => reject(new ExtractFailed(`extracting the text took longer than ${opts.timeoutMs} ms`)));
    }, opts.timeoutMs);
    child.on('message', (raw) => {
      const reply = raw as ExtractReply;
      finish(() => {
        if (reply.ok) resolve({ text: reply.text, pages: reply.pages, mime: reply.mime });
        else reject(reply.unusable ? new Unusable(reply.message) : new Error(reply.message));
      });
    });
    child.on('error', (err) => finish(() => reject(err)));
    const onAbort = () => {
      child.kill('SIGKILL');
      finish(() => reject(new Error('extraction stopped: the server is closing')));
    };
    if (opts.signal?.aborted) onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.once('exit', () => opts.signal?.removeEventListener('abort', onAbort));
    child.on('exit', (code, signal) => {
      finish(() => {
        if (/heap out of memory|Allocation failed/i.test(stderr)) {
          reject(new ExtractFailed(`the document needs more than the ${opts.memoryMb} MB of memory extraction may use`));
        } else {
          reject(new Error(`the extraction process ended (${signal ?? `code ${code}`}) without an answer: ${stderr.trim().split('\n').at(-1) ?? ''}`));
        }
      });
    });
    child.send({ bytes, limits: opts.limits }, (err) => {
      if (err) finish(() => reject(err));
    });
  });
}
