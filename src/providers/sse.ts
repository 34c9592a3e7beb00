import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { UpstreamError } from './types.ts';

/** A single upstream event larger than this is a broken or hostile upstream, not an answer. */
const MAX_EVENT_BYTES = 8 * 1024 * 1024;

/** Server-sent events of an upstream body, parsed by eventsource-parser; shared by every adapter. */
export async function* readSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<EventSourceMessage> {
  const queue: EventSourceMessage[] = [];
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
    while (queue.length > 0) yield queue.shift()!;
  }
  parser.feed(decoder.decode());
  parser.reset({ consume: true });
  while (queue.length > 0) yield queue.shift()!;
}
