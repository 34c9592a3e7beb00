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
  // Port 0: the system picks a free port, and the server's "listening" log line says which.
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      PORT: '0',
      EUGPT_ADMIN_TOKEN: ADMIN_TOKEN,
      EUGPT_DATA_DIR: dataDir,
      LOG_LEVEL: 'info',
      ...(TEST_DATABASE_URL ? { DATABASE_URL: TEST_DATABASE_URL } : {}),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // Start-up takes as long as it takes on a busy machine: wait for the line that says where it listens, or for the exit.
  const tail: string[] = [];
  const listening = new Promise<string>((resolve, reject) => {
    let buffered = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        tail.push(line);
        tail.splice(0, Math.max(0, tail.length - 20));
        const at = /"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/.exec(line);
        if (at) resolve(at[1]!);
      }
    });
    void exited.then((code) => reject(new Error(`eugpt serve exited before listening (code ${code}):\n${tail.join('\n')}`)));
  });
  const origin = await listening;
  child.stdout.resume();
  return { origin, process: child, exited };
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
