import { and, asc, sql, type SQL } from 'drizzle-orm';
import type { PgColumn } from 'drizzle-orm/pg-core';

export interface PageQuery {
  limit: number;
  /** Id of the last row of the previous page. */
  after?: string | undefined;
}

export interface Page<T> {
  data: T[];
  hasMore: boolean;
}

/**
 * Keyset pagination over (created_at, id): stable under inserts, and cheap
 * with an index. Returns the WHERE and ORDER BY for a page after `after`.
 */
export function keyset(
  table: string,
  createdAt: PgColumn,
  id: PgColumn,
  page: PageQuery,
  filter?: SQL,
): { where: SQL | undefined; orderBy: SQL[]; limit: number } {
  const cursor =
    page.after === undefined
      ? undefined
      : sql`(${createdAt}, ${id}) > (select c.created_at, c.id from ${sql.identifier(table)} c where c.id = ${page.after})`;
  return { where: and(filter, cursor), orderBy: [asc(createdAt), asc(id)], limit: page.limit + 1 };
}

export function toPage<T>(rows: T[], limit: number): Page<T> {
  return { data: rows.slice(0, limit), hasMore: rows.length > limit };
}
