use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{GrantId, StoreError, TokenHash, UnixTime};

/// What a [`TokenRecord`] is. Kinds are separate key spaces: the same hash under two kinds is two records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TokenKind {
    /// A validated authorization request waiting for the owner's decision on the consent page.
    AuthorizationRequest,
    /// An authorization code.
    AuthorizationCode,
    /// An access token.
    AccessToken,
    /// A refresh token.
    RefreshToken,
    /// The access and refresh tokens a refresh token was rotated into, sealed with a key only that
    /// refresh token yields, keyed by its hash and kept for the grace window, so a retry gets the
    /// same pair back.
    RefreshSuccessor,
    /// WebAuthn ceremony state (registration or authentication), single use.
    PasskeyCeremony,
    /// A marker that a setup token has been used, written by earlier versions of this crate (uses
    /// are now recorded by the [`PasskeyStore`](super::PasskeyStore)). No longer written; still
    /// read, so a marker left in a persistent store keeps its token used.
    SetupTokenUse,
    /// What one approval granted, for the owner console: one per grant, keyed by the hash of the
    /// grant id, refreshed whenever tokens are issued in the grant.
    Grant,
    /// A marker that a grant was revoked, so that tokens minted while the revocation ran are
    /// caught. Stored under a grant id of its own, so revoking does not remove it.
    GrantRevoked,
    /// An owner console session, created by a passkey assertion.
    ConsoleSession,
    /// A marker that the owner deleted a client: every grant of the client approved until then is
    /// revoked, including one whose record was being rewritten while the console listed them.
    /// Keyed by the hash of the client id; stored under a grant id of its own.
    ClientRevoked,
    /// A client assertion's `jti` (RFC 7523 §3), with its client id, kept until the assertion
    /// expires so that it is used once, across every instance sharing the store.
    ClientAssertion,
    /// One of a machine client's places for a live token, taken when its token is minted and
    /// held until that token expires or its grant is revoked: a machine cannot hold more live
    /// tokens than it has places. Keyed by the hash of the client id and the place's number.
    MachineSlot,
}

impl TokenKind {
    /// Every kind, for backends that iterate key spaces.
    pub const ALL: &'static [TokenKind] = &[
        TokenKind::AuthorizationRequest,
        TokenKind::AuthorizationCode,
        TokenKind::AccessToken,
        TokenKind::RefreshToken,
        TokenKind::RefreshSuccessor,
        TokenKind::PasskeyCeremony,
        TokenKind::SetupTokenUse,
        TokenKind::Grant,
        TokenKind::GrantRevoked,
        TokenKind::ConsoleSession,
        TokenKind::ClientRevoked,
        TokenKind::ClientAssertion,
        TokenKind::MachineSlot,
    ];

    /// A short stable name, used in keys and table rows.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::AuthorizationRequest => "authz_request",
            TokenKind::AuthorizationCode => "code",
            TokenKind::AccessToken => "access",
            TokenKind::RefreshToken => "refresh",
            TokenKind::RefreshSuccessor => "refresh_successor",
            TokenKind::PasskeyCeremony => "ceremony",
            TokenKind::SetupTokenUse => "setup_use",
            TokenKind::Grant => "grant",
            TokenKind::GrantRevoked => "grant_revoked",
            TokenKind::ConsoleSession => "console_session",
            TokenKind::ClientRevoked => "client_revoked",
            TokenKind::ClientAssertion => "client_assertion",
            TokenKind::MachineSlot => "machine_slot",
        }
    }

    /// The inverse of [`TokenKind::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.as_str() == name)
    }
}

/// One short-lived secret, keyed by `(kind, hash)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The key space.
    pub kind: TokenKind,
    /// SHA-256 of the secret; the key within the kind.
    pub hash: TokenHash,
    /// The grant this record belongs to; [`TokenStore::revoke_grant`] removes by it.
    pub grant_id: GrantId,
    /// When the record stops existing, absolute.
    pub expires_at: UnixTime,
    /// Opaque bytes written by the protocol core. Backends store and return them verbatim.
    pub payload: Vec<u8>,
}

/// What [`TokenStore::consume`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Consumed {
    /// This call consumed the record; the caller owns it.
    First(TokenRecord),
    /// The record had been consumed before: a replay. The record is returned so the caller can check
    /// who is replaying before acting (for example revoking the grant).
    Replayed {
        /// The record as it was inserted.
        record: TokenRecord,
        /// When the first, winning consume happened: the `now` its caller gave.
        consumed_at: UnixTime,
    },
}

