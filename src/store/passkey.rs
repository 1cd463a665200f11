use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{AuthenticationResult, Passkey, Uuid};

use super::{StoreError, TokenHash, UnixTime};

/// One of the owner's registered passkeys.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PasskeyRecord {
    /// The credential id, base64url without padding. The key.
    pub credential_id: String,
    /// The WebAuthn user handle of the owner.
    pub user_id: Uuid,
    /// The credential itself: public key, sign counter, backup state.
    pub passkey: Passkey,
    /// A name the owner gave it.
    pub label: String,
    /// When it was registered.
    pub created_at: UnixTime,
    /// When it last approved something.
    pub last_used_at: Option<UnixTime>,
    /// The hash of the setup token it was registered with, if any. Inserting the record uses that
    /// setup token up for good (see [`PasskeyStore::insert`]).
    pub setup_token_hash: Option<TokenHash>,
}

/// Storage for the owner's passkeys.
///
/// # Contract
///
/// Implementations MUST:
///
/// - make [`insert`](PasskeyStore::insert) reject a credential id that is already registered with
///   [`StoreError::AlreadyExists`] (WebAuthn requires that a credential is never registered twice),
///   atomically under concurrency;
/// - make [`insert`](PasskeyStore::insert) of a record carrying a `setup_token_hash` record that
///   setup token as used, in the same atomic step, and reject the insert with
///   [`StoreError::AlreadyExists`] if it was used already: of concurrent registrations with one
///   setup token exactly one succeeds, and a failed insert uses up nothing;
/// - keep a used setup token used for ever: [`setup_token_used`](PasskeyStore::setup_token_used)
///   answers `true` however the passkey it registered is later updated or deleted (a setup token
///   that worked again would let whoever still holds it register a passkey and approve anything);
/// - make [`modify`](PasskeyStore::modify) apply its change to the record as stored at that moment,
///   atomically (under the lock, in a compare-and-swap, in a script): never to a copy read earlier,
///   so that of a use and a rename racing neither is lost, and the sign counter never goes back;
///   and write nothing when [`PasskeyChange::apply`] reports no change;
/// - persist every change before returning `Ok` if the backend is durable.
#[async_trait]
pub trait PasskeyStore: Send + Sync + 'static {
    /// All registered passkeys (an owner has few).
    async fn list(&self) -> Result<Vec<PasskeyRecord>, StoreError>;

    /// One passkey by credential id.
    async fn get(&self, credential_id: &str) -> Result<Option<PasskeyRecord>, StoreError>;

    /// Register a new passkey, and use up the setup token it carries, if any: both or neither.
    async fn insert(&self, record: PasskeyRecord) -> Result<(), StoreError>;

    /// Whether a setup token with this hash has registered a passkey, ever, including one since
    /// deleted.
    async fn setup_token_used(&self, hash: &TokenHash) -> Result<bool, StoreError>;

    /// Apply `change` to a passkey's record as stored now, atomically, with
    /// [`PasskeyChange::apply`]. `None`: no such passkey. `Some(false)`: nothing changed, and
    /// nothing was written. `Some(true)`: the change is stored.
    async fn modify(
        &self,
        credential_id: &str,
        change: &PasskeyChange,
    ) -> Result<Option<bool>, StoreError>;

    /// Remove a passkey. Idempotent; returns whether something was removed.
    async fn delete(&self, credential_id: &str) -> Result<bool, StoreError>;
}

/// How often a passkey's `last_used_at` moves: a use within this many seconds of the recorded one
/// changes nothing, so approvals in a row with an authenticator that keeps its counter at 0 (most
/// synced passkeys do) write nothing.
pub const LAST_USED_RESOLUTION_SECS: u64 = 60;

/// A change to one passkey, which [`PasskeyStore::modify`] applies to the record as stored.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PasskeyChange {
    /// The passkey signed a verified assertion at `at`.
    Used {
        /// What webauthn-rs verified: the sign counter and backup state.
        result: AuthenticationResult,
        /// When.
        at: UnixTime,
    },
    /// The owner gave it a new label.
    Renamed {
        /// The new label.
        label: String,
    },
}

impl PasskeyChange {
    /// Apply the change to `record`; whether anything changed. A use moves the counter forward
    /// only (a use recorded meanwhile with a higher counter stays), takes the backup state, and
    /// moves `last_used_at` by [`LAST_USED_RESOLUTION_SECS`] or more.
    pub fn apply(&self, record: &mut PasskeyRecord) -> bool {
        match self {
            Self::Used { result, at } => {
                let credential = record.passkey.update_credential(result) == Some(true);
                let later = record
                    .last_used_at
                    .is_none_or(|last| at.0 >= last.0.saturating_add(LAST_USED_RESOLUTION_SECS));
                if later {
                    record.last_used_at = Some(*at);
                }
                credential || later
            }
            Self::Renamed { label } => {
                let renamed = record.label != *label;
                record.label.clone_from(label);
                renamed
            }
        }
    }
}

/// [`PasskeyChange::apply`] to a record stored as JSON: the new JSON, or `None` when nothing
/// changed. For backends that compare and swap the stored text.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) fn apply_to_json(
    stored: &str,
    change: &PasskeyChange,
    backend: &'static str,
) -> Result<Option<String>, StoreError> {
    let mut record: PasskeyRecord =
        serde_json::from_str(stored).map_err(|e| StoreError::codec(backend, e))?;
    if !change.apply(&mut record) {
        return Ok(None);
    }
    serde_json::to_string(&record)
        .map(Some)
        .map_err(|e| StoreError::codec(backend, e))
}

/// How many times a backend retries a compare-and-swap that lost to another writer before it gives
/// up: each loss means another change landed, so this is reached only under a storm of changes to
/// one passkey.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) const MAX_SWAP_ATTEMPTS: usize = 64;
