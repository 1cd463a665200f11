//! [`MemoryStore`]: tokens, clients and passkeys in process memory (moka caches with per-entry
//! expiry and bounded capacity). The default; nothing survives a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};
use moka::policy::EvictionPolicy;
use tokio::sync::RwLock;

use crate::store::{
    ClientRecord, ClientStore, Consumed, GrantId, PasskeyRecord, PasskeyStore, StoreError,
    TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime,
};

type TokenKey = (TokenKind, TokenHash);

/// A stored token and, once consumed, when.
#[derive(Debug)]
struct StoredToken {
    record: TokenRecord,
    consumed_at: Option<UnixTime>,
}

impl StoredToken {
    fn is_live(&self, now: UnixTime) -> bool {
        self.record.expires_at.is_after(now)
    }
}

/// The keys of one grant's records in one tier, so a grant can be revoked without a scan.
///
/// Mutated in place, always from inside a moka compute on the grant's key (which moka runs one at a
/// time per key), so the list is never copied on the insert path. A key may appear more than once
/// (one entry per insert); that only makes `revoke_grant` look twice.
#[derive(Debug, Default)]
struct GrantMembers {
    members: Mutex<Members>,
    /// The latest expiry of any member ever added: the index entry's own expiry.
    expires_at: AtomicU64,
}

#[derive(Debug, Default)]
struct Members {
    keys: Vec<(TokenKey, UnixTime)>,
    /// The length after the last pruning of expired members; pruning again waits until the list
    /// has doubled, so it costs amortised O(1) per insert.
    pruned_len: usize,
}

impl GrantMembers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Members> {
        // The lock guards plain data with no invariant a panic could break.
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expires_at(&self) -> UnixTime {
        UnixTime(self.expires_at.load(Ordering::Relaxed))
    }

    fn add(&self, key: TokenKey, expires_at: UnixTime) {
        let mut members = self.lock();
        if members.keys.len() >= (2 * members.pruned_len).max(16) {
            let now = UnixTime::now();
            members.keys.retain(|(_, at)| at.is_after(now));
            members.pruned_len = members.keys.len();
        }
        members.keys.push((key, expires_at));
        self.expires_at.fetch_max(expires_at.0, Ordering::Relaxed);
    }

    /// Forget one occurrence of `key`; whether the grant has members left.
    fn remove_one(&self, key: &TokenKey) -> bool {
        let mut members = self.lock();
        // From the end: what is deleted is mostly what was added last (the grant record, rewritten
        // at every issue), while a long-refreshed grant holds thousands of members (consumed
        // refresh tokens live on for replay detection); from the front, every refresh was
        // O(chain length).
        if let Some(position) = members.keys.iter().rposition(|(k, _)| k == key) {
            members.keys.swap_remove(position);
        }
        !members.keys.is_empty()
    }

    fn take(&self) -> Vec<(TokenKey, UnixTime)> {
        std::mem::take(&mut self.lock().keys)
    }
}

/// How long from now until `at`, for moka's per-entry expiry. Rounds the current time down, so moka
/// never drops an entry before its `expires_at`; reads check `expires_at` themselves.
fn until(at: UnixTime) -> Duration {
    Duration::from_secs(at.0.saturating_sub(UnixTime::now().0))
}

/// Per-entry expiry taken from the stored value.
struct ByRecord;

impl Expiry<TokenKey, Arc<StoredToken>> for ByRecord {
    fn expire_after_create(
        &self,
        _: &TokenKey,
        value: &Arc<StoredToken>,
        _: Instant,
    ) -> Option<Duration> {
        Some(until(value.record.expires_at))
    }
    fn expire_after_update(
        &self,
        _: &TokenKey,
        value: &Arc<StoredToken>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(until(value.record.expires_at))
    }
}

impl Expiry<GrantId, Arc<GrantMembers>> for ByRecord {
    fn expire_after_create(
        &self,
        _: &GrantId,
        value: &Arc<GrantMembers>,
        _: Instant,
    ) -> Option<Duration> {
        Some(until(value.expires_at()))
    }
    fn expire_after_update(
        &self,
        _: &GrantId,
        value: &Arc<GrantMembers>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(until(value.expires_at()))
    }
}

