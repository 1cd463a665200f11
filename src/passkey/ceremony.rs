//! WebAuthn ceremony state, kept server-side in the token store: single use, short-lived.

use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{DiscoverableAuthentication, Passkey, PasskeyRegistration, Uuid};

use super::CEREMONY_LIFETIME_SECS;
use crate::oauth::{OAuthError, secret};
use crate::store::{Consumed, GrantId, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime};

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
pub(super) enum Ceremony {
    Registration {
        state: PasskeyRegistration,
        user_id: Uuid,
        label: String,
        setup_token_hash: Option<TokenHash>,
    },
    Authentication {
        state: DiscoverableAuthentication,
        /// The owner's credentials when the ceremony started, to verify against: kept here, never
        /// sent. (A use recorded meanwhile by another ceremony must not fail this one.)
        credentials: Vec<Passkey>,
        purpose: Purpose,
    },
}

/// Keep a ceremony's state for [`CEREMONY_LIFETIME_SECS`] from `now`; returns its id.
pub(super) async fn save(
    tokens: &dyn TokenStore,
    now: UnixTime,
    ceremony: &Ceremony,
) -> Result<String, OAuthError> {
    let id = secret::generate(secret::prefix::CEREMONY);
    let payload = serde_json::to_vec(ceremony).map_err(|_| {
        OAuthError::new(
            crate::oauth::ErrorCode::ServerError,
            "could not save the ceremony",
        )
    })?;
    tokens
        .insert(TokenRecord {
            kind: TokenKind::PasskeyCeremony,
            hash: TokenHash::of(&id),
            grant_id: GrantId::generate(),
            expires_at: now.plus(CEREMONY_LIFETIME_SECS),
            payload,
        })
        .await?;
    Ok(id)
}

pub(super) async fn take(tokens: &dyn TokenStore, id: &str) -> Result<Ceremony, OAuthError> {
    match tokens
        .consume(TokenKind::PasskeyCeremony, &TokenHash::of(id))
        .await?
    {
        Some(Consumed::First(record)) => serde_json::from_slice(&record.payload)
            .map_err(|e| crate::store::StoreError::codec("ceremony", e).into()),
        Some(Consumed::Replayed { .. }) => Err(OAuthError::invalid_request(
            "this passkey challenge was already used; try again",
        )),
        None => Err(OAuthError::invalid_request(
            "the passkey challenge expired; try again",
        )),
    }
}

pub(super) fn mismatch() -> OAuthError {
    OAuthError::invalid_request("this passkey challenge was started for something else")
}
