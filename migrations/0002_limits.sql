CREATE TABLE "plans" (
	"name" text PRIMARY KEY NOT NULL,
	"daily_tokens" bigint,
	"monthly_tokens" bigint,
	"user_daily_tokens" bigint,
	"user_monthly_tokens" bigint,
	"requests_per_minute" integer,
	"trial_days" integer,
	"features" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "rate_windows" (
	"key_id" uuid NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"count" integer DEFAULT 0 NOT NULL,
	CONSTRAINT "rate_windows_key_id_window_start_pk" PRIMARY KEY("key_id","window_start")
);
--> statement-breakpoint
ALTER TABLE "organizations" ADD COLUMN "daily_token_limit" bigint;--> statement-breakpoint
ALTER TABLE "organizations" ADD COLUMN "monthly_token_limit" bigint;--> statement-breakpoint
ALTER TABLE "organizations" ADD COLUMN "trial_ends_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "usage_totals" ADD COLUMN "reserved_tokens" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX "rate_windows_start_idx" ON "rate_windows" USING btree ("window_start");