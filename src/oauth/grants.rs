//! One record per approval (what the owner console lists), kept current as tokens are issued, and
//! revocation that also catches tokens minted while it runs.

use serde::{Deserialize, Serialize};

use super::machine::is_machine_grant;
use super::payload::{self, TokenGrant};
use super::{AuthServer, OAuthError};
use crate::store::{GrantId, StoreError, TokenHash, TokenKind, TokenRecord, UnixTime};

/// What the owner approved, and what has been issued since. The payload of a
/// [`TokenKind::Grant`] record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct GrantSummary {
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) resource: String,
    /// `None` for a grant first seen at a refresh (approved before grants were recorded).
    pub(crate) redirect_uri: Option<String>,
    pub(crate) approved_at: UnixTime,
    pub(crate) last_issued_at: Option<UnixTime>,
    pub(crate) access_expires_at: Option<UnixTime>,
    pub(crate) refresh_expires_at: Option<UnixTime>,
}

/// A grant record and its revocation marker are keyed by the grant id's hash.
fn key(grant_id: &GrantId) -> TokenHash {
    TokenHash::of(&grant_id.0)
}

/// The marker lives under a grant id of its own, so revoking the grant does not remove it.
fn marker_grant(grant_id: &GrantId) -> GrantId {
    GrantId(format!("{}.revoked", grant_id.0))
}

/// Tokens just minted in a grant, to take back if the grant turns out to be revoked.
#[derive(Debug, Default)]
pub(crate) struct Minted {
    tokens: Vec<(TokenKind, TokenHash)>,
    pub(crate) access_expires_at: Option<UnixTime>,
    pub(crate) refresh_expires_at: Option<UnixTime>,
}

impl Minted {
    pub(crate) fn add(&mut self, kind: TokenKind, hash: TokenHash, expires_at: UnixTime) {
        self.tokens.push((kind, hash));
        match kind {
            TokenKind::AccessToken => self.access_expires_at = Some(expires_at),
            TokenKind::RefreshToken => self.refresh_expires_at = Some(expires_at),
            // A kept successor pair is taken back with the tokens, but is not one the grant shows.
            _ => {}
        }
    }
}

impl AuthServer {
    /// Record an approval. Until a code is redeemed the record lives as long as the code.
    pub(crate) async fn record_approval(
        &self,
        grant_id: &GrantId,
        summary: &GrantSummary,
    ) -> Result<(), StoreError> {
        self.tokens
            .insert(TokenRecord {
                kind: TokenKind::Grant,
                hash: key(grant_id),
                grant_id: grant_id.clone(),
                expires_at: summary.approved_at.plus(self.settings.code_lifetime_secs),
                payload: payload::encode(summary),
            })
            .await
    }

    /// After tokens were minted in a grant: bring its record up to date, then make sure the grant
    /// was not revoked meanwhile, nor its client deleted. If it was, the new tokens are deleted
    /// and the request fails; if the client was, the whole grant is revoked (the deletion may not
    /// have seen it).
    pub(crate) async fn settle_issue(
        &self,
        grant_id: &GrantId,
        grant: &TokenGrant,
        minted: &Minted,
    ) -> Result<(), OAuthError> {
        let key = key(grant_id);
        let approved_at = self.touch(grant_id, key, grant, minted).await?;
        // A client deletion's marker does not apply to a machine's token: a machine stands on the
        // configuration alone, and a deletion made where the configuration does not name it (its
        // leftover tokens listed under a gone client) must not lock it out where it is named.
        if !is_machine_grant(grant_id)
            && self
                .is_revoked_with_client(&grant.client_id, approved_at)
                .await?
        {
            self.revoke_grant(grant_id).await?;
            return Err(OAuthError::invalid_grant("the client was deleted"));
        }
        if self
            .tokens
            .get(TokenKind::GrantRevoked, &key)
            .await?
            .is_none()
        {
            return Ok(());
        }
        self.take_back(minted).await?;
        self.tokens.delete(TokenKind::Grant, &key).await?;
        Err(OAuthError::invalid_grant("the grant was revoked"))
    }

    /// Delete tokens just minted, before anyone was answered with them.
    pub(crate) async fn take_back(&self, minted: &Minted) -> Result<(), StoreError> {
        for (kind, hash) in &minted.tokens {
            self.tokens.delete(*kind, hash).await?;
        }
        Ok(())
    }

    /// Replace the grant record with one that lives as long as the newest tokens. A concurrent
    /// replacement (two refreshes within the grace window) that wins the insert is as good.
    /// Returns when the grant was approved, as its record said; `None` without a record.
    async fn touch(
        &self,
        grant_id: &GrantId,
        key: TokenHash,
        grant: &TokenGrant,
        minted: &Minted,
    ) -> Result<Option<UnixTime>, StoreError> {
        let now = self.now();
        let existing = self.tokens.get(TokenKind::Grant, &key).await?;
        let existing = existing.and_then(|record| payload::decode::<GrantSummary>(&record).ok());
        let approved_at = existing.as_ref().map(|summary| summary.approved_at);
        let mut summary = existing.unwrap_or_else(|| GrantSummary {
            client_id: grant.client_id.clone(),
            scopes: grant.scopes.clone(),
            resource: grant.resource.clone(),
            redirect_uri: None,
            approved_at: now,
            last_issued_at: None,
            access_expires_at: None,
            refresh_expires_at: None,
        });
        summary.last_issued_at = Some(now);
        summary.access_expires_at = minted.access_expires_at.or(summary.access_expires_at);
        summary.refresh_expires_at = minted.refresh_expires_at.or(summary.refresh_expires_at);
        let expires_at = summary
            .access_expires_at
            .max(summary.refresh_expires_at)
            .unwrap_or(now);
        self.tokens.delete(TokenKind::Grant, &key).await?;
        match self
            .tokens
            .insert(TokenRecord {
                kind: TokenKind::Grant,
                hash: key,
                grant_id: grant_id.clone(),
                expires_at,
                payload: payload::encode(&summary),
            })
            .await
        {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => Ok(approved_at),
            Err(error) => Err(error),
        }
    }

    /// Revoke every token of a grant. The marker is written first: a token minted after the sweep
    /// started is then caught by [`settle_issue`](Self::settle_issue). Returns how many records the
    /// sweep removed.
    pub(crate) async fn revoke_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError> {
        let lifetime = self
            .settings
            .refresh_token_lifetime_secs
            .max(self.settings.token_lifetime_secs);
        let marker = TokenRecord {
            kind: TokenKind::GrantRevoked,
            hash: key(grant_id),
            grant_id: marker_grant(grant_id),
            expires_at: self.now().plus(lifetime),
            payload: Vec::new(),
        };
        match self.tokens.insert(marker).await {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(error) => return Err(error),
        }
        self.tokens.revoke_grant(grant_id).await
    }

    /// Every live grant with its summary; records that no longer parse are skipped.
    pub(crate) async fn list_grants(&self) -> Result<Vec<(GrantId, GrantSummary)>, StoreError> {
        let records = self.tokens.list_grants().await?;
        Ok(records
            .into_iter()
            .filter_map(|record| {
                let summary = payload::decode::<GrantSummary>(&record).ok()?;
                Some((record.grant_id, summary))
            })
            .filter(|(_, summary)| summary.resource == self.settings.resource.as_str())
            .collect())
    }
}
