import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { UpstreamError } from './types.ts';

/** A single upstream event larger than this is a broken or hostile upstream, not an answer. */
const MAX_EVENT_BYTES = 8 * 1024 * 1024;

/**
 * Server-sent events of an upstream body, parsed by eventsource-parser;
 * shared by every adapter. The events come in batches, one per chunk of the
 * body that completed any (an empty chunk's batch is skipped): an answer
 * arriving in a few chunks passes through a few async steps, not one per event.
 */
export async function* readSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<EventSourceMessage[]> {
  let queue: EventSourceMessage[] = [];
  let failure: Error | undefined;
  const parser = createParser({
    maxBufferSize: MAX_EVENT_BYTES,
    onEvent: (event) => queue.push(event),
    onError: (err) => {
      if (err.type === 'max-buffer-size-exceeded') failure = new UpstreamError('protocol', `upstream event over ${MAX_EVENT_BYTES} bytes`);
    },
  });
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    parser.feed(decoder.decode(chunk, { stream: true }));
    if (failure !== undefined) throw failure;
    if (queue.length > 0) {
      const batch = queue;
      queue = [];
      yield batch;
    }
  }
  parser.feed(decoder.decode());
  parser.reset({ consume: true });
  if (queue.length > 0) yield queue;
}
