import type { Command } from 'commander';
import { createAdminClient, type AdminClient } from './client.ts';
import { loadCliConfig } from './env.ts';

/** Where a command writes, and the environment it reads; tests pass their own. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
}

/** What an admin command returns: the API's answer for --json, and a view for people. */
export interface AdminOutput {
  data: unknown;
  human: string;
}

export type AdminRun = (api: AdminClient, ...args: never[]) => Promise<AdminOutput>;

/**
 * What a module of commands gets when it registers them (see program.ts).
 * `admin` turns a function of the admin client into a commander action: it
 * reads --url, --json and the admin token, calls, and prints.
 */
export interface CliContext {
  io: CliIo;
  admin(run: AdminRun): (...args: unknown[]) => Promise<void>;
  /** The global options (--url, --json) as seen from the command running. */
  globals(cmd: Command): { url: string; json: boolean; adminToken: string | undefined };
}

export type RegisterCommands = (program: Command, ctx: CliContext) => void;

export function createContext(io: CliIo): CliContext {
  const globals = (cmd: Command) => {
    const opts = cmd.optsWithGlobals<{ url?: string; json?: boolean }>();
    const env = loadCliConfig(io.env);
    return { url: opts.url ?? env.url, json: opts.json === true, adminToken: env.adminToken };
  };
  return {
    io,
    globals,
    admin(run) {
      return async (...args: unknown[]) => {
        const g = globals(args[args.length - 1] as Command);
        const { data, human } = await run(createAdminClient(g.url, g.adminToken), ...(args as never[]));
        io.out(`${g.json ? JSON.stringify(data) : human}\n`);
      };
    },
  };
}
