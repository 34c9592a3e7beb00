/**
 * The responses running in this process that a client may cancel
 * (`POST /v1/responses/{id}/cancel`). A cancel that reaches another instance
 * is written to the response's row; this instance's recovery loop reads it
 * (see Recovery.pollCancels), so a cancel works whichever instance holds the
 * stream.
 */
export class Cancels {
  private readonly running = new Map<string, () => void>();

  register(id: string, cancel: () => void): void {
    this.running.set(id, cancel);
  }

  unregister(id: string): void {
    this.running.delete(id);
  }

  /** Cancels a response running here; false when it is not running here. */
  cancelHere(id: string): boolean {
    const cancel = this.running.get(id);
    if (cancel === undefined) return false;
    cancel();
    return true;
  }

  ids(): string[] {
    return [...this.running.keys()];
  }
}
