import swagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import pkg from '../../package.json' with { type: 'json' };
import { completeDocument } from './openapi-complete.ts';

type Document = ReturnType<typeof jsonSchemaTransformObject>;

/**
 * The zod provider registers every named schema twice (as input and as output);
 * only the ones a route refers to belong in the document.
 */
function dropUnreferencedSchemas(doc: Document): Document {
  const schemas = (doc as { components?: { schemas?: Record<string, unknown> } }).components?.schemas;
  if (schemas === undefined) return doc;
  const { components: _c, ...rest } = doc as Record<string, unknown>;
  let referenced = JSON.stringify(rest);
  // Components can refer to each other: keep adding what the kept ones refer to.
  const kept = new Set<string>();
  for (let grew = true; grew; ) {
    grew = false;
    for (const name of Object.keys(schemas)) {
      if (!kept.has(name) && referenced.includes(`"#/components/schemas/${name}"`)) {
        kept.add(name);
        referenced += JSON.stringify(schemas[name]);
        grew = true;
      }
    }
  }
  for (const name of Object.keys(schemas)) if (!kept.has(name)) delete schemas[name];
  return doc;
}

/**
 * POST /v1/responses answers 200 either as one JSON document or as a stream
 * of server-sent events; route schemas can only describe the first.
 */
function addEventStream(doc: Document): Document {
  const paths = (doc as { paths?: Record<string, Record<string, { responses?: Record<string, { content?: Record<string, unknown> }> }>> }).paths;
  const ok = paths?.['/v1/responses']?.post?.responses?.['200'];
  if (ok?.content !== undefined) {
    ok.content['text/event-stream'] = {
      schema: {
        type: 'string',
        description:
          'The default (see `stream`). Frames `event: message\ndata: <one-line JSON>\n\n`, each payload with `type` and a gapless `sequence_number`, ending with `response.completed` (carrying the same Response as the JSON answer) or `error`.',
      },
    };
  }
  return doc;
}

/**
 * The OpenAPI document is generated from the route schemas, served at
 * /openapi.json and /openapi.yaml, and committed as openapi.yaml
 * (`npm run openapi`; a test fails when the two differ).
 */
async function openapi(app: FastifyInstance) {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'eugpt',
        version: pkg.version,
        description: 'Self-hostable server for the EU GPT public API. Authenticate `/v1` routes with `Authorization: Bearer eugpt_…` and `/admin/v1` routes with the admin token.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      servers: [{ url: 'http://127.0.0.1:8080', description: 'A server on this machine with the default PORT; use your own URL' }],
      components: {
        securitySchemes: {
          apiKey: { type: 'http', scheme: 'bearer', description: 'An API key: eugpt_…' },
          adminToken: { type: 'http', scheme: 'bearer', description: 'The value of EUGPT_ADMIN_TOKEN' },
        },
      },
    },
    transform: jsonSchemaTransform,
    transformObject: (doc) => completeDocument(addEventStream(dropUnreferencedSchemas(jsonSchemaTransformObject(doc)))),
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/openapi.yaml', { schema: { hide: true } }, async (_req, reply) =>
    reply.type('application/yaml; charset=utf-8').send(app.swagger({ yaml: true })),
  );
}

export const openapiPlugin = fp(openapi, { name: 'eugpt-openapi' });
