#!/usr/bin/env node
// Runs the TypeScript sources through tsx in a checkout, or the compiled
// dist/ in an image built without them (see Dockerfile).
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import(new URL('../dist/cli/main.js', import.meta.url).href);
}
