//! A memory token store with hooks, for tests that need the store to act at one moment (slow
//! inserts, a revocation racing an issue, counting purges or reads), so each test writes only its
//! hook.

use async_trait::async_trait;
use mcp_oauth::MemoryStore;
use mcp_oauth::store::{
    Consumed, GrantId, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime,
};

/// What a test adds around the memory store's own behaviour; every hook does nothing by default.
#[async_trait]
pub(crate) trait StoreHooks: Send + Sync + 'static {
    /// Before a record is stored.
    async fn before_insert(&self, _record: &TokenRecord) {}

    /// After a record was stored, with the store, to act on it.
    async fn after_insert(
        &self,
        _store: &MemoryStore,
        _record: &TokenRecord,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Before a record is read.
    async fn before_get(&self, _kind: TokenKind) {}

    /// In place of the store's own purge of expired records.
    async fn delete_expired(&self, store: &MemoryStore) -> Result<u64, StoreError> {
        TokenStore::delete_expired(store).await
    }
}

/// The memory store, with `H`'s hooks.
pub(crate) struct Hooked<H> {
    pub(crate) store: MemoryStore,
    pub(crate) hooks: H,
}

#[async_trait]
impl<H: StoreHooks> TokenStore for Hooked<H> {
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
        self.hooks.before_insert(&record).await;
        TokenStore::insert(&self.store, record.clone()).await?;
        self.hooks.after_insert(&self.store, &record).await
    }
    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.hooks.before_get(kind).await;
        TokenStore::get(&self.store, kind, hash).await
    }
    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<Consumed>, StoreError> {
        self.store.consume(kind, hash, now).await
    }
    async fn delete(&self, kind: TokenKind, hash: &TokenHash) -> Result<bool, StoreError> {
        TokenStore::delete(&self.store, kind, hash).await
    }
    async fn revoke_grant(&self, grant: &GrantId) -> Result<u64, StoreError> {
        self.store.revoke_grant(grant).await
    }
    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.store.list_grants().await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.hooks.delete_expired(&self.store).await
    }
}
