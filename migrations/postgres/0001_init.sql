-- mcp-oauth PostgresStore, schema version 1.
-- Applied once by `PostgresStore::migrate()`, tracked in `_mcp_oauth_migrations`. Never edit this
-- file once released (its checksum is recorded); add `0002_….sql` instead.

-- Every short-lived secret (TokenStore), keyed by kind and the SHA-256 of the secret.
CREATE TABLE mcp_oauth_tokens (
    kind        TEXT   NOT NULL,             -- TokenKind::as_str
    hash        BYTEA  NOT NULL,             -- SHA-256 of the secret, 32 bytes
    grant_id    TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL,             -- Unix seconds; rows at or before now are absent
    payload     BYTEA  NOT NULL,             -- opaque, stored verbatim
    uses        BIGINT NOT NULL DEFAULT 0,   -- consume count: the consume that makes it 1 wins
    consumed_at BIGINT,                      -- Unix seconds of the winning consume
    PRIMARY KEY (kind, hash)
);
CREATE INDEX mcp_oauth_tokens_grant_id ON mcp_oauth_tokens (grant_id);
CREATE INDEX mcp_oauth_tokens_expires_at ON mcp_oauth_tokens (expires_at);

-- Registered clients (ClientStore). The record is JSON kept as text, verbatim: JSONB would
-- refuse a "\u0000" escape, which a client's metadata may carry.
CREATE TABLE mcp_oauth_clients (
    client_id  TEXT    NOT NULL PRIMARY KEY,
    expires_at BIGINT,                       -- Unix seconds; NULL never expires
    unapproved BOOLEAN NOT NULL,             -- never approved by the owner: counts toward the cap
    record     TEXT    NOT NULL              -- ClientRecord as JSON
);
CREATE INDEX mcp_oauth_clients_expires_at ON mcp_oauth_clients (expires_at);
CREATE INDEX mcp_oauth_clients_unapproved ON mcp_oauth_clients (expires_at) WHERE unapproved;

-- The owner's passkeys (PasskeyStore), listed in registration order.
CREATE TABLE mcp_oauth_passkeys (
    credential_id TEXT   NOT NULL PRIMARY KEY, -- base64url credential id
    registered    BIGINT GENERATED ALWAYS AS IDENTITY,
    record        TEXT   NOT NULL              -- PasskeyRecord as JSON
);

-- Every setup token that registered a passkey (PasskeyStore::setup_token_used), kept when the
-- passkey is removed: a setup token that worked again would let whoever holds it register a passkey.
CREATE TABLE mcp_oauth_used_setup_tokens (
    hash TEXT NOT NULL PRIMARY KEY           -- SHA-256 of the setup token, lower-case hex
);
