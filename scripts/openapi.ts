// Regenerates openapi.yaml from the route schemas (`npm run openapi`).
import { writeFileSync } from 'node:fs';
import { generateOpenapiYaml } from '../src/http/openapi-document.ts';

const path = new URL('../openapi.yaml', import.meta.url);
writeFileSync(path, await generateOpenapiYaml());
process.stdout.write(`wrote ${path.pathname}\n`);
