//! Real clients against a live server: the layer and an rmcp Streamable HTTP server listening on
//! a loopback port, reached over HTTP.
//!
//! - `rmcp_sdk`: the official Rust MCP SDK (`rmcp`, feature `auth`) runs its own OAuth client
//!   (discovery from the 401, dynamic registration, PKCE, code exchange, refresh); only the
//!   browser's part, the owner's passkey approval, is done here.
//! - `replays`: the request shapes other clients are known to send (spec-checklist §6.1, §6.3),
//!   each test named after the client it imitates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The flows' software passkey, which holds discoverable credentials.
#[path = "flows/common/soft_key.rs"]
mod soft_key;

// An inline module, so its files live under `tests/clients/`.
mod clients {
    mod live;
    mod replays;
    mod rmcp_machine;
    mod rmcp_sdk;
}
