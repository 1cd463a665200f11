//! The expiry sweeper for stores without native expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use mcp_oauth::store::{
    Consumed, GrantId, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore,
};
use mcp_oauth::{McpOAuth, MemoryStore};

use crate::common::*;

/// A memory store that counts purges.
struct Counting(MemoryStore, Arc<AtomicUsize>);

#[async_trait]
impl TokenStore for Counting {
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
        TokenStore::insert(&self.0, record).await
    }
    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError> {
        TokenStore::get(&self.0, kind, hash).await
    }
    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<Consumed>, StoreError> {
        self.0.consume(kind, hash).await
    }
    async fn delete(&self, kind: TokenKind, hash: &TokenHash) -> Result<bool, StoreError> {
        TokenStore::delete(&self.0, kind, hash).await
    }
    async fn revoke_grant(&self, grant: &GrantId) -> Result<u64, StoreError> {
        self.0.revoke_grant(grant).await
    }
    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.0.list_grants().await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(0)
    }
}

#[tokio::test]
async fn the_sweeper_purges_periodically_and_stops_when_aborted() {
    let purges = Arc::new(AtomicUsize::new(0));
    let memory = MemoryStore::new();
    let oauth = Stores::of(memory.clone())
        .apply(McpOAuth::builder(config()))
        .token_store(Arc::new(Counting(memory, Arc::clone(&purges))))
        .build()
        .unwrap();
    let sweeper = oauth.spawn_expiry_sweeper(Duration::from_millis(20));
    tokio::time::sleep(Duration::from_millis(300)).await;
    sweeper.abort();
    let _ = sweeper.await;
    let seen = purges.load(Ordering::SeqCst);
    assert!(seen >= 2, "purged {seen} times");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(purges.load(Ordering::SeqCst), seen, "stopped");
}
