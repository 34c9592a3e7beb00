import { InvalidArgumentError, type Command } from 'commander';
import type { CliContext } from './context.ts';

/**
 * `serve` and `migrate`: the only commands that load the server, its
 * configuration and the database drivers, and only when they run.
 */

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError('must be a port number');
  return n;
}

export function registerServerCommands(program: Command, ctx: CliContext): void {
  program
    .command('serve')
    .description('run the server (the same as npm start)')
    .option('-p, --port <port>', 'port to listen on (default: PORT or 8080)', port)
    .option('--host <host>', 'address to listen on (default: HOST or 127.0.0.1)')
    .action(async (opts: { port?: number; host?: string }) => {
      const { serve } = await import('../server.ts');
      await serve({ ...(opts.port === undefined ? {} : { port: opts.port }), ...(opts.host === undefined ? {} : { host: opts.host }) });
    });

  program
    .command('migrate')
    .description('apply database migrations (the server also does this at start)')
    .action(async () => {
      const { loadConfig } = await import('../config.ts');
      const { openDatabase } = await import('../db/client.ts');
      const config = loadConfig(ctx.io.env);
      const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
      try {
        await database.migrate();
      } finally {
        await database.close();
      }
      ctx.io.out(`migrations applied (${database.kind === 'pglite' ? config.dataDir : 'DATABASE_URL'})\n`);
    });
}
