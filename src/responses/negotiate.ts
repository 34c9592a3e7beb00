import type { IncomingHttpHeaders } from 'node:http';

/**
 * Whether a request that leaves out `stream` is answered as an event stream.
 * The product streams by default; OpenAI's API does not, and clients built
 * for it say so in their own ways: the openai SDK sends
 * `Accept: application/json`, the AI SDK accepts any type but names itself
 * in its user-agent (`ai-sdk/…`). Those get one JSON document. An explicit
 * `text/event-stream` always streams; everything else follows the
 * operator's default (EUGPT_STREAM_DEFAULT). See the README, "Streaming".
 */
export function streamsByDefault(headers: IncomingHttpHeaders, configured: boolean): boolean {
  const accept = headers.accept ?? '';
  if (/text\/event-stream/i.test(accept)) return true;
  if (/application\/json/i.test(accept)) return false;
  if (/(^|\s)ai-sdk\//.test(headers['user-agent'] ?? '')) return false;
  return configured;
}