impl Expiry<String, Arc<ClientRecord>> for ByRecord {
    fn expire_after_create(
        &self,
        _: &String,
        value: &Arc<ClientRecord>,
        _: Instant,
    ) -> Option<Duration> {
        value.expires_at.map(until)
    }
    fn expire_after_update(
        &self,
        _: &String,
        value: &Arc<ClientRecord>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        value.expires_at.map(until)
    }
}

/// One bounded set of token records and the grant index over them.
#[derive(Clone)]
struct Tier {
    records: Cache<TokenKey, Arc<StoredToken>>,
    grants: Cache<GrantId, Arc<GrantMembers>>,
}

impl Tier {
    fn new(capacity: u64) -> Self {
        Self {
            records: Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(ByRecord)
                .build(),
            // Every live index entry has at least one member added within its lifetime, and deletes
            // unindex, so the index holds no more live grants than the tier holds records.
            grants: Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(ByRecord)
                .build(),
        }
    }

    /// Add `key` to the grant's index. Called before the record is written, so a visible record is
    /// always indexed and a concurrent `revoke_grant` cannot miss it.
    async fn index(&self, grant: GrantId, key: TokenKey, expires_at: UnixTime) {
        self.grants
            .entry(grant)
            .and_compute_with(|existing| async move {
                let members = existing.map(|e| e.into_value()).unwrap_or_default();
                members.add(key, expires_at);
                // Put even when unchanged in identity: it recomputes the entry's expiry.
                Op::Put(members)
            })
            .await;
    }

    async fn unindex(&self, grant: GrantId, key: TokenKey) {
        self.grants
            .entry(grant)
            .and_compute_with(|existing| async move {
                match existing {
                    Some(entry) if entry.value().remove_one(&key) => Op::Nop,
                    Some(_) => Op::Remove,
                    None => Op::Nop,
                }
            })
            .await;
    }

    /// Remove every record of the grant in this tier; how many were removed.
    async fn revoke(&self, grant: &GrantId) -> u64 {
        let index = self
            .grants
            .entry(grant.clone())
            .and_compute_with(|_| async { Op::Remove })
            .await;
        let CompResult::Removed(index) = index else {
            return 0;
        };
        let mut removed = 0;
        for (key, _) in index.into_value().take() {
            let grant = grant.clone();
            let result = self
                .records
                .entry(key)
                .and_compute_with(|existing| async move {
                    match existing {
                        // The key may since hold another grant's record; leave that alone.
                        Some(entry) if entry.value().record.grant_id == grant => Op::Remove,
                        _ => Op::Nop,
                    }
                })
                .await;
            if matches!(result, CompResult::Removed(_)) {
                removed += 1;
            }
        }
        removed
    }

    async fn run_pending_tasks(&self) {
        self.records.run_pending_tasks().await;
        self.grants.run_pending_tasks().await;
    }
}

/// In-memory storage for all three traits: [`TokenStore`], [`ClientStore`] and [`PasskeyStore`].
///
/// - **Bounded.** Past its capacity the least recently used entries are evicted (a new entry is
///   always admitted). Access and refresh tokens live apart from the pending authorization
///   requests, codes and passkey ceremonies that anonymous visitors can create, each part with its
///   own capacity and grant index, so a flood of those can never evict a live token or hide one
///   from [`revoke_grant`](TokenStore::revoke_grant).
/// - **Per-entry expiry** from each record's `expires_at`; reads check `expires_at` themselves, so
///   an expired record is never returned, however late moka drops it.
/// - **Atomic per key.** Insert-if-absent, consume and delete run as moka computations, which moka
///   serialises per key.
/// - **Single process.** Nothing survives a restart and nothing is shared between instances; use a
///   shared backend for that. Passkeys kept here are lost on restart too, so the default setup
///   keeps them in a [`PasskeyFileStore`](crate::backends::PasskeyFileStore) instead.
///
/// Cloning is cheap and shares the data.
#[derive(Clone)]
pub struct MemoryStore {
    /// Access and refresh tokens, and setup-token markers: created only after the owner's approval.
    long_lived: Tier,
    /// Pending requests, codes and ceremonies: minutes long, and what an anonymous visitor can create.
    transient: Tier,
    clients: Cache<String, Arc<ClientRecord>>,
    passkeys: Arc<RwLock<Vec<PasskeyRecord>>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("tokens", &self.long_lived.records.entry_count())
            .field("transient", &self.transient.records.entry_count())
            .field("clients", &self.clients.entry_count())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// The default capacity for tokens: see [`MemoryStore::with_capacity`].
    pub const DEFAULT_TOKEN_CAPACITY: u64 = 100_000;
    /// The default capacity for registered clients: see [`MemoryStore::with_capacity`].
    pub const DEFAULT_CLIENT_CAPACITY: u64 = 10_000;

