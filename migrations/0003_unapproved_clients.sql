-- mcp-oauth SqliteStore, schema version 2: registrations nobody approved are capped.
-- Applied once by `SqliteStore::migrate()`. Never edit this file once released.

-- 1 while the owner has never approved the client: such rows count toward the cap on unapproved
-- registrations. Rows from before this migration keep 0 (they were admitted under the old rules
-- and keep their lifetime); their records carry no `approved_at`, so the console's "Remove
-- never-approved clients" still removes those that hold no grant.
ALTER TABLE mcp_oauth_clients ADD COLUMN unapproved INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS mcp_oauth_clients_unapproved
    ON mcp_oauth_clients (unapproved, expires_at);
