//! What can go wrong in a passkey ceremony, in the passkey modules' own terms; the HTTP layer
//! decides how each answers.

use crate::store::StoreError;

/// Why a passkey ceremony did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PasskeyError {
    /// The owner's presence was not shown: a wrong, forged or stranger's passkey, a removed one, a
    /// wrong or used setup token, no passkey at all. Counts against the failure budget.
    #[error("{0}")]
    Denied(&'static str),
    /// The ceremony cannot be used as sent: expired, replayed, started for something else, or the
    /// passkey is already registered.
    #[error("{0}")]
    Unusable(&'static str),
    /// The relying party could not do its part (logged where it happened).
    #[error("{0}")]
    Internal(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
