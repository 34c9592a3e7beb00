import type { ServerResponse } from 'node:http';
import { isTerminal, type ResponseEvent } from './events.ts';

/** A comment line while silent for this long, so proxies keep the connection (EUGPT_SSE_KEEPALIVE_MS). */
export const KEEP_ALIVE_MS = 15_000;

const KEEP_ALIVE = ': keep-alive\n\n';

export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
};

/** The framing: `event: message`, one-line JSON, a blank line; no `id:` (it breaks the Python SDK), no `[DONE]`. */
export const frame = (event: ResponseEvent) => `event: message\ndata: ${JSON.stringify(event)}\n\n`;

export interface SseOptions {
  /** Runs before the terminal event is written (the response is stored first, so a retrieve right after it works). */
  beforeTerminal: (event: ResponseEvent) => Promise<ResponseEvent>;
  /** 0: no comments. */
  keepAliveMs?: number;
}

/** How a stream ended: with its terminal event, or cut (the client left, the server is shutting down). */
export interface Written {
  terminal: boolean;
  /** The sequence number the next event would have. */
  nextSeq: number;
}

/** Writes one last event on a stream that ended without its terminal one, and ends it. */
export async function endWith(res: ServerResponse, event: ResponseEvent): Promise<void> {
  if (res.destroyed || res.writableEnded) return;
  await new Promise<void>((resolve) => res.end(frame(event), () => resolve()));
}

/**
 * Writes events to a raw response whose headers are already sent. Waits for
 * 'drain' when the socket is full, so a slow client slows the upstream read
 * instead of filling memory. Ends the response after the terminal event;
 * leaves it open when the events stop without one, for endWith.
 */
export async function writeEvents(res: ServerResponse, events: AsyncIterable<ResponseEvent>, opts: SseOptions): Promise<Written> {
  const keepAliveMs = opts.keepAliveMs ?? KEEP_ALIVE_MS;
  let lastWrite = Date.now();
  const gone = () => res.destroyed || res.writableEnded;

  let corked = false;
  const write = async (chunk: string) => {
    if (gone()) return;
    lastWrite = Date.now();
    // Events produced in one tick (an upstream read often holds several) leave in one syscall.
    if (!corked) {
      corked = true;
      res.cork();
      process.nextTick(() => {
        corked = false;
        res.uncork();
      });
    }
    if (!res.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
  };

  const keepAlive =
    keepAliveMs > 0
      ? setInterval(() => {
          if (!gone() && Date.now() - lastWrite >= keepAliveMs) {
            lastWrite = Date.now();
            res.write(KEEP_ALIVE);
          }
        }, Math.max(10, Math.floor(keepAliveMs / 3)))
      : undefined;
  let terminal = false;
  let nextSeq = 0;
  try {
    for await (const event of events) {
      nextSeq = event.sequence_number + 1;
      if (isTerminal(event)) {
        terminal = true;
        await write(frame(await opts.beforeTerminal(event)));
        break;
      }
      await write(frame(event));
    }
  } finally {
    clearInterval(keepAlive);
    if (terminal && !gone()) res.end();
  }
  return { terminal, nextSeq };
}

/** The wait for a model's first output, during which a stream's headers may already have gone out. */
export interface FirstWait {
  /** Whether the headers were sent (the answer is a stream now, whatever happens). */
  readonly committed: boolean;
  /** Ends the comments; the stream goes on with its events. */
  stop(): void;
}

/**
 * Covers the wait for a model's first output. Until then the headers are held
 * back, so that a model that fails fast gets a plain HTTP error; but a proxy
 * in front (nginx gives up after 60 s) must not see a silent connection. So
 * after `keepAliveMs` of waiting the headers are sent (by `commit`) and a
 * comment follows every `keepAliveMs` until `stop`. 0 turns it off.
 */
export function waitForFirst(res: ServerResponse, keepAliveMs: number, commit: () => void): FirstWait {
  let committed = false;
  const timer =
    keepAliveMs > 0
      ? setInterval(() => {
          if (res.destroyed || res.writableEnded) return;
          if (!committed) {
            committed = true;
            commit();
          }
          res.write(KEEP_ALIVE);
        }, keepAliveMs)
      : undefined;
  return {
    get committed() {
      return committed;
    },
    stop: () => clearInterval(timer),
  };
}
