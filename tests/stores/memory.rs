//! The in-memory default.

use mcp_oauth::MemoryStore;

mcp_oauth::token_store_conformance!(|| async { MemoryStore::new() });
mcp_oauth::client_store_conformance!(|| async { MemoryStore::new() });
mcp_oauth::passkey_store_conformance!(|| async { MemoryStore::new() });
