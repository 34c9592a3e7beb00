import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.ts';
import { organizations, responses, users } from '../src/db/schema.ts';
import { Recovery } from '../src/responses/recovery.ts';
import { openOwnDatabase } from './helpers/db.ts';
import { insertOrphan } from './helpers/orphan.ts';

/**
 * The recovery sweep finalises responses of instances whose heartbeat is
 * stale. An instance whose own heartbeat went stale (its process was paused
 * for longer than staleMs, or its heartbeat writes failed) is still alive and
 * streaming: it must leave its own responses alone.
 */

// No server, and on PostgreSQL a database of its own: no other sweep may take the rows first.
let database: Database;
let owner: { userId: string; organizationId: string };
beforeAll(async () => {
  database = await openOwnDatabase();
  const [org] = await database.db.insert(organizations).values({ name: 'Swept' }).returning();
  const [user] = await database.db.insert(users).values({ organizationId: org!.id, email: 'swept@example.eu' }).returning();
  owner = { userId: user!.id, organizationId: org!.id };
});
afterAll(async () => database.close());

/** An in_progress row of `instanceId`, which has no heartbeat row at all: stale to every sweep. */
const leftBy = async (instanceId: string) => (await insertOrphan(database.db, owner, { prompt: 12, output: 3 }, instanceId)).id;

const statusOf = async (id: string) => (await database.db.select({ status: responses.status }).from(responses).where(eq(responses.id, id)))[0]!.status;

const sweeperAs = (instanceId: string) =>
  new Recovery(database.db, instanceId, { heartbeatMs: 1000, staleMs: 1000, checkpointMs: 1000, onError: () => undefined, onRecovered: () => undefined });

describe('the recovery sweep', () => {
  it('leaves an instance’s own responses alone, however stale its heartbeat, and finalises them from another instance', async () => {
    const mine = randomUUID();
    const id = await leftBy(mine);
    await sweeperAs(mine).sweep();
    expect(await statusOf(id)).toBe('in_progress');

    await sweeperAs(randomUUID()).sweep();
    expect(await statusOf(id)).toBe('incomplete');
  });
});
