#![doc = include_str!("../README.md")]
//!
//! # Module map
//!
//! Dependencies point one way, down this list; modules on one line may use each other only
//! without forming a cycle. `cargo test --test architecture` checks it from the source.
//!
//! | layer | modules | job |
//! |---|---|---|
//! | entry points | `mcp_oauth` ([`McpOAuth`], its builder), `http` (axum handlers, router, [`BearerLayer`], rate limits) | assemble the parts and speak HTTP |
//! | features | `pages` (HTML), [`console`] (the owner's operations), `passkey` (WebAuthn ceremonies, enrolment, the setup token), `cimd` (client metadata documents) | what the owner and clients see |
//! | protocol | `oauth` | the OAuth rules, no HTTP framework |
//! | the owner's presence | `presence` (the passkey assertion check, the proofs it alone makes, console sessions) | what approving, signing in and enrolling require |
//! | shared rules | `audit` (events, the connection doctor), [`config`], `error`, `paths` (every route's path, once), `rules` (secrets, redirect URIs, limits), `clock`, `caching` ([`CachingStore`], in front of any token store), `telemetry` (metrics) | used everywhere, depend on nothing above the store |
//! | storage | [`store`] (the traits and records), [`backends`] (memory, SQLite, PostgreSQL, Redis, the passkey file; they use `store` alone) | keep state |
#![cfg_attr(docsrs, feature(doc_cfg))]

mod audit;
#[cfg(feature = "caching")]
mod caching;
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
mod mcp_oauth;
mod oauth;
mod pages;
mod passkey;
mod paths;
mod presence;
mod rules;
pub mod store;
mod telemetry;

// Backends live outside `src/` but compile into this one crate, so sqlx's migrations and
// the traits never drift apart. This is the only `#[path]` in the crate.
#[path = "../storage-backends/mod.rs"]
pub mod backends;

use axum::Router;

pub use audit::AuditEvent;
#[cfg(feature = "caching")]
pub use caching::CachingStore;
pub use clock::ManualClock;
pub use config::{
    FailureLimit, MAX_CODE_LIFETIME_SECS, MAX_LONG_LIFETIME_SECS, MAX_RATE_LIMIT,
    MAX_REFRESH_GRACE_SECS, MAX_SHORT_LIFETIME_SECS, MAX_TOKEN_LIFETIME_SECS, MachineClient,
    OAuthConfig, RateLimit, RateLimits,
};
pub use error::Error;
pub use http::{Bearer, BearerLayer};
pub use mcp_oauth::{McpOAuth, McpOAuthBuilder};
pub use oauth::{ScopePolicy, TokenInfo, TokenSubject};
pub use store::{ClientStore, PasskeyStore, TokenStore};
pub use webauthn_rs;

pub use backends::PasskeyFileStore;
#[cfg(feature = "postgres")]
pub use backends::PostgresStore;
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
