//! The token tables of [`MemoryStore`](super::MemoryStore): sharded hash maps under read-write
//! locks (the bearer guard only reads, so requests with the same token never wait for each other).
//!
//! Not a general cache: a token table needs atomic per-key operations (insert-if-absent, consume),
//! exact expiry and removal by grant, and nothing else. Built on moka, those cost a compute with
//! waiters per operation, a second cache for the grant index, and about 1.4 KB per token; here they
//! are one short critical section on one shard, and about 330 bytes per token (`BENCHMARKS.md`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::store::{Consumed, GrantId, TokenHash, TokenKind, TokenRecord, UnixTime};

/// How often, at most, an insert sweeps its shard's expired records (seconds).
const SWEEP_EVERY_SECS: u64 = 60;

/// A record's key: its kind and the SHA-256 of its secret.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    kind: TokenKind,
    hash: TokenHash,
}

// The hash is SHA-256 output of a secret the server generated: uniform, and not something a caller
// can steer, so eight of its bytes serve as the table hash (no SipHash on the bearer hot path).
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.hash.0[..8]);
        state.write_u64(u64::from_le_bytes(head) ^ self.kind as u64);
    }
}

/// Passes [`Key`]'s `write_u64` through.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Key`; fold anything else in rather than drop it.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 ^= value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A stored record, without its key.
#[derive(Debug)]
struct Stored {
    grant_id: GrantId,
    payload: Box<[u8]>,
    expires_at: UnixTime,
    consumed_at: Option<UnixTime>,
}

impl Stored {
    fn is_live(&self, now: UnixTime) -> bool {
        self.expires_at.is_after(now)
    }

    /// Eviction order, lowest first: consumed before live, then by expiry.
    fn rank(&self) -> (bool, UnixTime) {
        (self.consumed_at.is_none(), self.expires_at)
    }

    fn record(&self, key: Key) -> TokenRecord {
        TokenRecord {
            kind: key.kind,
            hash: key.hash,
            grant_id: self.grant_id.clone(),
            expires_at: self.expires_at,
            payload: self.payload.to_vec(),
        }
    }
}

struct Shard {
    records: HashMap<Key, Stored, BuildHasherDefault<KeyHasher>>,
    /// When an insert next drops the shard's expired records.
    next_sweep: UnixTime,
}

impl Default for Shard {
    fn default() -> Self {
        Self {
            records: HashMap::default(),
            next_sweep: UnixTime::now().plus(SWEEP_EVERY_SECS),
        }
    }
}

impl Shard {
    fn sweep(&mut self, now: UnixTime) -> usize {
        let before = self.records.len();
        self.records.retain(|_, stored| stored.is_live(now));
        self.next_sweep = now.plus(SWEEP_EVERY_SECS);
        before - self.records.len()
    }

