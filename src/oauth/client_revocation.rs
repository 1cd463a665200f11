//! Deleting a client revokes every grant it holds, even one the console's listing cannot see: an
//! issuance rewrites its grant's record (delete, then insert) after minting, and an approval writes
//! a new grant's record after its code, so a listing at that moment misses the grant. A marker per
//! deleted client, written before the listing and checked by every issuance after it has written
//! its tokens (one store read per issuance; the bearer guard reads nothing more), catches those.
//!
//! Why no grant approved before the deletion keeps a live token:
//! - an issuance that checks after the marker was written revokes its whole grant (marker and
//!   sweep, so the tokens minted before it and while it runs go too);
//! - one that checked before wrote its grant's record before the marker, hence before the listing,
//!   which sees the grant and revokes it, unless another issuance in the grant is between deleting
//!   and rewriting the record at that moment: that one checks after the marker, and revokes;
//! - an approval's code can be exchanged only once its grant's record is written; if that was after
//!   the listing, the exchange checks after the marker. An approval that read the clock in a later
//!   second than the marker's is a new one: a registered client's exchange then finds its
//!   registration gone (deleted before the listing); a metadata-document client is approved anew.

use serde::{Deserialize, Serialize};

use super::AuthServer;
use super::payload;
use crate::store::{GrantId, StoreError, TokenHash, TokenKind, TokenRecord, UnixTime};

/// The payload of a [`TokenKind::ClientRevoked`] marker.
#[derive(Debug, Serialize, Deserialize)]
struct ClientRevocation {
    /// Grants approved until this second (included) are revoked; later ones are new approvals.
    revoked_at: UnixTime,
}

impl ClientRevocation {
    /// Whether a grant approved at `approved_at` is revoked. An unknown approval time (the grant's
    /// record was missing) counts as before the deletion, and so does the deletion's own second.
    fn covers(&self, approved_at: Option<UnixTime>) -> bool {
        approved_at.is_none_or(|approved| !approved.is_after(self.revoked_at))
    }
}

fn key(client_id: &str) -> TokenHash {
    TokenHash::of(client_id)
}

impl AuthServer {
    /// Revoke every grant of `client_id` approved until now, as seen by the issuances still to
    /// check. Call before listing the client's grants.
    pub(crate) async fn mark_client_revoked(&self, client_id: &str) -> Result<(), StoreError> {
        let now = self.now();
        let key = key(client_id);
        // As long as a token of a grant approved until now can live, or a code be exchanged.
        let lifetime = self
            .settings
            .refresh_token_lifetime_secs
            .max(self.settings.token_lifetime_secs)
            .max(self.settings.code_lifetime_secs);
        let marker = TokenRecord {
            kind: TokenKind::ClientRevoked,
            hash: key,
            // Not a grant id `revoke_grant` is ever called with, so revoking keeps the marker.
            grant_id: GrantId(format!("client-revoked.{}", key.to_hex())),
            expires_at: now.plus(lifetime),
            payload: payload::encode(&ClientRevocation { revoked_at: now }),
        };
        // A marker left by an earlier deletion is replaced: the new one also covers the grants
        // approved since. A concurrent deletion's marker, as recent, is as good.
        self.tokens.delete(TokenKind::ClientRevoked, &key).await?;
        match self.tokens.insert(marker).await {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Whether a deletion of `client_id` revoked a grant approved at `approved_at` (`None`: not
    /// known). A marker that no longer parses revokes every grant of the client.
    pub(crate) async fn is_revoked_with_client(
        &self,
        client_id: &str,
        approved_at: Option<UnixTime>,
    ) -> Result<bool, StoreError> {
        let Some(marker) = self
            .tokens
            .get(TokenKind::ClientRevoked, &key(client_id))
            .await?
        else {
            return Ok(false);
        };
        Ok(payload::decode::<ClientRevocation>(&marker)
            .map_or(true, |revocation| revocation.covers(approved_at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_approved_until_the_deletions_second_are_revoked_later_ones_are_not() {
        let revocation = ClientRevocation {
            revoked_at: UnixTime(1_000),
        };
        assert!(revocation.covers(Some(UnixTime(10))));
        assert!(revocation.covers(Some(UnixTime(1_000))), "the same second");
        assert!(revocation.covers(None), "an unknown approval time");
        assert!(!revocation.covers(Some(UnixTime(1_001))), "a new approval");
    }
}
