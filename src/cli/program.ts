import { Command, CommanderError } from 'commander';
import pkg from '../../package.json' with { type: 'json' };
import { registerAdminCommands } from './admin-commands.ts';
import { CliError } from './client.ts';
import { createContext, type CliIo } from './context.ts';
import { EXIT } from './exit-codes.ts';
import { registerFileCommands } from './file-commands.ts';
import { registerProjectFileCommands } from './project-file-commands.ts';
import { registerServerCommands } from './server-commands.ts';

/**
 * The `eugpt` command line. Building it loads only commander and the small
 * modules of the commands; each command imports what it needs when it runs
 * (the server for `serve` and `migrate`, nothing but fetch for the admin
 * commands), so `--help` and an admin call start in a few tens of ms.
 *
 * A module of further commands exports a RegisterCommands function (see
 * context.ts) and is added with one line below.
 */
export function buildProgram(io: CliIo): Command {
  const program = new Command('eugpt');
  program
    .description('eugpt: a self-hostable EU GPT API server, and its admin commands')
    .version(pkg.version)
    .option('--url <url>', 'server base URL for admin commands (default: EUGPT_URL, or http://127.0.0.1:$PORT)')
    .option('--json', 'print one JSON document instead of a table')
    // Set before the commands are added, so every command inherits them.
    .exitOverride()
    .configureHelp({ showGlobalOptions: true })
    .configureOutput({
      writeOut: (text) => io.out(text),
      writeErr: (text) => io.err(text),
      outputError: (text, write) => write(`eugpt: ${oneLine(text.replace(/^error: /, ''))} (see --help)\n`),
    });
  const ctx = createContext(io);
  registerServerCommands(program, ctx);
  registerAdminCommands(program, ctx);
  registerFileCommands(program, ctx);
  // After the admin commands: these join their `project` command.
  registerProjectFileCommands(program, ctx);
  return program;
}

const oneLine = (text: string) => text.trim().replaceAll(/\s*\n\s*(?=\()/g, ' ').replaceAll(/\s*\n\s*/g, '; ');

/** Runs one command line (without `node` and the script) and returns its exit status; see exit-codes.ts. */
export async function runCli(args: string[], io: CliIo): Promise<number> {
  try {
    await buildProgram(io).parseAsync(args, { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version end with an exception too; commander already printed what it had to say.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? EXIT.ok : EXIT.usage;
    }
    // Errors are one readable line; a stack trace helps nobody running a command.
    const message = err instanceof Error ? err.message : String(err);
    io.err(`eugpt: ${oneLine(await scrub(message))}\n`);
    if (err instanceof CliError) return err.exitCode;
    return err instanceof Error && err.name === 'ConfigError' ? EXIT.usage : EXIT.failed;
  }
}

/** A failed query's message ends with its values; the scrubber is loaded only for such an error. */
async function scrub(message: string): Promise<string> {
  if (!message.includes('\nparams: ')) return message;
  const { scrubErrorText } = await import('../http/log-errors.ts');
  return scrubErrorText(message);
}
