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

  it('names every operation, says who may call it, and documents its errors with the envelope', () => {
    const doc = parse(readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8'));
    expect(doc.servers).toEqual([expect.objectContaining({ url: expect.stringMatching(/^http/) })]);
    const ids = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, { operationId: string; security: unknown[]; responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>>)) {
      for (const [method, op] of Object.entries(item)) {
        const what = `${method} ${path}`;
        expect(op.operationId, what).toMatch(/^[a-z][A-Za-z]+$/);
        ids.add(op.operationId);
        const health = path === '/healthz' || path === '/readyz';
        expect(op.security, what).toEqual(health ? [] : [path.startsWith('/admin/') ? { adminToken: [] } : { apiKey: [] }]);
        const statuses = Object.keys(op.responses);
        expect(statuses, what).toContain('500');
        if (!health) expect(statuses, what).toEqual(expect.arrayContaining(['401', '503']));
        if (path.includes('{')) expect(statuses, what).toContain('404');
        for (const status of statuses.filter((s) => Number(s) >= 400 && !(path === '/readyz' && s === '503'))) {
          expect(op.responses[status]!.content?.['application/json']?.schema, `${what} ${status}`).toEqual({ $ref: '#/components/schemas/Error' });
        }
      }
    }
    expect(ids.size).toBeGreaterThan(40);
    expect(doc.paths['/v1/responses'].post.responses['200'].content['text/event-stream']).toBeDefined();
    expect(doc.paths['/v1/responses'].post.responses['429']).toBeDefined();
  });
});
