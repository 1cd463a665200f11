use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{Passkey, Uuid};

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
/// - make [`update`](PasskeyStore::update) replace only an existing record and return `false` for an
///   unknown one;
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

    /// Replace a passkey's record (after use: counter, backup state, last used).
    async fn update(&self, record: PasskeyRecord) -> Result<bool, StoreError>;

    /// Remove a passkey. Idempotent; returns whether something was removed.
    async fn delete(&self, credential_id: &str) -> Result<bool, StoreError>;
}
