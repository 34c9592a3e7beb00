/**
 * What the route schemas cannot say about the API and the OpenAPI document
 * needs: who may call each operation, an operationId, and every error status
 * an operation can answer (with the error envelope), described in words.
 */

interface Operation {
  operationId?: string;
  security?: Record<string, string[]>[];
  parameters?: { in?: string }[];
  requestBody?: unknown;
  responses?: Record<string, { description?: string; content?: Record<string, unknown> }>;
}

type Paths = Record<string, Record<string, Operation>>;

const METHODS = ['get', 'put', 'post', 'patch', 'delete'] as const;

const DESCRIPTIONS: Record<string, string> = {
  '200': 'OK',
  '201': 'Created',
  '400': 'The request is not valid: the error names the parameter',
  '401': 'Missing or invalid credentials',
  '403': 'Not allowed: API access is off or the organisation is suspended',
  '404': 'Not found, or not yours (the two are not told apart)',
  '409': 'Conflicts with the current state',
  '413': 'The request body is larger than the server accepts',
  '429': 'Too many requests, or a token limit reached: see retry-after',
  '500': 'An unexpected server error',
  '502': 'The model server could not answer',
  '503': 'Unavailable for now (database, model servers, shutdown): see retry-after where given',
  '504': 'The model server did not answer in time',
};

const errorBody = () => ({ 'application/json': { schema: { $ref: '#/components/schemas/Error' } } });

/** `post /v1/conversations/{id}/items` → `postConversationsItems`; admin operations start with `admin`. */
function operationId(method: string, path: string): string {
  const parts = path.split('/').filter((p) => p !== '' && p !== 'v1');
  const words = parts.map((p) => (p.startsWith('{') ? `By_${p.slice(1, -1)}` : p));
  const camel = words
    .flatMap((w) => w.split(/[_-]/))
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join('');
  return camel.startsWith('Admin') ? `admin${method[0]!.toUpperCase()}${method.slice(1)}${camel.slice(5)}` : `${method}${camel}`;
}

/** The statuses an operation can answer beyond what its route declares. */
function statusesOf(path: string, method: string, op: Operation): string[] {
  const health = path === '/healthz' || path === '/readyz';
  const statuses = ['500'];
  if (health) return statuses;
  statuses.push('401', '503');
  if (path.startsWith('/v1/')) statuses.push('403');
  if ((op.parameters ?? []).length > 0 || op.requestBody !== undefined) statuses.push('400');
  if (path.includes('{')) statuses.push('404');
  if (op.requestBody !== undefined) statuses.push('413');
  if (path === '/v1/responses' && method === 'post') statuses.push('429');
  return statuses;
}

export function completeDocument<T>(doc: T): T {
  const paths = (doc as { paths?: Paths }).paths ?? {};
  const seen = new Set<string>();
  for (const [path, item] of Object.entries(paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (op === undefined) continue;
      op.operationId ??= operationId(method, path);
      if (seen.has(op.operationId)) throw new Error(`two operations named ${op.operationId}`);
      seen.add(op.operationId);
      if (path === '/healthz' || path === '/readyz') op.security = [];
      else op.security ??= [path.startsWith('/admin/') ? { adminToken: [] } : { apiKey: [] }];
      const responses = (op.responses ??= {});
      for (const status of statusesOf(path, method, op)) responses[status] ??= { content: errorBody() };
      for (const [status, response] of Object.entries(responses)) {
        if (response.description === undefined || response.description === 'Default Response') {
          response.description = DESCRIPTIONS[status] ?? 'See the error envelope';
        }
      }
      // Statuses in ascending order, as readers expect.
      op.responses = Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b)));
    }
  }
  return doc;
}
