import { fork, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { WorkerReply, WorkerRequest } from './calculator-worker.ts';
import { ToolError } from './types.ts';

/**
 * A few worker processes that evaluate calculator expressions. mathjs computes
 * synchronously, so `combinations(1e15, 5e14)` would block the server's event
 * loop for hours and `1:1e9` would exhaust its heap. In a worker process, the
 * first costs one killed process and the second one process that died at its
 * own heap limit; the server carries on.
 *
 * Processes rather than worker threads: a thread's heap limit only holds for
 * allocations that grow a little at a time. A range like `1:1e9` grows one
 * array by half its size at each step, overshoots the limit in one go, and V8
 * then aborts the whole process, server included.
 *
 * Workers start on the first call that needs one and stay for later calls
 * (loading mathjs takes a moment). A call waits in line when all are busy;
 * its time limit starts when a worker takes it, so neither a slow start nor
 * the line counts against the expression (the caller's signal still bounds the
 * whole wait). A worker that runs past the limit, or whose call is aborted, is
 * killed; the next call that needs one starts a fresh one.
 */

export interface PoolOptions {
  /** Workers at most. */
  size: number;
  /** How long one expression may compute. */
  timeoutMs: number;
  /** The JavaScript heap each worker may use. */
  memoryMb: number;
  /** How long a worker may take to load before the pool gives up on it. */
  startTimeoutMs: number;
}

interface Job {
  id: number;
  expression: string;
  signal: AbortSignal;
  onAbort: () => void;
  resolve: (value: number | string) => void;
  reject: (error: Error) => void;
}

interface Slot {
  child: ChildProcess;
  ready: boolean;
  job: Job | undefined;
  timer: NodeJS.Timeout | undefined;
  /** The end of what the worker wrote to stderr, to tell a heap overflow from other deaths and explain a failed start. */
  stderr: string;
}

/** Characters of a worker's stderr kept. */
const STDERR_TAIL = 2000;

export class CalculatorPool {
  private readonly queue: Job[] = [];
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closed = false;

  constructor(private readonly options: PoolOptions) {}

  /** Evaluates one expression; throws a ToolError the model can read when it fails, runs too long or is aborted. */
  evaluate(expression: string, signal: AbortSignal): Promise<number | string> {
    if (this.closed) return Promise.reject(new ToolError('the calculator is shut down'));
    if (signal.aborted) return Promise.reject(stopped());
    return new Promise((resolve, reject) => {
      const job: Job = { id: this.nextId++, expression, signal, onAbort: () => this.abort(job), resolve, reject };
      signal.addEventListener('abort', job.onAbort, { once: true });
      this.queue.push(job);
      this.pump();
    });
  }

  /** Kills every worker and fails whatever is pending; later calls fail at once. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) settle(job, new ToolError('the calculator is shut down'));
    const slots = this.slots.splice(0);
    for (const slot of slots) {
      clearTimeout(slot.timer);
      if (slot.job) settle(slot.job, new ToolError('the calculator is shut down'));
    }
    await Promise.all(slots.map((slot) => kill(slot.child)));
  }

  /** Hands waiting calls to idle workers, starting workers while there are fewer than calls and the size allows. */
  private pump(): void {
    while (this.queue.length > 0) {
      const idle = this.slots.find((slot) => slot.ready && !slot.job);
      const next = idle && this.queue.shift();
      if (idle && next) {
        this.dispatch(idle, next);
        continue;
      }
      const starting = this.slots.filter((slot) => !slot.ready).length;
      if (starting >= this.queue.length || this.slots.length >= this.options.size) return;
      this.start();
    }
  }

  private dispatch(slot: Slot, job: Job): void {
    slot.job = job;
    hold(slot.child, true);
    slot.timer = setTimeout(() => {
      this.fail(
        slot,
        new ToolError(
          `the expression took too long to evaluate (over ${this.options.timeoutMs} ms) and was stopped; use smaller numbers or a simpler expression`,
        ),
      );
    }, this.options.timeoutMs);
    // A failed send means the worker is gone; its exit handler fails the call.
    slot.child.send({ id: job.id, expression: job.expression } satisfies WorkerRequest, () => {});
  }

  private start(): void {
    const child = startWorker(this.options.memoryMb);
    const slot: Slot = { child, ready: false, job: undefined, timer: undefined, stderr: '' };
    this.slots.push(slot);
    hold(child, true);
    slot.timer = setTimeout(() => {
      this.fail(slot, new Error(`the calculator's worker did not start within ${this.options.startTimeoutMs} ms`));
    }, this.options.startTimeoutMs);
    child.on('message', (reply: WorkerReply) => this.receive(slot, reply));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      slot.stderr = (slot.stderr + chunk).slice(-STDERR_TAIL);
    });
    child.on('error', (error) => this.fail(slot, new Error(`the calculator's worker failed: ${error.message}`)));
    child.on('exit', (code, signal) => this.fail(slot, this.deathOf(slot, code, signal)));
  }

  /** Why a worker exited on its own: out of memory while evaluating, some other crash, or it never started. */
  private deathOf(slot: Slot, code: number | null, signal: NodeJS.Signals | null): Error {
    if (!slot.ready) {
      const detail = slot.stderr.trim().split('\n').slice(-3).join(' | ');
      return new Error(`the calculator's worker exited before it was ready (${signal ?? `code ${code}`})${detail ? `: ${detail}` : ''}`);
    }
    if (/heap out of memory|heap limit/i.test(slot.stderr)) {
      return new ToolError('the expression needed too much memory and was stopped; use smaller matrices, ranges or numbers');
    }
    return new ToolError('the calculator stopped unexpectedly while evaluating the expression; try a simpler one');
  }

  private receive(slot: Slot, reply: WorkerReply): void {
    if (reply.type === 'ready') {
      clearTimeout(slot.timer);
      slot.timer = undefined;
      slot.ready = true;
      hold(slot.child, false);
      this.pump();
      return;
    }
    const job = slot.job;
    if (!job || job.id !== reply.id) return;
    clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.job = undefined;
    hold(slot.child, false);
    settle(job, reply.type === 'value' ? { value: reply.value } : new ToolError(reply.message));
    this.pump();
  }

  /**
   * Ends one worker (timed out, aborted, out of memory, crashed or never
   * started) and fails its call. A worker that could not start fails the
   * calls waiting for it too: that is a fault of the installation, not of the
   * expression, and starting more would fail the same way.
   */
  private fail(slot: Slot, error: Error): void {
    const at = this.slots.indexOf(slot);
    if (at < 0) return;
    this.slots.splice(at, 1);
    clearTimeout(slot.timer);
    void kill(slot.child);
    if (slot.job) settle(slot.job, error);
    if (!slot.ready && !this.slots.some((other) => other.ready)) {
      for (const job of this.queue.splice(0)) settle(job, error);
    }
    this.pump();
  }

  private abort(job: Job): void {
    const waiting = this.queue.indexOf(job);
    if (waiting >= 0) {
      this.queue.splice(waiting, 1);
      settle(job, stopped());
      return;
    }
    const slot = this.slots.find((candidate) => candidate.job === job);
    if (slot) this.fail(slot, stopped());
  }
}

