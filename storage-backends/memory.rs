//! [`MemoryStore`]: tokens, clients and passkeys in process memory (moka caches with per-entry
//! expiry and bounded capacity). The default; nothing survives a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};
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

/// The records of one grant, with their expiries, so a grant can be revoked without a scan.
#[derive(Debug, Default)]
struct GrantMembers {
    members: Vec<(TokenKey, UnixTime)>,
}

impl GrantMembers {
    fn expires_at(&self) -> UnixTime {
        self.members
            .iter()
            .map(|(_, at)| *at)
            .max()
            .unwrap_or(UnixTime(0))
    }
}

/// How long from now until `at`, for moka's per-entry expiry.
fn until(at: UnixTime) -> Duration {
    Duration::from_secs(at.0.saturating_sub(UnixTime::now().0))
}

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

/// In-memory storage for all three traits.
///
/// Bounded: past its capacity the least used entries are evicted. Access and refresh tokens have a
/// cache of their own, apart from the pending requests, codes and passkey ceremonies that anonymous
/// visitors can create, so a flood of those cannot push out live tokens.
///
/// Single process: run one instance, or use a shared backend. Cloning is cheap and shares the data.
#[derive(Clone)]
pub struct MemoryStore {
    /// Access and refresh tokens, and other long-lived markers.
    tokens: Cache<TokenKey, Arc<StoredToken>>,
    /// Pending requests, codes and ceremonies: minutes-long, and what an anonymous visitor can
    /// create. Kept apart so that a flood of them can never evict a live access token.
    transient: Cache<TokenKey, Arc<StoredToken>>,
    grants: Cache<GrantId, Arc<GrantMembers>>,
    clients: Cache<String, Arc<ClientRecord>>,
    passkeys: Arc<RwLock<Vec<PasskeyRecord>>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("tokens", &self.tokens.entry_count())
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
    /// Room for 1,000,000 tokens and 100,000 registered clients.
    pub fn new() -> Self {
        Self::with_capacity(1_000_000, 100_000)
    }

    /// Room for `tokens` access and refresh tokens, as many pending requests, codes and ceremonies,
    /// and `clients` registered clients.
    pub fn with_capacity(tokens: u64, clients: u64) -> Self {
        Self {
            tokens: Cache::builder()
                .max_capacity(tokens)
                .expire_after(ByRecord)
                .build(),
            transient: Cache::builder()
                .max_capacity(tokens)
                .expire_after(ByRecord)
                .build(),
            grants: Cache::builder()
                .max_capacity(tokens)
                .expire_after(ByRecord)
                .build(),
            clients: Cache::builder()
                .max_capacity(clients)
                .expire_after(ByRecord)
                .build(),
            passkeys: Arc::default(),
        }
    }

    fn cache(&self, kind: TokenKind) -> &Cache<TokenKey, Arc<StoredToken>> {
        match kind {
            TokenKind::AuthorizationRequest
            | TokenKind::AuthorizationCode
            | TokenKind::PasskeyCeremony => &self.transient,
            _ => &self.tokens,
        }
    }

    async fn index(&self, record: &TokenRecord) {
        let key = (record.kind, record.hash);
        let expires_at = record.expires_at;
        self.grants
            .entry(record.grant_id.clone())
            .and_compute_with(|existing| async move {
                let now = UnixTime::now();
                let mut members: Vec<_> = existing
                    .map(|e| e.into_value().members.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, at)| at.is_after(now))
                    .collect();
                members.push((key, expires_at));
                Op::Put(Arc::new(GrantMembers { members }))
            })
            .await;
    }
}

fn live(stored: &StoredToken, now: UnixTime) -> bool {
    stored.record.expires_at.is_after(now)
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
        let key = (record.kind, record.hash);
        let stored = Arc::new(StoredToken {
            record: record.clone(),
            consumed_at: None,
        });
        let result = self
            .cache(record.kind)
            .entry(key)
            .and_compute_with(|existing| async move {
                match existing {
                    Some(entry) if live(entry.value(), UnixTime::now()) => Op::Nop,
                    _ => Op::Put(stored),
                }
            })
            .await;
        match result {
            CompResult::Unchanged(_) => Err(StoreError::AlreadyExists { what: "token" }),
            _ => {
                self.index(&record).await;
                Ok(())
            }
        }
    }

    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let now = UnixTime::now();
        Ok(self
            .cache(kind)
            .get(&(kind, *hash))
            .await
            .filter(|stored| live(stored, now) && stored.consumed_at.is_none())
            .map(|stored| stored.record.clone()))
    }

    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<Consumed>, StoreError> {
        // `and_compute_with` runs one computation per key at a time: the one that sees the record
        // unconsumed and marks it is the only winner.
        let result = self
            .cache(kind)
            .entry((kind, *hash))
            .and_compute_with(|existing| async move {
                let now = UnixTime::now();
                match existing {
                    Some(entry) if !live(entry.value(), now) => Op::Remove,
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
        Ok(self.cache(kind).remove(&(kind, *hash)).await.is_some())
    }

    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError> {
        let Some(index) = self.grants.remove(grant_id).await else {
            return Ok(0);
        };
        let mut removed = 0;
        for (key, _) in &index.members {
            // Only remove the record if it still belongs to this grant.
            let grant = grant_id.clone();
            let result = self
                .cache(key.0)
                .entry(*key)
                .and_compute_with(|existing| async move {
                    match existing {
                        Some(entry) if entry.value().record.grant_id == grant => Op::Remove,
                        _ => Op::Nop,
                    }
                })
                .await;
            if matches!(result, CompResult::Removed(_)) {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn delete_expired(&self) -> Result<u64, StoreError> {
        // moka drops expired entries itself; this only hurries it along.
        self.tokens.run_pending_tasks().await;
        self.transient.run_pending_tasks().await;
        self.grants.run_pending_tasks().await;
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
        Ok(self.clients.remove(client_id).await.is_some())
    }

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

    fn record(kind: TokenKind, secret: &str) -> TokenRecord {
        TokenRecord {
            kind,
            hash: TokenHash::of(secret),
            grant_id: GrantId(secret.to_owned()),
            expires_at: UnixTime::now().plus(3600),
            payload: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_flood_of_pending_requests_cannot_evict_live_tokens() {
        let store = MemoryStore::with_capacity(50, 10);
        TokenStore::insert(&store, record(TokenKind::AccessToken, "live"))
            .await
            .unwrap();
        for i in 0..1000 {
            let flood = record(TokenKind::AuthorizationRequest, &format!("flood-{i}"));
            TokenStore::insert(&store, flood).await.unwrap();
        }
        store.transient.run_pending_tasks().await;
        store.tokens.run_pending_tasks().await;
        assert!(
            store.transient.entry_count() <= 50,
            "transient records are bounded"
        );
        let live = TokenStore::get(&store, TokenKind::AccessToken, &TokenHash::of("live")).await;
        assert!(
            live.unwrap().is_some(),
            "the access token survived the flood"
        );
    }
}