    /// A store with room for [`DEFAULT_TOKEN_CAPACITY`](Self::DEFAULT_TOKEN_CAPACITY) tokens and
    /// [`DEFAULT_CLIENT_CAPACITY`](Self::DEFAULT_CLIENT_CAPACITY) registered clients.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_TOKEN_CAPACITY, Self::DEFAULT_CLIENT_CAPACITY)
    }

    /// A store with room for `tokens` access and refresh tokens, as many pending requests, codes and
    /// ceremonies again, and `clients` registered clients. Passkeys are not bounded (an owner has
    /// a few).
    pub fn with_capacity(tokens: u64, clients: u64) -> Self {
        Self {
            long_lived: Tier::new(tokens),
            transient: Tier::new(tokens),
            clients: Cache::builder()
                .max_capacity(clients)
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(ByRecord)
                .build(),
            passkeys: Arc::default(),
        }
    }

    fn tier(&self, kind: TokenKind) -> &Tier {
        match kind {
            TokenKind::AuthorizationRequest
            | TokenKind::AuthorizationCode
            | TokenKind::PasskeyCeremony => &self.transient,
            _ => &self.long_lived,
        }
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
        let tier = self.tier(record.kind);
        let key = (record.kind, record.hash);
        tier.index(record.grant_id.clone(), key, record.expires_at)
            .await;
        // A failed insert leaves its index entry behind: harmless (revocation checks the grant of
        // what it finds), and gone when the index entry expires.
        let stored = Arc::new(StoredToken {
            record,
            consumed_at: None,
        });
        let result = tier
            .records
            .entry(key)
            .and_compute_with(|existing| async move {
                match existing {
                    Some(entry) if entry.value().is_live(UnixTime::now()) => Op::Nop,
                    _ => Op::Put(stored),
                }
            })
            .await;
        match result {
            CompResult::Unchanged(_) => Err(StoreError::AlreadyExists { what: "token" }),
            _ => Ok(()),
        }
    }

    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let now = UnixTime::now();
        Ok(self
            .tier(kind)
            .records
            .get(&(kind, *hash))
            .await
            .filter(|stored| stored.is_live(now) && stored.consumed_at.is_none())
            .map(|stored| stored.record.clone()))
    }

    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<Consumed>, StoreError> {
        // moka runs one computation per key at a time: the one that sees the record unconsumed and
        // marks it is the only winner.
        let result = self
            .tier(kind)
            .records
            .entry((kind, *hash))
            .and_compute_with(|existing| async move {
                let now = UnixTime::now();
                match existing {
                    Some(entry) if !entry.value().is_live(now) => Op::Remove,
                    Some(entry) if entry.value().consumed_at.is_some() => Op::Nop,
                    Some(entry) => Op::Put(Arc::new(StoredToken {
                        record: entry.value().record.clone(),
                        consumed_at: Some(now),
                    })),
                    None => Op::Nop,
                }
            })
            .await;
        Ok(match result {
            CompResult::ReplacedWith(entry) => Some(Consumed::First(entry.value().record.clone())),
            CompResult::Unchanged(entry) => {
                let stored = entry.into_value();
                Some(Consumed::Replayed {
                    record: stored.record.clone(),
                    consumed_at: stored.consumed_at.unwrap_or_else(UnixTime::now),
                })
            }
            _ => None,
        })
    }

    async fn delete(&self, kind: TokenKind, hash: &TokenHash) -> Result<bool, StoreError> {
        let tier = self.tier(kind);
        let key = (kind, *hash);
        // A computation rather than `remove`, so it is ordered with a concurrent consume.
        let result = tier
            .records
            .entry(key)
            .and_compute_with(|existing| async move {
                match existing {
                    Some(_) => Op::Remove,
                    None => Op::Nop,
                }
            })
            .await;
        let CompResult::Removed(entry) = result else {
            return Ok(false);
        };
        let stored = entry.into_value();
        tier.unindex(stored.record.grant_id.clone(), key).await;
        Ok(stored.is_live(UnixTime::now()))
    }

    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let now = UnixTime::now();
        Ok(self
            .long_lived
            .records
            .iter()
            .filter(|(key, stored)| key.0 == TokenKind::Grant && stored.is_live(now))
            .map(|(_, stored)| stored.record.clone())
            .collect())
    }

    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError> {
        let transient = self.transient.revoke(grant_id).await;
        let long_lived = self.long_lived.revoke(grant_id).await;
        Ok(transient + long_lived)
    }

    /// Hurries moka's own removal of expired entries along. Returns 0: moka does not report how
    /// many it dropped.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.long_lived.run_pending_tasks().await;
        self.transient.run_pending_tasks().await;
        Ok(0)
    }
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn insert(&self, client: ClientRecord) -> Result<(), StoreError> {
        let client = Arc::new(client);
        let result = self
            .clients
            .entry(client.client_id.clone())
            .and_compute_with(|existing| async move {
                match existing {
                    Some(entry) if entry.value().is_live(UnixTime::now()) => Op::Nop,
                    _ => Op::Put(client),
                }
            })
            .await;
        match result {
            CompResult::Unchanged(_) => Err(StoreError::AlreadyExists { what: "client" }),
            _ => Ok(()),
        }
    }

    async fn get(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let now = UnixTime::now();
        Ok(self
            .clients
            .get(client_id)
            .await
            .filter(|client| client.is_live(now))
            .map(|client| ClientRecord::clone(&client)))
    }

    async fn delete(&self, client_id: &str) -> Result<bool, StoreError> {
        let now = UnixTime::now();
        let result = self
            .clients
            .entry(client_id.to_owned())
            .and_compute_with(|existing| async move {
                match existing {
                    Some(_) => Op::Remove,
                    None => Op::Nop,
                }
            })
            .await;
        Ok(matches!(result, CompResult::Removed(entry) if entry.value().is_live(now)))
    }

    async fn list(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let now = UnixTime::now();
        Ok(self
            .clients
            .iter()
            .filter(|(_, client)| client.is_live(now))
            .map(|(_, client)| ClientRecord::clone(&client))
            .collect())
    }

    /// Hurries moka's own removal of expired entries along. Returns 0: moka does not report how
    /// many it dropped.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.clients.run_pending_tasks().await;
        Ok(0)
    }
}

