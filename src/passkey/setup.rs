//! The setup token that authorises registering a passkey without an existing one.

use crate::rules::secret::{self, Secret};
use crate::store::{StoreError, TokenHash, TokenKind, TokenStore};

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

    /// Whether the token store holds a "used" marker for this token. Earlier versions of this
    /// crate recorded a use only there and on the passkey; a persistent token store may still hold
    /// such a marker for a passkey since removed, and it still counts.
    pub(crate) async fn has_legacy_use_marker(
        &self,
        tokens: &dyn TokenStore,
        hash: &TokenHash,
    ) -> Result<bool, StoreError> {
        Ok(tokens.get(TokenKind::SetupTokenUse, hash).await?.is_some())
    }
}
