import { UpstreamError } from './types.ts';

/**
 * The connections of one provider, counted by us rather than queued silently
 * inside the HTTP pool: a streamed answer holds its connection for its whole
 * length, so when all are busy a request waits here, first come first served,
 * for at most `queueTimeoutMs`. Past that it fails as `saturated` at once, so
 * the router can try another provider and the client hears "busy, retry"
 * instead of a timeout a minute later. Because we hand out the slot, we also
 * know when a request really left the queue: time spent waiting is not the
 * model's latency.
 */

interface Waiter {
  grant: () => void;
}

export interface Slot {
  /** Gives the connection back; safe to call more than once. */
  release(): void;
}

export class ConnectionGate {
  private busy = 0;
  private readonly waiters: Waiter[] = [];

  constructor(
    readonly limit: number,
    private readonly queueTimeoutMs: number,
  ) {}

  /** Requests holding a connection now. */
  get inUse(): number {
    return this.busy;
  }

  /** Requests waiting for one. */
  get queued(): number {
    return this.waiters.length;
  }

  /**
   * Waits for a free connection. Throws a `saturated` UpstreamError when none
   * frees up in time or when `signal` aborts while waiting (the request was
   * never sent, so it says nothing about the model).
   */
  enter(signal: AbortSignal): Promise<Slot> {
    if (this.busy < this.limit && this.waiters.length === 0) return Promise.resolve(this.take());
    if (signal.aborted) return Promise.reject(this.saturated('the call was aborted while waiting for a connection'));
    return new Promise<Slot>((resolve, reject) => {
      const leave = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
      };
      const waiter: Waiter = {
        grant: () => {
          leave();
          resolve(this.take());
        },
      };
      const onAbort = () => {
        leave();
        reject(this.saturated('the call was aborted while waiting for a connection'));
      };
      const timer = setTimeout(() => {
        leave();
        reject(this.saturated(`all ${this.limit} connections stayed busy for ${this.queueTimeoutMs} ms`));
      }, this.queueTimeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private take(): Slot {
    this.busy++;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.busy--;
        this.waiters[0]?.grant();
      },
    };
  }

  private saturated(message: string): UpstreamError {
    // A client may come back once a stream or two has ended; a second is the smallest honest hint.
    return new UpstreamError('saturated', message, undefined, undefined, Math.max(1000, Math.min(this.queueTimeoutMs, 10_000)));
  }
}
