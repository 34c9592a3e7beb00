import { EnvFileError, loadEnvFile } from '../env-file.ts';
import { EXIT } from './exit-codes.ts';
import { runCli } from './program.ts';

/** The `eugpt` executable: settings from .env, then one command line. */
let code: number;
try {
  loadEnvFile();
  code = await runCli(process.argv.slice(2), {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    env: process.env,
  });
} catch (err) {
  if (!(err instanceof EnvFileError)) throw err;
  process.stderr.write(`eugpt: ${err.message}\n`);
  code = EXIT.usage;
}
// `serve` returns once listening and may already have set a failure status: only a failure is written.
if (code !== EXIT.ok) process.exitCode = code;
