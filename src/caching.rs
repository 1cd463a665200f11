//! [`CachingStore`]: the bearer guard's positive access-token lookups kept in process for a
//! bounded time, in front of any token store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;

use crate::clock::{Clock, ManualClock};
use crate::store::{Consumed, GrantId, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore};

/// A [`TokenStore`] in front of another that remembers, for at most `staleness`, the access
/// tokens it found: the bearer guard's lookup of a token it has seen in that time costs no round
/// trip to SQLite, PostgreSQL or Redis. Every other call goes straight through.
///
/// The exact consequence: a revocation made through **this** instance (the owner's console, a
/// refresh-token replay, `/revoke`, a client's deletion) is seen here at once, because the same
/// call drops the remembered tokens; one made through **another** instance sharing the store is
/// seen here within `staleness`, until which this instance still accepts the revoked token.
/// Unknown tokens are never remembered, so a made-up token always costs a lookup, and nothing is
/// remembered past its own expiry.
///
/// Use it with a persistent or shared store when the guard's latency matters and a revocation
/// may take `staleness` to reach every instance; keep the plain store when a revocation must
/// hold everywhere at once, or on [`MemoryStore`](crate::MemoryStore), which is already in
/// process.
///
/// ```no_run
/// # #[cfg(feature = "redis")]
/// # async fn demo(config: mcp_oauth::OAuthConfig) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mcp_oauth::{CachingStore, McpOAuth, RedisStore};
///
/// let redis = RedisStore::connect("redis://127.0.0.1/").await?;
/// let oauth = McpOAuth::builder(config)
///     .stores(redis.clone())
///     .token_store(Arc::new(CachingStore::new(Arc::new(redis), Duration::from_secs(5))))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CachingStore {
    inner: Arc<dyn TokenStore>,
    /// Access tokens by hash, with the time (milliseconds, by `clock`) they were looked up.
    found: Cache<TokenHash, Arc<(TokenRecord, u64)>>,
    staleness_millis: u64,
    clock: Clock,
    /// Moves on every removal through this instance, so that a lookup racing one does not
    /// remember what the removal took away.
    removals: Arc<AtomicU64>,
}

impl std::fmt::Debug for CachingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingStore")
            .field("staleness_millis", &self.staleness_millis)
            .field("remembered", &self.found.entry_count())
            .finish_non_exhaustive()
    }
}

impl CachingStore {
    /// How many access tokens it remembers at most, by default.
    pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

    /// `inner` with its access tokens remembered for at most `staleness` each, up to
    /// [`DEFAULT_MAX_ENTRIES`](Self::DEFAULT_MAX_ENTRIES) of them.
    pub fn new(inner: Arc<dyn TokenStore>, staleness: Duration) -> Self {
        Self::with_max_entries(inner, staleness, Self::DEFAULT_MAX_ENTRIES)
    }

    /// As [`new`](Self::new), remembering at most `max_entries` access tokens (the least used go
    /// first).
    pub fn with_max_entries(
        inner: Arc<dyn TokenStore>,
        staleness: Duration,
        max_entries: u64,
    ) -> Self {
        Self {
            inner,
            found: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(staleness)
                .support_invalidation_closures()
                .build(),
            staleness_millis: u64::try_from(staleness.as_millis()).unwrap_or(u64::MAX),
            clock: Clock::System,
            removals: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Judge staleness by `clock` (a test's [`ManualClock`], the one the layer is built with)
    /// instead of the system clock.
    #[must_use]
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Clock::Manual(clock);
        self
    }

    /// A remembered access token, if it is neither stale nor expired.
    async fn remembered(&self, hash: &TokenHash) -> Option<TokenRecord> {
        let entry = self.found.get(hash).await?;
        let (record, found_at) = &*entry;
        let fresh = self.clock.millis() < found_at.saturating_add(self.staleness_millis);
        (fresh && record.expires_at.is_after(self.clock.now())).then(|| record.clone())
    }

    /// After a removal through this instance: nothing remembered of `grant_id` (or of the one
    /// token `hash`) is returned again.
    async fn forget(&self, which: Forget<'_>) {
        // The count moves first: a lookup that read the store before the removal and remembers
        // its answer after this point sees the move and takes its answer back.
        self.removals.fetch_add(1, Ordering::SeqCst);
        match which {
            Forget::Token(hash) => self.found.invalidate(hash).await,
            Forget::Grant(grant_id) => {
                let grant_id = grant_id.clone();
                // Only fails when invalidation closures are off, and they are on (see `new`).
                if self
                    .found
                    .invalidate_entries_if(move |_, entry| entry.0.grant_id == grant_id)
                    .is_err()
                {
                    self.found.invalidate_all();
                }
            }
        }
    }
}

enum Forget<'a> {
    Token(&'a TokenHash),
    Grant(&'a GrantId),
}

#[async_trait]
impl TokenStore for CachingStore {
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }

    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError> {
        if kind != TokenKind::AccessToken {
            return self.inner.get(kind, hash).await;
        }
        if let Some(record) = self.remembered(hash).await {
            return Ok(Some(record));
        }
        let removals = self.removals.load(Ordering::SeqCst);
        let found = self.inner.get(kind, hash).await?;
        if let Some(record) = &found {
            let entry = Arc::new((record.clone(), self.clock.millis()));
            self.found.insert(*hash, entry).await;
            // A removal ran meanwhile: it may have missed what was just remembered.
            if self.removals.load(Ordering::SeqCst) != removals {
                self.found.invalidate(hash).await;
            }
        }
        Ok(found)
    }

    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: crate::store::UnixTime,
    ) -> Result<Option<Consumed>, StoreError> {
        let consumed = self.inner.consume(kind, hash, now).await;
        if kind == TokenKind::AccessToken {
            self.forget(Forget::Token(hash)).await;
        }
        consumed
    }

    async fn delete(&self, kind: TokenKind, hash: &TokenHash) -> Result<bool, StoreError> {
        let deleted = self.inner.delete(kind, hash).await;
        if kind == TokenKind::AccessToken {
            self.forget(Forget::Token(hash)).await;
        }
        deleted
    }

    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError> {
        let revoked = self.inner.revoke_grant(grant_id).await;
        self.forget(Forget::Grant(grant_id)).await;
        revoked
    }

    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.list_grants().await
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.inner.delete_expired().await
    }

