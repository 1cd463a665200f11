//! Owner console sessions: created by a passkey assertion, kept server-side in the token store
//! under the hash of a random token that lives only in an HttpOnly, SameSite=Strict cookie.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{SignIn, Verifier};
use crate::rules::secret::{self, Secret};
use crate::store::{GrantId, StoreError, TokenHash, TokenKind, TokenRecord};

/// How long a sign-in lasts; then the owner signs in again with a passkey.
pub(crate) const SESSION_LIFETIME_SECS: u64 = 15 * 60;

/// What a session remembers.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    /// The passkey that signed in; the session ends if it is removed.
    credential_id: String,
}

/// A live console session: its cookie value is one the store holds, unexpired, and the passkey
/// that signed in is still registered. Only the session lookup (`find`) makes one (no
/// constructor, no `Clone`, no `Deserialize`), so an operation that takes it, such as enrolling
/// another passkey from the console, cannot run without the lookup.
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
#[derive(Debug)]
pub struct LiveSession {
    token: Secret,
    credential_id: String,
}

impl LiveSession {
    /// The passkey that signed in.
    pub(crate) fn credential_id(&self) -> &str {
        &self.credential_id
    }

    /// The CSRF token of this session.
    pub(crate) fn csrf_token(&self) -> Secret {
        csrf_token(self.token.expose())
    }

    /// Whether `presented` is this session's CSRF token, in constant time.
    pub(crate) fn csrf_matches(&self, presented: &str) -> bool {
        csrf_matches(self.token.expose(), presented)
    }
}

/// Start a session for the owner who just signed in (the sign-in is spent); returns the cookie
/// value.
pub(crate) async fn create(verifier: &Verifier, signed_in: SignIn) -> Result<String, StoreError> {
    let token = secret::generate(secret::prefix::CONSOLE_SESSION);
    let stored = Stored {
        credential_id: signed_in.credential_id().to_owned(),
    };
    verifier
        .tokens()
        .insert(TokenRecord {
            kind: TokenKind::ConsoleSession,
            hash: TokenHash::of(&token),
            grant_id: GrantId::generate(),
            expires_at: verifier.now().plus(SESSION_LIFETIME_SECS),
            payload: serde_json::to_vec(&stored).unwrap_or_default(),
        })
        .await?;
    Ok(token)
}

/// The live session behind a cookie value, if any. A session ends with the passkey that made it:
/// once that passkey is removed, its sessions are not found.
pub(crate) async fn find(
    verifier: &Verifier,
    token: &str,
) -> Result<Option<LiveSession>, StoreError> {
    let Some(record) = verifier
        .tokens()
        .get(TokenKind::ConsoleSession, &TokenHash::of(token))
        .await?
    else {
        return Ok(None);
    };
    let Ok(stored) = serde_json::from_slice::<Stored>(&record.payload) else {
        return Ok(None);
    };
    if !verifier.still_registered(&stored.credential_id).await? {
        return Ok(None);
    }
    Ok(Some(LiveSession {
        token: token.into(),
        credential_id: stored.credential_id,
    }))
}

/// End a session.
pub(crate) async fn end(verifier: &Verifier, token: &str) -> Result<(), StoreError> {
    verifier
        .tokens()
        .delete(TokenKind::ConsoleSession, &TokenHash::of(token))
        .await
        .map(|_| ())
}

/// The CSRF token for a session: derived from the session token, which only the cookie carries,
/// so a page on another site can neither read nor compute it.
fn csrf_token(session_token: &str) -> Secret {
    let digest = Sha256::new()
        .chain_update(b"mcp-oauth console csrf\0")
        .chain_update(session_token.as_bytes())
        .finalize();
    TokenHash(digest.into()).to_hex().into()
}

