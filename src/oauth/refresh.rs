//! The `refresh_token` grant: rotation, and what a rotated refresh token gets when it comes back.
//!
//! Every refresh token has one successor slot in the store, keyed by its hash: the pair its
//! rotation issued, sealed ([`successor`](super::successor)), kept for the grace window. Filling
//! the slot is an insert-if-absent, so however many requests rotate one token (the first consume,
//! and retries that found it stuck), exactly one pair is kept, and every answer for that token is
//! that pair. Within the window a retry (a client refreshing from several nodes, or retrying a lost
//! response) gets it again: everyone holding the token shares one chain, and two parties can never
//! both keep refreshing. Whoever rotates a shared token second after the window, or comes back
//! after the chain moved on, is reuse, and the grant is revoked.

use std::time::Duration;

use super::clients::Client;
use super::grants::Minted;
use super::params::Params;
use super::payload::{self, SuccessorPair, TokenGrant};
use super::token::{Minting, TokenResponse};
use super::{AuthServer, ErrorCode, OAuthError, scope, successor};
use crate::audit::AuditEvent;
use crate::store::{Consumed, GrantId, StoreError, TokenHash, TokenKind, TokenRecord, UnixTime};

/// How long a retry waits for the rotation it raced to keep its pair before rotating the token
/// itself. A rotation stores its tokens and the pair within milliseconds; one that has not after
/// this long most likely failed midway (a store outage, a crash) and answered no one.
const SUCCESSOR_WAIT: Duration = Duration::from_secs(1);
/// The first pause between looks for the pair; each pause doubles, up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PAUSE: Duration = Duration::from_millis(200);
/// How long a kept pair outlives the grace window. A retry still inside the window must never find
/// the slot empty because the pair just expired (that would start a second chain): the margin
/// covers the time between its check of the window and its insert, and clock skew between
/// instances.
const SUCCESSOR_MARGIN_SECS: u64 = 30;

impl AuthServer {
    pub(super) async fn refresh(
        &self,
        client: &Client,
        params: &Params<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let presented = params.require("refresh_token")?;
        self.settings.resource.check(params.get("resource"))?;
        let hash = TokenHash::of(presented);
        let check = |grant: &TokenGrant| -> Result<Vec<String>, OAuthError> {
            if grant.client_id != client.client_id {
                return Err(OAuthError::invalid_grant(
                    "the refresh token was issued to another client",
                ));
            }
            if grant.resource != self.settings.resource.as_str() {
                return Err(OAuthError::invalid_grant(
                    "the refresh token was issued for another resource",
                ));
            }
            scope::narrow(params.get("scope"), &grant.scopes, &self.settings.scopes).map_err(|s| {
                OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("scope {} was not granted", super::params::printable(&s)),
                )
            })
        };

