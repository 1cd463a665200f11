//! A ceremony's lifetime, timed by the server's clock.

use std::sync::Arc;
use std::time::Duration;

use webauthn_rs::prelude::RegisterPublicKeyCredential;

use super::{Enrolment, PasskeyError, Passkeys, SetupToken};
use crate::audit::Audit;
use crate::clock::{Clock, ClockedTokens};
use crate::presence::CEREMONY_LIFETIME_SECS;
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
async fn finish_with_a_made_up_credential(passkeys: &Passkeys, ceremony_id: &str) -> PasskeyError {
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
    assert!(
        matches!(found, PasskeyError::Denied("passkey registration failed")),
        "{found:?}"
    );

    clock.advance(Duration::from_secs(1));
    let expired = finish_with_a_made_up_credential(&passkeys, &second).await;
    assert!(
        matches!(
            expired,
            PasskeyError::Unusable("the passkey challenge expired; try again")
        ),
        "{expired:?}"
    );
}