    /// Before an insert: drop expired records once a minute, and when the shard is full, drop
    /// expired records and then evict, down to seven eighths of `capacity`, first consumed
    /// records (kept only to recognise a replay; every refresh leaves one for the refresh token's
    /// whole lifetime), then the live ones closest to expiry. Each full pass frees an eighth of
    /// the shard, so its cost is amortised over as many inserts.
    fn make_room(&mut self, capacity: usize, now: UnixTime) {
        let full = self.records.len() >= capacity;
        if full || now >= self.next_sweep {
            self.sweep(now);
        }
        let keep = capacity - capacity.div_ceil(8);
        if !full || self.records.len() <= keep {
            return;
        }
        let mut evict = self.records.len() - keep;
        let mut ranks: Vec<(bool, UnixTime)> = self.records.values().map(Stored::rank).collect();
        let (_, &mut threshold, _) = ranks.select_nth_unstable(evict - 1);
        // Everything ranked below the threshold goes, then records at it until enough have.
        self.records.retain(|_, stored| {
            if stored.rank() < threshold {
                evict -= 1;
                false
            } else {
                true
            }
        });
        self.records.retain(|_, stored| {
            if evict > 0 && stored.rank() == threshold {
                evict -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// One bounded table of token records: the long-lived one (access and refresh tokens, markers) or
/// the transient one (pending requests, codes, ceremonies).
pub(super) struct TokenTable {
    shards: Box<[RwLock<Shard>]>,
    shard_capacity: usize,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTable")
            .field("records", &self.len())
            .field("capacity", &(self.shard_capacity * self.shards.len()))
            .finish()
    }
}

impl TokenTable {
    /// Room for `capacity` records, spread over up to 32 shards of at least 1,024 (so that a small
    /// capacity stays exact).
    pub(super) fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        let shards = (capacity / 1024).clamp(1, 32).next_power_of_two().min(32);
        Self {
            shards: (0..shards).map(|_| RwLock::default()).collect(),
            shard_capacity: capacity / shards,
        }
    }

    fn shard_of(&self, key: &Key) -> &RwLock<Shard> {
        // A different byte of the hash than the table hash uses, so shards fill evenly. Not the
        // kind: a consumed refresh token and the pair kept for its retries share a shard, where
        // consumed records are evicted first, so the pair never goes while the token can still
        // be retried (a retry finding no pair would rotate the token again).
        &self.shards[usize::from(key.hash.0[31]) & (self.shards.len() - 1)]
    }

    // Every critical section leaves the map consistent, so a panic elsewhere cannot corrupt it.
    fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
        shard.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
        shard.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| Self::read(s).records.len())
            .sum()
    }

    /// Insert if no live record has the key; whether it was inserted.
    pub(super) fn insert(&self, record: TokenRecord) -> bool {
        let key = Key {
            kind: record.kind,
            hash: record.hash,
        };
        let now = UnixTime::now();
        let mut shard = Self::write(self.shard_of(&key));
        if shard.records.get(&key).is_some_and(|s| s.is_live(now)) {
            return false;
        }
        shard.make_room(self.shard_capacity, now);
        shard.records.insert(
            key,
            Stored {
                grant_id: record.grant_id,
                payload: record.payload.into_boxed_slice(),
                expires_at: record.expires_at,
                consumed_at: None,
            },
        );
        true
    }

    /// The live, unconsumed record.
    pub(super) fn get(&self, kind: TokenKind, hash: &TokenHash) -> Option<TokenRecord> {
        let key = Key { kind, hash: *hash };
        let now = UnixTime::now();
        let shard = Self::read(self.shard_of(&key));
        let stored = shard.records.get(&key)?;
        (stored.is_live(now) && stored.consumed_at.is_none()).then(|| stored.record(key))
    }

    /// Mark the record consumed: the first caller gets it, later ones learn it was replayed.
    pub(super) fn consume(&self, kind: TokenKind, hash: &TokenHash) -> Option<Consumed> {
        let key = Key { kind, hash: *hash };
        let now = UnixTime::now();
        let mut shard = Self::write(self.shard_of(&key));
        let Entry::Occupied(mut entry) = shard.records.entry(key) else {
            return None;
        };
        if !entry.get().is_live(now) {
            entry.remove();
            return None;
        }
        let stored = entry.get_mut();
        Some(match stored.consumed_at {
            Some(consumed_at) => Consumed::Replayed {
                record: stored.record(key),
                consumed_at,
            },
            None => {
                stored.consumed_at = Some(now);
                Consumed::First(stored.record(key))
            }
        })
    }

    /// Remove the record; whether a live one was removed.
    pub(super) fn delete(&self, kind: TokenKind, hash: &TokenHash) -> bool {
        let key = Key { kind, hash: *hash };
        let removed = Self::write(self.shard_of(&key)).records.remove(&key);
        removed.is_some_and(|stored| stored.is_live(UnixTime::now()))
    }

    /// Remove every record of the grant: a pass over the table, one shard at a time. Revocation
    /// is rare (the owner's console, RFC 7009, a replayed code or refresh token), so the common
    /// path keeps no per-grant index to maintain.
    pub(super) fn revoke(&self, grant_id: &GrantId) -> u64 {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = Self::write(shard);
            let before = shard.records.len();
            shard
                .records
                .retain(|_, stored| stored.grant_id != *grant_id);
            removed += before - shard.records.len();
        }
        removed as u64
    }

