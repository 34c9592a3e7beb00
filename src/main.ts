import { EnvFileError, loadEnvFile } from './env-file.ts';
import { serve } from './server.ts';

// The image's entry point: the same .env handling as `eugpt serve`.
try {
  loadEnvFile();
} catch (err) {
  if (!(err instanceof EnvFileError)) throw err;
  process.stderr.write(`eugpt: ${err.message}\n`);
  process.exit(2);
}
await serve();
