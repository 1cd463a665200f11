//! The three storage traits, their records, and the one error type.
//!
//! The core holds `Arc<dyn TokenStore>`, `Arc<dyn ClientStore>` and `Arc<dyn PasskeyStore>`, so an
//! application chooses its backend at run time. Every backend obeys the same rules, which the
//! conformance suite (feature `test-suite`) checks:
//!
//! - absence is `Ok(None)`; an `Err` means the backend failed;
//! - reads filter expired records themselves and never rely on eviction timing;
//! - an insert never overwrites;
//! - consume is atomic: exactly one caller wins;
//! - raw secrets never reach a store: tokens, codes and client secrets arrive as [`TokenHash`]es.
//!
//! # Writing your own backend
//!
//! Implement the traits with `#[async_trait]`, then, with the `test-suite` feature, run the
//! [`conformance`] suite from your tests; it checks every MUST above with one test per rule:
//!
//! ```text
//! mcp_oauth::token_store_conformance!(|| async { MyStore::connect().await });
//! mcp_oauth::client_store_conformance!(|| async { MyStore::connect().await });
//! mcp_oauth::passkey_store_conformance!(|| async { MyStore::connect().await });
//! ```

mod client;
mod error;
mod passkey;
mod token;
mod types;

#[cfg(any(test, feature = "test-suite"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-suite")))]
pub mod conformance;

pub use client::{AssertionKeys, ClientKeys, ClientRecord, ClientStore, TokenEndpointAuthMethod};
pub use error::{BoxError, StoreError};
pub use passkey::{LAST_USED_RESOLUTION_SECS, PasskeyChange, PasskeyRecord, PasskeyStore};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) use passkey::{MAX_SWAP_ATTEMPTS, apply_to_json};
pub use token::{Consumed, TokenKind, TokenRecord, TokenStore};
pub use types::{GrantId, TokenHash, UnixTime};
