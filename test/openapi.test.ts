import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { generateOpenapiYaml } from '../src/http/openapi-document.ts';

describe('openapi.yaml', () => {
  it('is what the routes generate (run `npm run openapi` after changing a route)', async () => {
    const committed = readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8');
    expect(committed).toBe(await generateOpenapiYaml());
  });

  it('documents the public and admin routes, and hides its own', () => {
    const doc = parse(readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8'));
    expect(doc.openapi).toBe('3.1.0');
    for (const path of ['/v1/models', '/healthz', '/readyz', '/admin/v1/organizations', '/admin/v1/api-keys/{id}/revoke', '/admin/v1/projects/{id}/members']) {
      expect(Object.keys(doc.paths)).toContain(path);
    }
    expect(Object.keys(doc.paths)).not.toContain('/openapi.json');
    expect(doc.components.schemas.Error).toBeDefined();
  });
});
