//! The setup token that authorises registering a passkey without an existing one.

use crate::oauth::secret::{self, Secret};
use crate::store::{GrantId, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime};

/// How long the "used" marker of a setup token is kept: long enough to outlive any deployment of
/// a configured token. Passkey records also remember the token they were registered with.
const USED_MARKER_SECS: u64 = 10 * 365 * 24 * 3600;

/// The setup token: configured, or generated at start.
#[derive(Clone, Debug)]
pub(crate) struct SetupToken {
    token: Secret,
    hash: TokenHash,
    generated: bool,
}

impl SetupToken {
    /// The configured token, or a freshly generated one.
    pub(crate) fn new(configured: Option<&str>) -> Self {
        let (token, generated) = match configured {
            Some(token) => (token.to_owned(), false),
            None => (secret::generate(secret::prefix::SETUP_TOKEN), true),
        };
        Self {
            hash: TokenHash::of(&token),
            token: token.into(),
            generated,
        }
    }

    pub(crate) fn token(&self) -> &str {
        self.token.expose()
    }

    pub(crate) fn is_generated(&self) -> bool {
        self.generated
    }

    /// Constant-time comparison with a presented token.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        secret::hash_matches(presented, &self.hash)
    }

    pub(crate) async fn is_unused(
        &self,
        tokens: &dyn TokenStore,
        hash: &TokenHash,
    ) -> Result<bool, StoreError> {
        Ok(tokens.get(TokenKind::SetupTokenUse, hash).await?.is_none())
    }

    /// Record the use; `false` if another registration got there first.
    pub(crate) async fn mark_used(
        &self,
        tokens: &dyn TokenStore,
        hash: &TokenHash,
    ) -> Result<bool, StoreError> {
        let marker = TokenRecord {
            kind: TokenKind::SetupTokenUse,
            hash: *hash,
            grant_id: GrantId::generate(),
            expires_at: UnixTime::now().plus(USED_MARKER_SECS),
            payload: Vec::new(),
        };
        match tokens.insert(marker).await {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
