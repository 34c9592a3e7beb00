CREATE TABLE "instances" (
	"id" uuid PRIMARY KEY NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"heartbeat_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "responses" ADD COLUMN "instance_id" uuid;--> statement-breakpoint
ALTER TABLE "responses" ADD COLUMN "pending" jsonb;--> statement-breakpoint
CREATE INDEX "responses_in_progress_idx" ON "responses" USING btree ("instance_id") WHERE "responses"."status" = 'in_progress';