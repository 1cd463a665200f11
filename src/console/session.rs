//! Owner console sessions: created by a passkey assertion, kept server-side in the token store
//! under the hash of a random token that lives only in an HttpOnly, SameSite=Strict cookie.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::oauth::secret::{self, Secret};
use crate::store::{GrantId, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime};

/// How long a sign-in lasts; then the owner signs in again with a passkey.
pub(crate) const SESSION_LIFETIME_SECS: u64 = 15 * 60;

/// What a session remembers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Session {
    /// The passkey that signed in; the session ends if it is removed.
    pub(crate) credential_id: String,
}

/// Start a session at `now`; returns the cookie value.
pub(crate) async fn create(
    tokens: &dyn TokenStore,
    now: UnixTime,
    credential_id: &str,
) -> Result<String, StoreError> {
    let token = secret::generate(secret::prefix::CONSOLE_SESSION);
    let session = Session {
        credential_id: credential_id.to_owned(),
    };
    tokens
        .insert(TokenRecord {
            kind: TokenKind::ConsoleSession,
            hash: TokenHash::of(&token),
            grant_id: GrantId::generate(),
            expires_at: now.plus(SESSION_LIFETIME_SECS),
            payload: serde_json::to_vec(&session).unwrap_or_default(),
        })
        .await?;
    Ok(token)
}

/// The live session behind a cookie value, if any.
pub(crate) async fn find(
    tokens: &dyn TokenStore,
    token: &str,
) -> Result<Option<Session>, StoreError> {
    let Some(record) = tokens
        .get(TokenKind::ConsoleSession, &TokenHash::of(token))
        .await?
    else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&record.payload).ok())
}

/// End a session.
pub(crate) async fn end(tokens: &dyn TokenStore, token: &str) -> Result<(), StoreError> {
    tokens
        .delete(TokenKind::ConsoleSession, &TokenHash::of(token))
        .await
        .map(|_| ())
}

/// The CSRF token for a session: derived from the session token, which only the cookie carries,
/// so a page on another site can neither read nor compute it.
pub(crate) fn csrf_token(session_token: &str) -> Secret {
    let digest = Sha256::new()
        .chain_update(b"mcp-oauth console csrf\0")
        .chain_update(session_token.as_bytes())
        .finalize();
    TokenHash(digest.into()).to_hex().into()
}

/// Whether `presented` is the session's CSRF token, in constant time.
pub(crate) fn csrf_matches(session_token: &str, presented: &str) -> bool {
    let expected = csrf_token(session_token);
    expected
        .expose()
        .as_bytes()
        .ct_eq(presented.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "memory")]
    #[tokio::test]
    async fn a_session_ends_after_its_lifetime_by_the_servers_clock() {
        use std::sync::Arc;
        use std::time::Duration;

        use crate::clock::{Clock, ClockedTokens};
        use crate::{ManualClock, MemoryStore};

        let clock = ManualClock::new();
        // Well ahead of the system clock: a session timed by the system clock would be over.
        clock.advance(Duration::from_secs(3_600));
        let tokens = ClockedTokens::new(Arc::new(MemoryStore::new()), Clock::Manual(clock.clone()));
        let token = create(&tokens, clock.now(), "credential").await.unwrap();
        clock.advance(Duration::from_secs(SESSION_LIFETIME_SECS - 1));
        let session = find(&tokens, &token)
            .await
            .unwrap()
            .expect("still signed in");
        assert_eq!(session.credential_id, "credential");
        clock.advance(Duration::from_secs(1));
        assert!(find(&tokens, &token).await.unwrap().is_none(), "signed out");
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
