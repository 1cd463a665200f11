//! The error returned while building the layer. Never seen by HTTP clients.

use crate::store::StoreError;

/// Why the layer could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration field is wrong.
    #[error("invalid configuration: `{field}` {reason}")]
    InvalidConfig {
        /// The field, as named in [`OAuthConfig`](crate::OAuthConfig).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A store could not be opened (for example a corrupt passkey file).
    #[error("could not open the store: {0}")]
    Store(#[from] StoreError),
}

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: &str) -> Self {
        Self::InvalidConfig {
            field,
            reason: reason.to_owned(),
        }
    }
}