    /// Every live record of `kind`.
    pub(super) fn list(&self, kind: TokenKind) -> Vec<TokenRecord> {
        let now = UnixTime::now();
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = Self::read(shard);
            out.extend(
                shard
                    .records
                    .iter()
                    .filter(|(key, stored)| key.kind == kind && stored.is_live(now))
                    .map(|(key, stored)| stored.record(*key)),
            );
        }
        out
    }

    /// Drop every expired record; how many were dropped.
    pub(super) fn sweep(&self) -> u64 {
        let now = UnixTime::now();
        let swept: usize = self.shards.iter().map(|s| Self::write(s).sweep(now)).sum();
        swept as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(secret: &str, grant: &str, expires_in: u64) -> TokenRecord {
        TokenRecord {
            kind: TokenKind::AccessToken,
            hash: TokenHash::of(secret),
            grant_id: GrantId(grant.to_owned()),
            expires_at: UnixTime::now().plus(expires_in),
            payload: b"payload".to_vec(),
        }
    }

    #[test]
    fn a_full_table_evicts_the_records_closest_to_expiry() {
        let table = TokenTable::new(64);
        let long = record("long-lived", "g", 86_400);
        assert!(table.insert(long.clone()));
        for i in 0..1_000 {
            assert!(table.insert(record(&format!("short-{i}"), "flood", 60 + i % 7)));
            assert!(table.len() <= 64, "bounded at every step");
        }
        assert!(
            table.get(long.kind, &long.hash).is_some(),
            "the record expiring last survives"
        );
        assert!(
            table
                .get(TokenKind::AccessToken, &TokenHash::of("short-999"))
                .is_some(),
            "a new record is always admitted"
        );
    }

    #[test]
    fn a_full_table_evicts_consumed_records_before_live_ones() {
        let table = TokenTable::new(64);
        // An access token in use, expiring soon, and many rotated refresh tokens expiring later.
        let access = record("access", "g", 3_600);
        assert!(table.insert(access.clone()));
        for i in 0..1_000 {
            let refresh = record(&format!("rotated-{i}"), "g", 30 * 86_400);
            assert!(table.insert(refresh.clone()));
            assert!(matches!(
                table.consume(refresh.kind, &refresh.hash),
                Some(Consumed::First(_))
            ));
        }
        assert!(
            table.get(access.kind, &access.hash).is_some(),
            "replay markers go before a live token"
        );
    }

    #[test]
    fn a_kept_pair_is_never_evicted_before_the_consumed_refresh_token_it_answers_for() {
        let table = TokenTable::new(4_096);
        let mut rotated = Vec::new();
        for i in 0..200 {
            let refresh = TokenRecord {
                kind: TokenKind::RefreshToken,
                ..record(&format!("rt-{i}"), "g", 30 * 86_400)
            };
            assert!(table.insert(refresh.clone()));
            table.consume(refresh.kind, &refresh.hash);
            let pair = TokenRecord {
                kind: TokenKind::RefreshSuccessor,
                ..record(&format!("rt-{i}"), "g", 90)
            };
            assert!(table.insert(pair));
            rotated.push(refresh.hash);
        }
        for i in 0..20_000 {
            table.insert(record(&format!("flood-{i}"), "flood", 86_400));
        }
        let mut evicted = 0;
        for hash in &rotated {
            if table.get(TokenKind::RefreshSuccessor, hash).is_none() {
                evicted += 1;
                assert_eq!(
                    table.consume(TokenKind::RefreshToken, hash),
                    None,
                    "a pair went while its token could still be retried"
                );
            }
        }
        assert!(evicted > 0, "the flood evicted kept pairs");
    }

    #[test]
    fn expired_records_are_swept_and_never_returned() {
        let table = TokenTable::new(100);
        let mut expired = record("old", "g", 0);
        expired.expires_at = UnixTime(UnixTime::now().0 - 60);
        assert!(table.insert(expired.clone()));
        assert_eq!(table.get(expired.kind, &expired.hash), None);
        assert_eq!(table.consume(expired.kind, &expired.hash), None);
        assert!(
            table.insert(expired.clone()),
            "an expired record does not block its key"
        );
        assert!(table.insert(record("live", "g", 60)));
        assert_eq!(table.sweep(), 1);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn large_tables_are_sharded_and_keep_their_capacity() {
        let table = TokenTable::new(2_000_000);
        assert_eq!(table.shards.len(), 32);
        assert_eq!(table.shard_capacity * 32, 2_000_000);
        assert_eq!(TokenTable::new(50).shards.len(), 1);
        assert_eq!(TokenTable::new(0).shard_capacity, 1);
    }

    #[test]
    fn revoking_removes_every_record_of_the_grant_and_only_those() {
        let table = TokenTable::new(10_000);
        for i in 0..100 {
            table.insert(record(&format!("a{i}"), "revoked", 60));
            table.insert(record(&format!("b{i}"), "kept", 60));
        }
        table.consume(TokenKind::AccessToken, &TokenHash::of("a7"));
        assert_eq!(table.revoke(&GrantId("revoked".into())), 100);
        assert_eq!(table.len(), 100);
        assert_eq!(table.revoke(&GrantId("revoked".into())), 0);
    }
}
