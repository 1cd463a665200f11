//! The stores as the core sees them: a record whose expiry has passed by the core's clock is gone,
//! whatever the backend's own clock says. Every read the core makes goes through here, so expiry
//! is decided in one place.
//!
//! Backends still drop expired records by their own time (the store contract), which is the same
//! as the core's with the system clock. With a [`ManualClock`](super::ManualClock) moved ahead,
//! what differs is only what a backend still holds: it may still count a lapsed registration
//! toward the cap on unapproved clients, and still refuse an insert over a key whose record the
//! core considers expired. (The core's keys are random, or deleted before they are written again,
//! as a grant's record and a deleted client's marker are, or written once, as a grant's revocation
//! marker and a rotated refresh token's kept pair are.)

use std::sync::Arc;

use async_trait::async_trait;

use super::Clock;
use crate::store::{
    ClientRecord, ClientStore, Consumed, GrantId, StoreError, TokenHash, TokenKind, TokenRecord,
    TokenStore, UnixTime,
};

/// A token store whose reads hide records expired by `clock`.
pub(crate) struct ClockedTokens {
    inner: Arc<dyn TokenStore>,
    clock: Clock,
}

impl ClockedTokens {
    pub(crate) fn new(inner: Arc<dyn TokenStore>, clock: Clock) -> Self {
        Self { inner, clock }
    }

    fn is_live(&self, record: &TokenRecord) -> bool {
        record.expires_at.is_after(self.clock.now())
    }
}

#[async_trait]
impl TokenStore for ClockedTokens {
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }

    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let record = self.inner.get(kind, hash).await?;
        Ok(record.filter(|record| self.is_live(record)))
    }

    /// An expired record is absent whether this call consumed it or an earlier one did, exactly
    /// as a backend answers for a record expired by its own clock: the caller's refusal (its
    /// error, its audit event) is the one for an unknown or expired secret, never a replay's.
    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<Consumed>, StoreError> {
        let consumed = self.inner.consume(kind, hash, now).await?;
        Ok(consumed.filter(|consumed| match consumed {
            Consumed::First(record) | Consumed::Replayed { record, .. } => self.is_live(record),
        }))
    }

    // The core never reads what `delete` answers, so the backend's answer is passed on as it is.
    async fn delete(&self, kind: TokenKind, hash: &TokenHash) -> Result<bool, StoreError> {
        self.inner.delete(kind, hash).await
    }

    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError> {
        self.inner.revoke_grant(grant_id).await
    }

    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let mut grants = self.inner.list_grants().await?;
        grants.retain(|record| self.is_live(record));
        Ok(grants)
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.inner.delete_expired().await
    }

    fn eviction_capacity(&self) -> Option<u64> {
        self.inner.eviction_capacity()
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}

/// A client store whose reads hide registrations lapsed by `clock`.
pub(crate) struct ClockedClients {
    inner: Arc<dyn ClientStore>,
    clock: Clock,
}

impl ClockedClients {
    pub(crate) fn new(inner: Arc<dyn ClientStore>, clock: Clock) -> Self {
        Self { inner, clock }
    }

    fn now(&self) -> UnixTime {
        self.clock.now()
    }
}

#[async_trait]
impl ClientStore for ClockedClients {
    async fn insert(&self, client: ClientRecord, max_unapproved: u64) -> Result<(), StoreError> {
        self.inner.insert(client, max_unapproved).await
    }

    async fn get(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let client = self.inner.get(client_id).await?;
        Ok(client.filter(|client| client.is_live(self.now())))
    }

    /// A registration lapsed by the core's clock cannot be approved any more.
    async fn mark_approved(
        &self,
        client_id: &str,
        approved_at: UnixTime,
        expires_at: Option<UnixTime>,
    ) -> Result<bool, StoreError> {
        if self.get(client_id).await?.is_none() {
            return Ok(false);
        }
        self.inner
            .mark_approved(client_id, approved_at, expires_at)
            .await
    }

    // Removing answers by the backend's time: the console removes only clients it listed live.
    async fn delete(&self, client_id: &str) -> Result<bool, StoreError> {
        self.inner.delete(client_id).await
    }

    async fn delete_unapproved(&self, client_id: &str) -> Result<bool, StoreError> {
        self.inner.delete_unapproved(client_id).await
    }

    async fn list(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let now = self.now();
        let mut clients = self.inner.list().await?;
        clients.retain(|client| client.is_live(now));
        Ok(clients)
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.inner.delete_expired().await
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}
