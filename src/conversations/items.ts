import { eq, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { conversationItems } from '../db/schema.ts';

/**
 * Stored conversation items as clients see them, in OpenAI's item shapes:
 * the input items of a response and the items of a conversation are the
 * same rows, so both routes show them through this one mapping.
 */

export const itemSchema = z
  .object({
    id: z.string(),
    type: z.enum(['message', 'function_call', 'function_call_output']),
    status: z.literal('completed'),
    role: z.string().optional(),
    content: z
      .array(
        z.object({
          type: z.string(),
          text: z.string().optional(),
          file_id: z.string().optional(),
          filename: z.string().optional(),
          image_url: z.string().optional(),
          detail: z.string().optional(),
        }),
      )
      .optional()
      .describe('Text parts ({type, text}), files ({type: "input_file", file_id, filename}) and images ({type: "input_image", image_url or file_id, detail})'),
    call_id: z.string().optional(),
    name: z.string().optional(),
    arguments: z.string().optional(),
    output: z.string().optional(),
  })
  .meta({ id: 'InputItem' });

export type ItemView = z.infer<typeof itemSchema>;

export const itemListSchema = z.object({
  object: z.literal('list'),
  data: z.array(itemSchema),
  first_id: z.string().nullable(),
  last_id: z.string().nullable(),
  has_more: z.boolean(),
});

export interface ItemRow {
  id: number;
  itemId: string | null;
  role: string;
  type: string;
  content: unknown;
}

/** The columns an item is shown from. */
export const itemColumns = {
  id: conversationItems.id,
  itemId: conversationItems.itemId,
  position: conversationItems.position,
  role: conversationItems.role,
  type: conversationItems.type,
  content: conversationItems.content,
};

/** Items stored before item ids existed are named by their row. */
export const idOf = (row: ItemRow) => row.itemId ?? `item_${row.id}`;

/** The condition that picks an item by the id clients know it by (its item id, or `item_<row>` for an old one). */
export function byItemId(id: string): SQL {
  const rowId = /^item_(\d{1,18})$/.exec(id)?.[1];
  return rowId === undefined ? eq(conversationItems.itemId, id) : eq(conversationItems.id, Number(rowId));
}

export function itemOf(row: ItemRow): ItemView {
  const id = idOf(row);
  if (row.type === 'function_call') {
    const c = row.content as { call_id: string; name: string; arguments: string };
    return { id, type: 'function_call', status: 'completed', call_id: c.call_id, name: c.name, arguments: c.arguments };
  }
  if (row.type === 'function_call_output') {
    const c = row.content as { call_id: string; output: string };
    return { id, type: 'function_call_output', status: 'completed', call_id: c.call_id, output: c.output };
  }
  const parts = row.content as { type: string; text?: string; file_id?: string; filename?: string; image_url?: string; detail?: string }[];
  const content = parts.map((p) => {
    if (p.type === 'input_file') return { type: p.type, file_id: p.file_id, filename: p.filename };
    // An image is shown by its reference; one sent as a data URL has none (its bytes were not kept).
    if (p.type === 'input_image') return { type: p.type, detail: p.detail, ...(p.file_id === undefined ? {} : { file_id: p.file_id }), ...(p.image_url === undefined ? {} : { image_url: p.image_url }) };
    return { type: p.type, text: p.text ?? '' };
  });
  return { id, type: 'message', status: 'completed', role: row.role, content };
}

/** A page of items in the list shape both routes answer with. */
export function pageOf(rows: ItemRow[], limit: number) {
  const data = rows.slice(0, limit).map(itemOf);
  return { object: 'list' as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: rows.length > limit };
}