/// Storage for every short-lived secret: pending authorization requests, authorization codes, access
/// and refresh tokens, WebAuthn ceremony state.
///
/// # Contract
///
/// Implementations MUST:
///
/// - treat a record whose `expires_at` is not after the current time as absent in every read
///   (`get`, `consume`), whether or not it has been physically removed yet;
/// - make [`insert`](TokenStore::insert) insert-if-absent: it MUST NOT overwrite an existing live
///   record, and MUST return [`StoreError::AlreadyExists`] instead. Under concurrent inserts of one
///   key, exactly one succeeds. Inserting an already expired record succeeds and is never visible;
/// - make [`consume`](TokenStore::consume) atomic: among any number of concurrent callers, across
///   processes where the backend is shared, exactly one receives [`Consumed::First`]; every later
///   caller receives [`Consumed::Replayed`] until the record expires. A consumed record MUST NOT be
///   returned by [`get`](TokenStore::get);
/// - make [`revoke_grant`](TokenStore::revoke_grant) remove every record of the grant, of every
///   kind, consumed or not, that existed when the call started;
/// - store [`TokenRecord::payload`] byte for byte.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Insert if absent; [`StoreError::AlreadyExists`] if a live record has the same `(kind, hash)`,
    /// consumed or not (a consumed record keeps its key until it expires, so a replay is detected).
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError>;

    /// The live, unconsumed record, or `None`. Has no side effect: this is the bearer hot path.
    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError>;

    /// Atomically mark the record consumed. `None` if absent or expired. `now` is the time of
    /// this consume by the caller's clock: the first consume records it, and every later one
    /// returns it as [`Consumed::Replayed::consumed_at`], so the caller measures how long ago the
    /// first use was by its own clock (the refresh grace window), never the backend's.
    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<Consumed>, StoreError>;

    /// Remove one record, consumed or not. Idempotent; returns whether a live record was removed
    /// (an expired one counts as absent).
    async fn delete(&self, kind: TokenKind, hash: &TokenHash) -> Result<bool, StoreError>;

    /// Remove every record of the grant, of every kind. Returns how many were removed.
    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError>;

    /// Every live record of kind [`TokenKind::Grant`], for the owner console. Called only when the
    /// owner looks, never on a request path, so a scan is acceptable.
    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Physically remove expired records. Backends with native expiry may keep this default.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// How many long-lived records (access and refresh tokens, grants and their markers, a
    /// machine client's places) of a few hundred bytes each this store holds before it makes room
    /// by evicting live ones, if it ever does. The layer refuses to build with machine clients
    /// whose caps together could take more than a quarter of it, so that no machine can push the
    /// owner's tokens out. `None`, the default: the store never evicts a live record.
    fn eviction_capacity(&self) -> Option<u64> {
        None
    }

    /// The backend's name in metrics (`mcp_oauth_store_operation_seconds{backend=…}`): `memory`,
    /// `sqlite`, `redis`, `postgres`; `custom`, the default, for your own.
    fn backend_name(&self) -> &'static str {
        "custom"
    }
}

#[cfg(test)]
mod tests {
    use super::TokenKind;

    /// Each kind's place in [`TokenKind::ALL`]. A new kind does not compile here until it is
    /// given a place, and the test then fails until `ALL` lists it.
    fn place(kind: TokenKind) -> usize {
        match kind {
            TokenKind::AuthorizationRequest => 0,
            TokenKind::AuthorizationCode => 1,
            TokenKind::AccessToken => 2,
            TokenKind::RefreshToken => 3,
            TokenKind::RefreshSuccessor => 4,
            TokenKind::PasskeyCeremony => 5,
            TokenKind::SetupTokenUse => 6,
            TokenKind::Grant => 7,
            TokenKind::GrantRevoked => 8,
            TokenKind::ConsoleSession => 9,
            TokenKind::ClientRevoked => 10,
            TokenKind::ClientAssertion => 11,
            TokenKind::MachineSlot => 12,
        }
    }

    #[test]
    fn all_lists_every_kind_once_and_names_round_trip() {
        let places: Vec<usize> = TokenKind::ALL.iter().map(|&kind| place(kind)).collect();
        assert_eq!(places, (0..=12).collect::<Vec<_>>());
        for &kind in TokenKind::ALL {
            assert_eq!(TokenKind::parse(kind.as_str()), Some(kind));
        }
    }
}