#[async_trait]
impl PasskeyStore for MemoryStore {
    async fn list(&self) -> Result<Vec<PasskeyRecord>, StoreError> {
        Ok(self.passkeys.read().await.clone())
    }

    async fn get(&self, credential_id: &str) -> Result<Option<PasskeyRecord>, StoreError> {
        Ok(self
            .passkeys
            .read()
            .await
            .iter()
            .find(|p| p.credential_id == credential_id)
            .cloned())
    }

    async fn insert(&self, record: PasskeyRecord) -> Result<(), StoreError> {
        let mut passkeys = self.passkeys.write().await;
        if passkeys
            .iter()
            .any(|p| p.credential_id == record.credential_id)
        {
            return Err(StoreError::AlreadyExists { what: "passkey" });
        }
        passkeys.push(record);
        Ok(())
    }

    async fn update(&self, record: PasskeyRecord) -> Result<bool, StoreError> {
        let mut passkeys = self.passkeys.write().await;
        match passkeys
            .iter_mut()
            .find(|p| p.credential_id == record.credential_id)
        {
            Some(slot) => {
                *slot = record;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete(&self, credential_id: &str) -> Result<bool, StoreError> {
        let mut passkeys = self.passkeys.write().await;
        let before = passkeys.len();
        passkeys.retain(|p| p.credential_id != credential_id);
        Ok(passkeys.len() < before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: TokenKind, secret: &str, grant: &str) -> TokenRecord {
        TokenRecord {
            kind,
            hash: TokenHash::of(secret),
            grant_id: GrantId(grant.to_owned()),
            expires_at: UnixTime::now().plus(3600),
            payload: Vec::new(),
        }
    }

    async fn index_len(tier: &Tier, grant: &str) -> Option<usize> {
        let members = tier.grants.get(&GrantId(grant.to_owned())).await?;
        Some(members.lock().keys.len())
    }

    #[tokio::test]
    async fn a_flood_of_pending_requests_cannot_evict_or_unindex_live_tokens() {
        let store = MemoryStore::with_capacity(50, 10);
        TokenStore::insert(&store, record(TokenKind::AccessToken, "live", "grant"))
            .await
            .unwrap();
        for i in 0..1000 {
            let flood = record(
                TokenKind::AuthorizationRequest,
                &format!("flood-{i}"),
                &format!("flood-grant-{i}"),
            );
            TokenStore::insert(&store, flood).await.unwrap();
        }
        store.transient.run_pending_tasks().await;
        store.long_lived.run_pending_tasks().await;
        assert!(
            store.transient.records.entry_count() <= 50,
            "transient records are bounded"
        );
        assert!(
            store.transient.grants.entry_count() <= 50,
            "their grant index is bounded"
        );
        let live = TokenStore::get(&store, TokenKind::AccessToken, &TokenHash::of("live")).await;
        assert!(
            live.unwrap().is_some(),
            "the access token survived the flood"
        );
        let revoked = store.revoke_grant(&GrantId("grant".into())).await.unwrap();
        assert_eq!(revoked, 1, "and can still be revoked");
    }

    #[tokio::test]
    async fn the_grant_index_does_not_outlive_its_records() {
        let store = MemoryStore::new();
        // Deleting the last member drops the index entry.
        let live = record(TokenKind::AccessToken, "a", "deleted-grant");
        TokenStore::insert(&store, live.clone()).await.unwrap();
        assert_eq!(index_len(&store.long_lived, "deleted-grant").await, Some(1));
        assert!(
            TokenStore::delete(&store, live.kind, &live.hash)
                .await
                .unwrap()
        );
        assert_eq!(index_len(&store.long_lived, "deleted-grant").await, None);

        // An already expired record leaves nothing behind.
        let mut expired = record(TokenKind::RefreshToken, "b", "expired-grant");
        expired.expires_at = UnixTime(UnixTime::now().0 - 60);
        TokenStore::insert(&store, expired.clone()).await.unwrap();
        store.long_lived.run_pending_tasks().await;
        assert_eq!(index_len(&store.long_lived, "expired-grant").await, None);
    }

    #[tokio::test]
    async fn a_long_grant_prunes_expired_members() {
        let tier = Tier::new(1000);
        let grant = GrantId("rotating".into());
        let past = UnixTime(UnixTime::now().0 - 60);
        for i in 0..1000u32 {
            let key = (TokenKind::RefreshToken, TokenHash::of(&i.to_string()));
            tier.index(grant.clone(), key, past).await;
            let live = (TokenKind::AccessToken, TokenHash::of("live"));
            if i == 0 {
                tier.index(grant.clone(), live, UnixTime::now().plus(3600))
                    .await;
            }
        }
        let members = tier.grants.get(&grant).await.unwrap();
        assert!(
            members.lock().keys.len() <= 64,
            "expired members are pruned"
        );
        assert!(
            members
                .lock()
                .keys
                .iter()
                .any(|(k, _)| k.0 == TokenKind::AccessToken),
            "live members are kept"
        );
    }

    #[tokio::test]
    async fn delete_then_reinsert_in_the_same_grant_stays_revocable() {
        let store = MemoryStore::new();
        let first = record(TokenKind::AccessToken, "same", "grant");
        TokenStore::insert(&store, first.clone()).await.unwrap();
        // The second insert is indexed before the first record's delete unindexes it.
        store
            .long_lived
            .index(
                first.grant_id.clone(),
                (first.kind, first.hash),
                first.expires_at,
            )
            .await;
        TokenStore::delete(&store, first.kind, &first.hash)
            .await
            .unwrap();
        let tier = &store.long_lived;
        tier.records
            .insert(
                (first.kind, first.hash),
                Arc::new(StoredToken {
                    record: first.clone(),
                    consumed_at: None,
                }),
            )
            .await;
        assert_eq!(store.revoke_grant(&first.grant_id).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn deleting_an_expired_leftover_reports_nothing_removed() {
        let store = MemoryStore::new();
        let mut expired = record(TokenKind::AccessToken, "old", "grant");
        expired.expires_at = UnixTime(UnixTime::now().0 - 60);
        TokenStore::insert(&store, expired.clone()).await.unwrap();
        assert!(
            !TokenStore::delete(&store, expired.kind, &expired.hash)
                .await
                .unwrap()
        );
    }
}
