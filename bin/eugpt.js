#!/usr/bin/env node
// Runs the compiled dist/ when it is there and up to date (always under
// NODE_ENV=production, and in an image or package without the sources or
// without tsx); otherwise runs the TypeScript sources through tsx.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = new URL('../', import.meta.url);
const built = new URL('dist/cli/main.js', root);
const source = new URL('src/cli/main.ts', root);

/** The newest modification time below a folder, in ms (a checkout has a few hundred files). */
function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) latest = Math.max(latest, statSync(`${entry.parentPath ?? entry.path}/${entry.name}`).mtimeMs);
  }
  return latest;
}

function useBuilt() {
  if (!existsSync(built)) return false;
  if (process.env.NODE_ENV === 'production' || !existsSync(source)) return true;
  return statSync(built).mtimeMs >= newest(fileURLToPath(new URL('src/', root)));
}

async function tsx() {
  try {
    return await import('tsx/esm/api');
  } catch {
    return undefined;
  }
}

if (useBuilt()) {
  await import(built.href);
} else {
  const loader = existsSync(source) ? await tsx() : undefined;
  if (loader === undefined) {
    process.stderr.write('eugpt: neither dist/ (run `npm run build`) nor the sources with tsx (a development install) are here\n');
    process.exit(1);
  }
  loader.register();
  await import(source.href);
}
