-- mcp-oauth SqliteStore, schema version 2: setup tokens stay used for ever.
-- Never edit this file once released (its checksum is recorded); add `0003_….sql` instead.

-- Every setup token that registered a passkey (PasskeyStore::setup_token_used), kept when the
-- passkey is removed: a setup token that worked again would let whoever holds it register a passkey.
CREATE TABLE IF NOT EXISTS mcp_oauth_used_setup_tokens (
    hash TEXT NOT NULL PRIMARY KEY           -- SHA-256 of the setup token, lower-case hex
);

-- Uses recorded before this table existed: on the passkeys registered with a setup token, and as
-- "setup_use" markers in the token table (stored there by earlier versions).
INSERT OR IGNORE INTO mcp_oauth_used_setup_tokens (hash)
SELECT json_extract(record, '$.setup_token_hash') FROM mcp_oauth_passkeys
WHERE json_extract(record, '$.setup_token_hash') IS NOT NULL;

INSERT OR IGNORE INTO mcp_oauth_used_setup_tokens (hash)
SELECT lower(hex(hash)) FROM mcp_oauth_tokens WHERE kind = 'setup_use';