function settle(job: Job, outcome: { value: number | string } | Error): void {
  job.signal.removeEventListener('abort', job.onAbort);
  if (outcome instanceof Error) job.reject(outcome);
  else job.resolve(outcome.value);
}

function stopped(): ToolError {
  return new ToolError('the calculation was stopped before it finished');
}

/**
 * Whether the worker keeps the server's process alive: while it starts or
 * computes, so that a script awaiting a result does not exit under it; idle,
 * never, so a forgotten `close()` cannot hold up shutdown.
 */
function hold(child: ChildProcess, busy: boolean): void {
  // Piped stdio is a socket that would keep the process alive on its own.
  const stderr = child.stderr as Socket | null;
  if (busy) {
    child.ref();
    child.channel?.ref();
    stderr?.ref();
  } else {
    child.unref();
    child.channel?.unref();
    stderr?.unref();
  }
}

/** SIGKILL, since the worker may be stuck in a computation; resolves once it is gone. */
function kill(child: ChildProcess): Promise<void> {
  // Never started (spawn failed) or already gone: no 'exit' is coming.
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/**
 * In a checkout the sources are TypeScript, run by tsx or vitest, and the
 * worker is started with tsx's loader; compiled to dist/, it is a plain .js
 * file next to this one. Either way it is found relative to this module, not
 * the working directory.
 */
function startWorker(memoryMb: number): ChildProcess {
  const typescript = import.meta.url.endsWith('.ts');
  const entry = fileURLToPath(new URL(typescript ? './calculator-worker.ts' : './calculator-worker.js', import.meta.url));
  const execArgv = [`--max-old-space-size=${memoryMb}`];
  if (typescript) execArgv.push(`--import=${import.meta.resolve('tsx/esm')}`);
  return fork(entry, [], {
    execArgv,
    // None of the server's environment (API keys, database URL, NODE_OPTIONS).
    env: {},
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    serialization: 'json',
  });
}
