import { spawn, type ChildProcess } from 'node:child_process';
import { ADMIN_TOKEN } from './app.ts';
import { TEST_DATABASE_URL } from './db.ts';

const BIN = new URL('../../bin/eugpt.js', import.meta.url).pathname;

/** The server as its own process (`eugpt serve`), for tests of signals and crashes. */
export interface ChildServer {
  origin: string;
  process: ChildProcess;
  /** Resolves with the exit code (null: killed by a signal). */
  exited: Promise<number | null>;
}

/**
 * Starts `eugpt serve` on a free port with the given environment, on the
 * test PostgreSQL when there is one, else on the embedded database in
 * `dataDir`; resolves once /healthz answers.
 */
export async function startChildServer(env: Record<string, string>, dataDir: string): Promise<ChildServer> {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      PORT: String(port),
      EUGPT_ADMIN_TOKEN: ADMIN_TOKEN,
      EUGPT_DATA_DIR: dataDir,
      LOG_LEVEL: 'warn',
      ...(TEST_DATABASE_URL ? { DATABASE_URL: TEST_DATABASE_URL } : {}),
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => (gone = true));
  const origin = `http://127.0.0.1:${port}`;
  // Start-up takes as long as it takes on a busy machine: wait for the process to answer, or to exit.
  for (;;) {
    if (gone) throw new Error(`eugpt serve exited before answering (code ${await exited})`);
    try {
      if ((await fetch(`${origin}/healthz`)).ok) return { origin, process: child, exited };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function adminPost(origin: string, path: string, body: unknown, method = 'POST'): Promise<Record<string, string>> {
  const res = await fetch(`${origin}/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, string>;
}

/** Reads an SSE body until `needle` appears (or the stream ends); returns the text so far. */
export function streamReader(body: ReadableStream<Uint8Array>) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  return {
    get text() {
      return text;
    },
    async until(needle: string | RegExp): Promise<boolean> {
      const found = () => (typeof needle === 'string' ? text.includes(needle) : needle.test(text));
      while (!found()) {
        const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
        if (done) return found();
        text += decoder.decode(value, { stream: true });
      }
      return true;
    },
  };
}