        let mut checked = None;
        if let Some(record) = self.tokens.get(TokenKind::RefreshToken, &hash).await? {
            let grant: TokenGrant = payload::decode(&record)?;
            let scopes = check(&grant)?;
            checked = Some((record.payload, grant, scopes));
        }
        match self
            .tokens
            .consume(TokenKind::RefreshToken, &hash, self.now())
            .await?
        {
            Some(Consumed::First(record)) => {
                let (grant, scopes) = match checked {
                    // What was consumed is what was just checked: no need to decode it again.
                    Some((payload, grant, scopes)) if payload == record.payload => (grant, scopes),
                    _ => {
                        let grant: TokenGrant = payload::decode(&record)?;
                        let scopes = check(&grant)?;
                        (grant, scopes)
                    }
                };
                self.audit.emit(AuditEvent::RefreshRotated {
                    client_id: client.client_id.clone(),
                    grant_id: record.grant_id.clone(),
                });
                let minting = Minting::Rotation { presented };
                self.issue(&record.grant_id, &grant, &scopes, minting).await
            }
            Some(Consumed::Replayed {
                record,
                consumed_at,
            }) => {
                // Only a replay by the token's own client, for this resource, counts: anyone else's
                // is refused without touching the grant.
                let grant: TokenGrant = payload::decode(&record)?;
                let scopes = check(&grant)?;
                if self.within_grace(consumed_at) {
                    return self
                        .answer_retry(presented, &record, &grant, &scopes, consumed_at)
                        .await;
                }
                self.revoke_grant(&record.grant_id).await?;
                self.audit.emit(AuditEvent::RefreshReuseRevoked {
                    client_id: client.client_id.clone(),
                    grant_id: record.grant_id.clone(),
                });
                Err(OAuthError::invalid_grant(
                    "the refresh token was already used; the grant is revoked, authorize again",
                ))
            }
            None => Err(OAuthError::invalid_grant(
                "the refresh token is invalid, expired or revoked",
            )),
        }
    }

    /// Times are whole seconds, so the window is inclusive: a retry in the same breath is always
    /// inside a grace of 1 s or more. A grace of 0 means strict.
    fn within_grace(&self, consumed_at: UnixTime) -> bool {
        let grace = self.settings.refresh_grace_secs;
        grace > 0 && self.now().0 <= consumed_at.0.saturating_add(grace)
    }

    /// Fill the successor slot of `presented` with the pair its rotation issued, sealed; whether
    /// this pair is the one kept (`false`: another request's pair was kept first). Called after
    /// the new tokens are stored, so a pair found in the slot always had its refresh token stored,
    /// and before anyone is answered, so no one holds a pair that was not kept.
    pub(super) async fn keep_successor(
        &self,
        presented: &str,
        grant_id: &GrantId,
        pair: &SuccessorPair,
        now: UnixTime,
        minted: &mut Minted,
    ) -> Result<bool, StoreError> {
        let grace = self.settings.refresh_grace_secs;
        if grace == 0 {
            // Strict rotation: a retry is reuse, so there is nothing to keep.
            return Ok(true);
        }
        let expires_at = now.plus(grace.saturating_add(SUCCESSOR_MARGIN_SECS));
        let record = successor::seal(presented, grant_id, pair, expires_at)?;
        let (kind, hash) = (record.kind, record.hash);
        match self.tokens.insert(record).await {
            Ok(()) => {
                // Only our own pair is taken back if the grant turns out revoked.
                minted.add(kind, hash, expires_at);
                Ok(true)
            }
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// A rotated refresh token within the grace window gets the pair kept for it, waiting briefly
    /// for a rotation still under way. If none comes, the rotation failed before keeping a pair
    /// and answered no one, so the retry rotates the token itself, through the same slot.
    async fn answer_retry(
        &self,
        presented: &str,
        record: &TokenRecord,
        grant: &TokenGrant,
        scopes: &[String],
        consumed_at: UnixTime,
    ) -> Result<TokenResponse, OAuthError> {
        if let Some(kept) = self.await_successor(&record.hash).await? {
            return self
                .answer_with_pair(presented, &record.grant_id, grant, &kept)
                .await;
        }
        if !self.within_grace(consumed_at) {
            // The window closed while waiting: too late to rotate, but no evidence of theft.
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; authorize again",
            ));
        }
        self.audit.emit(AuditEvent::RefreshRetryRotated {
            client_id: grant.client_id.clone(),
            grant_id: record.grant_id.clone(),
        });
        let minting = Minting::Rotation { presented };
        self.issue(&record.grant_id, grant, scopes, minting).await
    }

    /// The answer for `presented` when another request filled its successor slot first.
    pub(super) async fn answer_with_kept_pair(
        &self,
        presented: &str,
        grant_id: &GrantId,
        grant: &TokenGrant,
    ) -> Result<TokenResponse, OAuthError> {
        let hash = TokenHash::of(presented);
        match self.tokens.get(TokenKind::RefreshSuccessor, &hash).await? {
            Some(kept) => {
                self.answer_with_pair(presented, grant_id, grant, &kept)
                    .await
            }
            // Taken back since: that rotation found the grant revoked.
            None => Err(OAuthError::invalid_grant("the grant was revoked")),
        }
    }

    /// Answer with the kept pair, as long as its refresh token is still the head of the chain.
    async fn answer_with_pair(
        &self,
        presented: &str,
        grant_id: &GrantId,
        grant: &TokenGrant,
        kept: &TokenRecord,
    ) -> Result<TokenResponse, OAuthError> {
        let pair = successor::open(presented, kept)?;
        let head = TokenHash::of(&pair.refresh_token);
        let Some(head_record) = self.tokens.get(TokenKind::RefreshToken, &head).await? else {
            // Its successor was rotated on (or revoked): the chain has moved past this token, so
            // whoever presents it is a second holder.
            self.revoke_grant(grant_id).await?;
            self.audit.emit(AuditEvent::RefreshStaleRetryRevoked {
                client_id: grant.client_id.clone(),
                grant_id: grant_id.clone(),
            });
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used, and so was the one it was rotated into; the grant is revoked, authorize again",
            ));
        };
        // Settle as the rotation that kept the pair did, or would have had it not failed after
        // keeping it (a store outage): the grant listed with this pair, and not revoked.
        let mut minted = Minted::default();
        let access = TokenHash::of(&pair.access_token);
        minted.add(TokenKind::AccessToken, access, pair.access_expires_at);
        minted.add(TokenKind::RefreshToken, head, head_record.expires_at);
        self.settle_issue(grant_id, grant, &minted).await?;
        self.audit.emit(AuditEvent::RefreshRedelivered {
            client_id: grant.client_id.clone(),
            grant_id: grant_id.clone(),
        });
        let expires_in = pair.access_expires_at.0.saturating_sub(self.now().0);
        Ok(TokenResponse::bearer(
            pair.access_token,
            expires_in,
            Some(pair.refresh_token),
            &pair.scopes,
        ))
    }

    /// The pair kept for the refresh token hashed to `hash`, waiting (briefly, see
    /// [`SUCCESSOR_WAIT`]) for a rotation still under way to keep it.
    async fn await_successor(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        let deadline = tokio::time::Instant::now() + SUCCESSOR_WAIT;
        let mut pause = FIRST_PAUSE;
        loop {
            if let Some(record) = self.tokens.get(TokenKind::RefreshSuccessor, hash).await? {
                return Ok(Some(record));
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }
}