    fn eviction_capacity(&self) -> Option<u64> {
        self.inner.eviction_capacity()
    }

    /// `caching`: what the core waits for is this store, remembered tokens included.
    fn backend_name(&self) -> &'static str {
        "caching"
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Notify;

    use super::*;
    use crate::MemoryStore;
    use crate::store::UnixTime;

    /// The memory store, counting access-token reads; the next read, once `hold` is set, waits
    /// after reading until `release` is notified.
    #[derive(Default)]
    struct Counted {
        store: MemoryStore,
        reads: AtomicUsize,
        hold: std::sync::atomic::AtomicBool,
        read_done: Notify,
        release: Notify,
    }

    #[async_trait]
    impl TokenStore for Counted {
        async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
            self.store.insert(record).await
        }
        async fn get(
            &self,
            kind: TokenKind,
            hash: &TokenHash,
        ) -> Result<Option<TokenRecord>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let found = self.store.get(kind, hash).await;
            if self.hold.swap(false, Ordering::SeqCst) {
                self.read_done.notify_one();
                self.release.notified().await;
            }
            found
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
            self.store.delete(kind, hash).await
        }
        async fn revoke_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError> {
            TokenStore::revoke_grant(&self.store, grant_id).await
        }
        async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
            self.store.list_grants().await
        }
    }

    fn access(secret: &str, grant: &str) -> TokenRecord {
        TokenRecord {
            kind: TokenKind::AccessToken,
            hash: TokenHash::of(secret),
            grant_id: GrantId(grant.into()),
            expires_at: UnixTime::now().plus(3_600),
            payload: vec![1],
        }
    }

    fn caching(inner: &Arc<Counted>) -> CachingStore {
        let inner: Arc<dyn TokenStore> = inner.clone();
        CachingStore::new(inner, Duration::from_secs(60))
    }

    #[tokio::test]
    async fn a_known_token_is_read_once_and_an_unknown_one_every_time() {
        let inner = Arc::new(Counted::default());
        let store = caching(&inner);
        store.insert(access("known", "g")).await.unwrap();
        for _ in 0..3 {
            assert!(
                store
                    .get(TokenKind::AccessToken, &TokenHash::of("known"))
                    .await
                    .unwrap()
                    .is_some()
            );
            assert!(
                store
                    .get(TokenKind::AccessToken, &TokenHash::of("made-up"))
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        assert_eq!(inner.reads.load(Ordering::SeqCst), 1 + 3);
    }

    /// A lookup that read the token before a revocation through this instance, and remembers it
    /// after, must not leave it remembered.
    #[tokio::test]
    async fn a_lookup_racing_a_revocation_does_not_remember_the_revoked_token() {
        let inner = Arc::new(Counted::default());
        let store = caching(&inner);
        store.insert(access("raced", "g")).await.unwrap();
        inner.hold.store(true, Ordering::SeqCst);
        let lookup = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .get(TokenKind::AccessToken, &TokenHash::of("raced"))
                    .await
            })
        };
        inner.read_done.notified().await;
        store.revoke_grant(&GrantId("g".into())).await.unwrap();
        inner.release.notify_one();
        assert!(
            lookup.await.unwrap().unwrap().is_some(),
            "read before the revocation"
        );
        assert!(
            store
                .get(TokenKind::AccessToken, &TokenHash::of("raced"))
                .await
                .unwrap()
                .is_none(),
            "the revoked token was remembered"
        );
    }

    #[tokio::test]
    async fn a_remembered_token_goes_stale_by_the_clock_and_never_outlives_its_expiry() {
        let inner = Arc::new(Counted::default());
        let clock = ManualClock::new();
        clock.advance(Duration::from_secs(3_600));
        let store = caching(&inner).clock(clock.clone());
        let mut short = access("short", "g");
        short.expires_at = clock.now().plus(30);
        store.insert(short).await.unwrap();
        let hash = TokenHash::of("short");
        store.get(TokenKind::AccessToken, &hash).await.unwrap();
        store.get(TokenKind::AccessToken, &hash).await.unwrap();
        assert_eq!(inner.reads.load(Ordering::SeqCst), 1, "remembered");
        clock.advance(Duration::from_secs(31));
        assert!(
            store.remembered(&hash).await.is_none(),
            "remembered past its expiry"
        );
    }
}
