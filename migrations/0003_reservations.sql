CREATE TABLE "reservations" (
	"id" uuid PRIMARY KEY NOT NULL,
	"estimate" bigint NOT NULL,
	"held" jsonb NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "reservations_expires_idx" ON "reservations" USING btree ("expires_at");