import { randomUUID } from 'node:crypto';
import type { Db } from '../../src/db/client.ts';
import { conversations, responses } from '../../src/db/schema.ts';
import { windowsAt } from '../../src/limits/windows.ts';

/**
 * Writes what a dead instance leaves behind: a response `in_progress` (no
 * body, as a store: false admission writes it) in a hidden conversation of its
 * own, with the tokens counted so far. `instanceId` has no heartbeat row, so
 * every recovery sweep takes it as stale.
 */
export async function insertOrphan(
  db: Db,
  owner: { userId: string; organizationId: string },
  tokens: { prompt: number; output: number },
  instanceId: string = randomUUID(),
): Promise<{ id: string; conversationId: string }> {
  const id = randomUUID();
  const conversationId = randomUUID();
  const windows = windowsAt(Date.now());
  await db.insert(conversations).values({ id: conversationId, ...owner, hidden: true });
  await db.insert(responses).values({
    id,
    ...owner,
    conversationId,
    model: 'test-model',
    status: 'in_progress',
    instanceId,
    createdAt: new Date(Date.now() - 10_000),
    body: null,
    pending: {
      input: [],
      promptTokens: tokens.prompt,
      reservationId: null,
      windows: { day: { start: windows.day.start }, month: { start: windows.month.start } },
      used: { inputTokens: 0, outputTokens: tokens.output, inFlight: tokens.prompt },
    },
  });
  return { id, conversationId };
}
