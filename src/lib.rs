#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod audit;
#[cfg(feature = "cimd")]
mod cimd;
mod clock;
pub mod config;
pub mod console;
mod error;
/// Crate-private rules exposed for `fuzz/` and property tests; not a supported API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod layer;
mod oauth;
mod pages;
mod passkey;
pub mod store;

// Backends live outside `src/` (DESIGN §2) but compile into this one crate, so sqlx's migrations and
// the traits never drift apart. This is the only `#[path]` in the crate.
#[path = "../storage-backends/mod.rs"]
pub mod backends;

use axum::Router;

pub use audit::AuditEvent;
pub use clock::ManualClock;
pub use config::{
    FailureLimit, MAX_CODE_LIFETIME_SECS, MAX_LONG_LIFETIME_SECS, MAX_RATE_LIMIT,
    MAX_REFRESH_GRACE_SECS, MAX_SHORT_LIFETIME_SECS, MAX_TOKEN_LIFETIME_SECS, OAuthConfig,
    RateLimit, RateLimits,
};
pub use error::Error;
pub use http::{Bearer, BearerLayer};
pub use layer::{McpOAuth, McpOAuthBuilder};
pub use oauth::{ErrorCode, McpScopes, OAuthError, TokenInfo};
pub use store::{ClientStore, PasskeyStore, TokenStore};
pub use webauthn_rs;

pub use backends::PasskeyFileStore;
#[cfg(feature = "redis")]
pub use backends::RedisStore;
#[cfg(feature = "sqlite")]
pub use backends::SqliteStore;
#[cfg(feature = "memory")]
pub use backends::{MemoryLimits, MemoryStore};

/// Put `mcp_routes` behind a complete OAuth 2.1 layer with the default stores: tokens and clients in
/// memory, passkeys in the JSON file at `config.passkey_store_path`.
///
/// # Errors
///
/// [`Error::InvalidConfig`] naming a bad field, or [`Error::Store`] if the passkey file is corrupt.
pub fn build_oauth_router(config: OAuthConfig, mcp_routes: Router) -> Result<Router, Error> {
    Ok(McpOAuth::builder(config).build()?.router(mcp_routes))
}
