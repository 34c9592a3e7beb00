ALTER TABLE "conversation_items" ADD COLUMN "item_id" text;--> statement-breakpoint
ALTER TABLE "conversation_items" ADD COLUMN "origin" text DEFAULT 'input' NOT NULL;--> statement-breakpoint
CREATE INDEX "conversation_items_item_id_idx" ON "conversation_items" USING btree ("item_id") WHERE "conversation_items"."item_id" is not null;--> statement-breakpoint
-- Rows written before this migration: a response's answer was its last assistant item.
UPDATE "conversation_items" ci SET "origin" = 'output'
WHERE ci."role" = 'assistant' AND ci."response_id" IS NOT NULL
  AND ci."position" = (SELECT max(x."position") FROM "conversation_items" x WHERE x."response_id" = ci."response_id");
