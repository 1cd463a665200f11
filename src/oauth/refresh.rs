//! The `refresh_token` grant: rotation, and what a rotated refresh token gets when it comes back.
//!
//! Within the grace window a retry (a client refreshing from several nodes, or retrying a lost
//! response) gets the pair the first rotation issued, kept sealed in the store for the window
//! ([`successor`](super::successor)): everyone holding the token shares one chain, so two parties
//! can never both keep refreshing. Whoever rotates a shared token second, after the window, or
//! comes back after the chain moved on, is reuse, and the grant is revoked.

use std::time::Duration;

use super::clients::Client;
use super::grants::Minted;
use super::params::Params;
use super::records::{self, SuccessorPair, TokenGrant};
use super::token::{Minting, TokenResponse};
use super::{AuthServer, ErrorCode, OAuthError, scope, successor};
use crate::audit::AuditEvent;
use crate::store::{Consumed, GrantId, StoreError, TokenHash, TokenKind, TokenRecord, UnixTime};

/// How long a retry waits for the rotation it raced to keep its pair. A rotation stores two tokens
/// and the pair within milliseconds; one that has not after this long failed or died, and its pair
/// will never come.
const SUCCESSOR_WAIT: Duration = Duration::from_secs(2);
/// The first pause between looks for the pair; each pause doubles, up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PAUSE: Duration = Duration::from_millis(250);

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
            let grant: TokenGrant = records::decode(&record)?;
            let scopes = check(&grant)?;
            checked = Some((record.payload, grant, scopes));
        }
        match self.tokens.consume(TokenKind::RefreshToken, &hash).await? {
            Some(Consumed::First(record)) => {
                let (grant, scopes) = match checked {
                    // What was consumed is what was just checked: no need to decode it again.
                    Some((payload, grant, scopes)) if payload == record.payload => (grant, scopes),
                    _ => {
                        let grant: TokenGrant = records::decode(&record)?;
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
                check(&records::decode(&record)?)?;
                if self.within_grace(consumed_at) {
                    return self.answer_retry(client, presented, &record.grant_id).await;
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
        grace > 0 && UnixTime::now().0 <= consumed_at.0.saturating_add(grace)
    }

    /// Keep the pair a rotation of `presented` issued, sealed, for the grace window. Called after
    /// the new tokens are stored, so a retry that finds the pair also finds its refresh token
    /// unless that was rotated on, and before the answer, so a retry waits as briefly as it can.
    pub(super) async fn keep_successor(
        &self,
        presented: &str,
        grant_id: &GrantId,
        pair: &SuccessorPair,
        now: UnixTime,
        minted: &mut Minted,
    ) -> Result<(), StoreError> {
        let grace = self.settings.refresh_grace_secs;
        if grace == 0 {
            return Ok(());
        }
        // One second past the window, which includes its last second (see `within_grace`).
        let expires_at = now.plus(grace.saturating_add(1));
        let record = successor::seal(presented, grant_id, pair, expires_at)?;
        minted.add(record.kind, record.hash, record.expires_at);
        self.tokens.insert(record).await
    }

    /// A rotated refresh token within the grace window gets the pair its rotation issued, as long
    /// as that pair's refresh token is still the head of the chain.
    async fn answer_retry(
        &self,
        client: &Client,
        presented: &str,
        grant_id: &GrantId,
    ) -> Result<TokenResponse, OAuthError> {
        let Some(record) = self.await_successor(&TokenHash::of(presented)).await? else {
            // The rotation failed before keeping its pair, or the pair was taken back with a
            // revoked grant: nothing to hand out. Not evidence of theft, so the grant stays.
            self.audit.emit(AuditEvent::RefreshRetryUnanswered {
                client_id: client.client_id.clone(),
                grant_id: grant_id.clone(),
            });
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used, and the pair it was rotated into is unavailable; authorize again",
            ));
        };
        let pair = successor::open(presented, &record)?;
        let head = TokenHash::of(&pair.refresh_token);
        if self
            .tokens
            .get(TokenKind::RefreshToken, &head)
            .await?
            .is_none()
        {
            // Its successor was rotated on (or revoked): the chain has moved past this token, so
            // whoever presents it is a second holder.
            self.revoke_grant(grant_id).await?;
            self.audit.emit(AuditEvent::RefreshStaleRetryRevoked {
                client_id: client.client_id.clone(),
                grant_id: grant_id.clone(),
            });
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used, and so was the one it was rotated into; the grant is revoked, authorize again",
            ));
        }
        self.audit.emit(AuditEvent::RefreshRedelivered {
            client_id: client.client_id.clone(),
            grant_id: grant_id.clone(),
        });
        let expires_in = pair.access_expires_at.0.saturating_sub(UnixTime::now().0);
        Ok(TokenResponse::bearer(
            pair.access_token,
            expires_in,
            Some(pair.refresh_token),
            &pair.scopes,
        ))
    }

    /// The kept pair of the refresh token hashed to `hash`, waiting (briefly, see
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
