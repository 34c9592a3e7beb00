import { toStorable } from '../http/text.ts';

/**
 * Makes an upstream's streamed text storable as it arrives, so that what the
 * client sees is what is stored: U+0000 and unpaired surrogates (possible
 * through JSON escapes) become U+FFFD. A surrogate pair may arrive split across
 * two deltas (`"\ud83d"` in one event, `"\ude00"` in the next), so a trailing
 * high surrogate is held back until the next delta says whether its partner follows.
 */
export class StorableText {
  private held = '';

  /** The storable part of a delta; '' when all of it is held back. */
  push(delta: string): string {
    let text = this.held + delta;
    this.held = '';
    const last = text.charCodeAt(text.length - 1);
    if (last >= 0xd800 && last <= 0xdbff) {
      this.held = text.slice(-1);
      text = text.slice(0, -1);
    }
    return toStorable(text);
  }

  /** What is still held back at the end of the text: a high surrogate whose partner never came, as U+FFFD. */
  flush(): string {
    const text = this.held;
    this.held = '';
    return toStorable(text);
  }
}
