CREATE TABLE "usage_totals" (
	"subject_type" text NOT NULL,
	"subject_id" uuid NOT NULL,
	"window" text NOT NULL,
	"window_start" date NOT NULL,
	"input_tokens" bigint DEFAULT 0 NOT NULL,
	"output_tokens" bigint DEFAULT 0 NOT NULL,
	"total_tokens" bigint DEFAULT 0 NOT NULL,
	"requests" integer DEFAULT 0 NOT NULL,
	CONSTRAINT "usage_totals_subject_type_subject_id_window_window_start_pk" PRIMARY KEY("subject_type","subject_id","window","window_start")
);
--> statement-breakpoint
ALTER TABLE "conversation_items" ADD COLUMN "tokens" integer DEFAULT 0 NOT NULL;