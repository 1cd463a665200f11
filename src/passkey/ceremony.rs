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

#[cfg(test)]
#[cfg(feature = "memory")]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use webauthn_rs::prelude::RegisterPublicKeyCredential;

    use super::super::{Enrolment, Passkeys, SetupToken};
    use super::*;
    use crate::audit::Audit;
    use crate::clock::{Clock, ClockedTokens};
    use crate::{ManualClock, MemoryStore};

    const SETUP_TOKEN: &str = "setup-token-for-tests-0123456789";

    /// The passkey module over a memory store, on `clock`.
    fn passkeys(clock: &ManualClock) -> Passkeys {
        let memory = MemoryStore::new();
        let clock = Clock::Manual(clock.clone());
        let tokens = ClockedTokens::new(Arc::new(memory.clone()), clock.clone());
        Passkeys::new(
            &url::Url::parse("http://localhost:8080").unwrap(),
            "Ceremony Test",
            Arc::new(memory),
            Arc::new(tokens),
            SetupToken::new(Some(SETUP_TOKEN)),
            Audit::new(None, clock.clone()),
            clock,
        )
        .unwrap()
    }

    /// Start registering a passkey with the setup token; returns the ceremony id.
    async fn start(passkeys: &Passkeys) -> String {
        passkeys
            .start_registration(Enrolment::SetupToken(SETUP_TOKEN.into()), None)
            .await
            .unwrap()
            .ceremony_id
    }

    /// Finish a registration with a credential no authenticator made: refused by verification if
    /// the ceremony was found, and before that if it was not.
    async fn finish_with_a_made_up_credential(
        passkeys: &Passkeys,
        ceremony_id: &str,
    ) -> OAuthError {
        let credential: RegisterPublicKeyCredential = serde_json::from_value(serde_json::json!({
            "id": "AAAA",
            "rawId": "AAAA",
            "response": { "attestationObject": "AAAA", "clientDataJSON": "AAAA" },
            "type": "public-key",
        }))
        .unwrap();
        passkeys
            .finish_registration(ceremony_id, &credential)
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn a_ceremony_lasts_its_lifetime_by_the_servers_clock() {
        let clock = ManualClock::new();
        // Well ahead of the system clock: a ceremony timed by the system clock would be over.
        clock.advance(Duration::from_secs(3_600));
        let passkeys = passkeys(&clock);
        let (first, second) = (start(&passkeys).await, start(&passkeys).await);

        clock.advance(Duration::from_secs(CEREMONY_LIFETIME_SECS - 1));
        let found = finish_with_a_made_up_credential(&passkeys, &first).await;
        assert_eq!(found.description, "passkey registration failed", "{found}");

        clock.advance(Duration::from_secs(1));
        let expired = finish_with_a_made_up_credential(&passkeys, &second).await;
        assert_eq!(
            (expired.code.as_str(), &*expired.description),
            (
                "invalid_request",
                "the passkey challenge expired; try again"
            )
        );
    }
}
