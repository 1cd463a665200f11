//! WebAuthn ceremony state, kept server-side in the token store: single use, short-lived.

use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{DiscoverableAuthentication, Passkey, PasskeyRegistration, Uuid};

use super::PasskeyError;
use crate::store::{
    Consumed, GrantId, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime,
};

/// How long a ceremony may take: webauthn-rs's default authenticator timeout.
pub(crate) const CEREMONY_LIFETIME_SECS: u64 = 300;

/// What an assertion is for. An assertion made for one purpose cannot be spent on another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Purpose {
    /// Approving one pending authorization request (by the hash of its id).
    Approve { request: TokenHash },
    /// Authorising the registration of another passkey.
    Enrol,
    /// Signing in to the owner console.
    Console,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum Ceremony {
    Registration {
        state: PasskeyRegistration,
        user_id: Uuid,
        label: String,
        /// The setup token that authorised it, if it did; still usable when the ceremony finishes.
        setup_token_hash: Option<TokenHash>,
        /// The passkey whose assertion or console session authorised it, if one did; still
        /// registered when the ceremony finishes, or the registration is refused.
        #[serde(default)]
        approved_by: Option<String>,
    },
    Authentication {
        state: DiscoverableAuthentication,
        /// The owner's credentials when the ceremony started, to verify against: kept here, never
        /// sent. (A use recorded meanwhile by another ceremony must not fail this one.)
        credentials: Vec<Passkey>,
        purpose: Purpose,
    },
}

/// Keep a ceremony under `id` (a fresh random secret the caller made) for
/// [`CEREMONY_LIFETIME_SECS`] from `now`, until it is taken or lapses.
pub(crate) async fn save(
    tokens: &dyn TokenStore,
    id: &str,
    now: UnixTime,
    ceremony: &Ceremony,
) -> Result<(), PasskeyError> {
    let payload = serde_json::to_vec(ceremony)
        .map_err(|_| PasskeyError::Internal("could not save the ceremony"))?;
    tokens
        .insert(TokenRecord {
            kind: TokenKind::PasskeyCeremony,
            hash: TokenHash::of(id),
            grant_id: GrantId::generate(),
            expires_at: now.plus(CEREMONY_LIFETIME_SECS),
            payload,
        })
        .await?;
    Ok(())
}

/// Use up the ceremony kept under `id`.
pub(crate) async fn take(
    tokens: &dyn TokenStore,
    id: &str,
    now: UnixTime,
) -> Result<Ceremony, PasskeyError> {
    match tokens
        .consume(TokenKind::PasskeyCeremony, &TokenHash::of(id), now)
        .await?
    {
        Some(Consumed::First(record)) => serde_json::from_slice(&record.payload)
            .map_err(|e| StoreError::codec("ceremony", e).into()),
        Some(Consumed::Replayed { .. }) => Err(PasskeyError::Unusable(
            "this passkey challenge was already used; try again",
        )),
        None => Err(PasskeyError::Unusable(
            "the passkey challenge expired; try again",
        )),
    }
}

pub(crate) fn mismatch() -> PasskeyError {
    PasskeyError::Unusable("this passkey challenge was started for something else")
}
