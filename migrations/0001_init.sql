-- mcp-oauth SqliteStore, schema version 1.
-- Applied once by `SqliteStore::migrate()`, tracked in `_mcp_oauth_migrations`. Never edit this
-- file once released (its checksum is recorded); add `0002_….sql` instead.

-- Every short-lived secret (TokenStore), keyed by kind and the SHA-256 of the secret.
CREATE TABLE IF NOT EXISTS mcp_oauth_tokens (
    kind        TEXT    NOT NULL,            -- TokenKind::as_str
    hash        BLOB    NOT NULL,            -- SHA-256 of the secret, 32 bytes
    grant_id    TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,            -- Unix seconds; rows at or before now are absent
    payload     BLOB    NOT NULL,            -- opaque, stored verbatim
    uses        INTEGER NOT NULL DEFAULT 0,  -- consume count: the consume that makes it 1 wins
    consumed_at INTEGER,                     -- Unix seconds of the winning consume
    PRIMARY KEY (kind, hash)
);
CREATE INDEX IF NOT EXISTS mcp_oauth_tokens_grant_id ON mcp_oauth_tokens (grant_id);
CREATE INDEX IF NOT EXISTS mcp_oauth_tokens_expires_at ON mcp_oauth_tokens (expires_at);

-- Dynamically registered clients (ClientStore).
CREATE TABLE IF NOT EXISTS mcp_oauth_clients (
    client_id  TEXT    NOT NULL PRIMARY KEY,
    expires_at INTEGER,                      -- Unix seconds; NULL never expires
    record     TEXT    NOT NULL              -- ClientRecord as JSON
);
CREATE INDEX IF NOT EXISTS mcp_oauth_clients_expires_at ON mcp_oauth_clients (expires_at);

-- The owner's passkeys (PasskeyStore).
CREATE TABLE IF NOT EXISTS mcp_oauth_passkeys (
    credential_id TEXT NOT NULL PRIMARY KEY, -- base64url credential id
    record        TEXT NOT NULL              -- PasskeyRecord as JSON
);
