//! The expiry sweeper for stores without native expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use mcp_oauth::store::StoreError;
use mcp_oauth::{McpOAuth, MemoryStore};

use crate::common::*;

/// Counts purges (and purges nothing).
struct CountsPurges(Arc<AtomicUsize>);

#[async_trait]
impl StoreHooks for CountsPurges {
    async fn delete_expired(&self, _: &MemoryStore) -> Result<u64, StoreError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(0)
    }
}

#[tokio::test]
async fn the_sweeper_purges_periodically_and_stops_when_aborted() {
    let purges = Arc::new(AtomicUsize::new(0));
    let memory = MemoryStore::new();
    let oauth = Stores::of(memory.clone())
        .apply(McpOAuth::builder(config()))
        .token_store(Arc::new(Hooked {
            store: memory,
            hooks: CountsPurges(Arc::clone(&purges)),
        }))
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