/// Whether `presented` is the session's CSRF token, in constant time.
fn csrf_matches(session_token: &str, presented: &str) -> bool {
    let expected = csrf_token(session_token);
    expected
        .expose()
        .as_bytes()
        .ct_eq(presented.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use webauthn_rs::prelude::{Url, WebauthnBuilder};

    use std::time::Duration;

    use super::*;
    use crate::ManualClock;
    use crate::audit::Audit;
    use crate::backends::MemoryStore;
    use crate::clock::{Clock, ClockedTokens};
    use crate::store::PasskeyStore;
    use crate::store::conformance::passkey_record;

    /// A session as `create` stores it at the verifier's time, signed in with `credential_id`.
    /// (Only the assertion check makes the `SignIn` that `create` takes; the test writes the
    /// stored form directly.)
    async fn stored_session(verifier: &Verifier, credential_id: &str) -> String {
        let token = secret::generate(secret::prefix::CONSOLE_SESSION);
        let stored = Stored {
            credential_id: credential_id.to_owned(),
        };
        verifier
            .tokens()
            .insert(TokenRecord {
                kind: TokenKind::ConsoleSession,
                hash: TokenHash::of(&token),
                grant_id: GrantId::generate(),
                expires_at: verifier.now().plus(SESSION_LIFETIME_SECS),
                payload: serde_json::to_vec(&stored).unwrap(),
            })
            .await
            .unwrap();
        token
    }

    /// A verifier over one memory store, seen through `clock` as the server sees it.
    fn verifier(store: &Arc<MemoryStore>, clock: Clock) -> Verifier {
        let url = Url::parse("http://localhost:8080").unwrap();
        let webauthn = WebauthnBuilder::new("localhost", &url)
            .unwrap()
            .build()
            .unwrap();
        let tokens = Arc::new(ClockedTokens::new(store.clone(), clock.clone()));
        Verifier::new(webauthn, store.clone(), tokens, Audit::default(), clock)
    }

    #[tokio::test]
    async fn a_session_ends_after_its_lifetime_by_the_servers_clock() {
        let store = Arc::new(MemoryStore::new());
        let clock = ManualClock::new();
        // Well ahead of the system clock: a session timed by the system clock would be over.
        clock.advance(Duration::from_secs(3_600));
        let verifier = verifier(&store, Clock::Manual(clock.clone()));
        let record = passkey_record();
        PasskeyStore::insert(&*store, record.clone()).await.unwrap();
        let token = stored_session(&verifier, &record.credential_id).await;

        clock.advance(Duration::from_secs(SESSION_LIFETIME_SECS - 1));
        let live = find(&verifier, &token).await.unwrap();
        assert_eq!(
            live.expect("still signed in").credential_id(),
            record.credential_id
        );
        clock.advance(Duration::from_secs(1));
        assert!(
            find(&verifier, &token).await.unwrap().is_none(),
            "signed out"
        );
    }

    #[tokio::test]
    async fn a_session_ends_with_the_passkey_that_signed_in() {
        let store = Arc::new(MemoryStore::new());
        let verifier = verifier(&store, Clock::default());
        let (kept, removed) = (passkey_record(), passkey_record());
        for record in [&kept, &removed] {
            PasskeyStore::insert(&*store, record.clone()).await.unwrap();
        }
        let with_kept = stored_session(&verifier, &kept.credential_id).await;
        let with_removed = stored_session(&verifier, &removed.credential_id).await;
        assert!(
            PasskeyStore::delete(&*store, &removed.credential_id)
                .await
                .unwrap()
        );

        let live = find(&verifier, &with_kept).await.unwrap();
        assert_eq!(
            live.expect("its passkey is registered").credential_id(),
            kept.credential_id
        );
        assert!(
            find(&verifier, &with_removed).await.unwrap().is_none(),
            "a session whose passkey was removed is not live"
        );
        assert!(find(&verifier, "mcp_os_unknown").await.unwrap().is_none());
    }

    #[test]
    fn csrf_tokens_are_per_session_and_checked_exactly() {
        let a = csrf_token("mcp_os_a");
        assert_ne!(a, csrf_token("mcp_os_b"));
        let a = a.expose();
        assert!(csrf_matches("mcp_os_a", a));
        assert!(!csrf_matches("mcp_os_b", a));
        assert!(!csrf_matches("mcp_os_a", &a[..63]));
        assert!(!csrf_matches("mcp_os_a", ""));
    }
}
