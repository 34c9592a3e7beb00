import { Worker } from 'node:worker_threads';
import { createEvaluator } from './calculator-engine.ts';
import { ToolError } from './types.ts';

/**
 * The calculator's worker process: evaluates one expression per message, in
 * order, and answers with the value or the error's message. The pool in
 * calculator-pool.ts forks it, bounds its heap and kills it when an
 * expression runs too long.
 */

export interface WorkerRequest {
  id: number;
  expression: string;
}

export type WorkerReply =
  | { type: 'ready' }
  | { type: 'value'; id: number; value: number | string }
  | { type: 'error'; id: number; message: string };

const send = process.send?.bind(process);
// Only as a forked child: imported anywhere else (for its types), it does nothing.
if (send) {
  const evaluate = createEvaluator();
  process.on('message', (request: WorkerRequest) => {
    let reply: WorkerReply;
    try {
      reply = { type: 'value', id: request.id, value: evaluate(request.expression) };
    } catch (error) {
      // ToolErrors carry a message written for the model; anything else is a
      // bug or an engine failure whose text (and stack) the model must not see.
      const message = error instanceof ToolError ? error.message : 'the expression could not be evaluated';
      reply = { type: 'error', id: request.id, message };
    }
    send(reply);
  });
  // The server went away (or closed the pool): nothing is left to answer.
  process.on('disconnect', () => process.exit(0));
  watchParent();
  send({ type: 'ready' } satisfies WorkerReply);
}

/**
 * The 'disconnect' above only fires between two expressions. If the server
 * dies (killed, crashed) while this process is stuck in one, nobody is left to
 * kill it, and it would spin for as long as the expression lasts: hours. A
 * thread has its own event loop, so it keeps running while the main one is
 * busy; once this process has been handed to another parent, it kills it.
 */
function watchParent(): void {
  const source = `
    const { workerData } = require('node:worker_threads');
    setInterval(() => {
      if (process.ppid !== workerData.parent) process.kill(process.pid, 'SIGKILL');
    }, 1000);
  `;
  // Without the loader flags this process was started with: the thread needs none.
  const watchdog = new Worker(source, { eval: true, execArgv: [], workerData: { parent: process.ppid } });
  // It must not keep this process alive on its own.
  watchdog.unref();
}
