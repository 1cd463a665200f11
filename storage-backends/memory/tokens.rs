//! The token tables of [`MemoryStore`](super::MemoryStore): sharded hash maps under read-write
//! locks (the bearer guard only reads, so requests with the same token never wait for each other).
//!
//! Not a general cache: a token table needs atomic per-key operations (insert-if-absent, consume),
//! exact expiry and removal by grant, and nothing else. Built on moka, those cost a compute with
//! waiters per operation, a second cache for the grant index, and about 1.4 KB per token; here they
//! are one short critical section on one shard, and about 330 bytes per token (`BENCHMARKS.md`).
//!
//! Bounded twice: by records, and by bytes (each record counted as its payload and grant id plus
//! [`ENTRY_OVERHEAD`]), so records made as large as the protocol allows fill the table no faster
//! in memory than small ones.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::store::{Consumed, GrantId, TokenHash, TokenKind, TokenRecord, UnixTime};

/// How often, at most, an insert sweeps its shard's expired records (seconds).
const SWEEP_EVERY_SECS: u64 = 60;

/// The bytes a record costs beyond its payload and grant id: its hash map slot (key, fixed
/// fields, control byte, spare capacity) and two allocations' headers. An estimate, on the high
/// side of what `BENCHMARKS.md` measures.
pub(super) const ENTRY_OVERHEAD: usize = 128;

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

/// A record's place in the eviction order, lowest evicted first.
type Rank = (bool, bool, UnixTime);

impl Stored {
    fn is_live(&self, now: UnixTime) -> bool {
        self.expires_at.is_after(now)
    }

    /// The bytes this record counts against the table's budget.
    fn weight(&self) -> usize {
        ENTRY_OVERHEAD + self.payload.len() + self.grant_id.0.len()
    }

    /// Eviction order, lowest first: consumed before live; then what anyone can create (a
    /// pending request, a ceremony) before what the owner approved (a code); then by expiry.
    /// Pinned records ([`is_pinned`]) are never in it.
    fn rank(&self, key: &Key) -> Rank {
        let approved = !matches!(
            key.kind,
            TokenKind::AuthorizationRequest | TokenKind::PasskeyCeremony
        );
        (self.consumed_at.is_none(), approved, self.expires_at)
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

/// Whether records of `kind` are never evicted: a used client assertion's marker, whose absence
/// would let the assertion be used again. A shard full of them refuses inserts instead.
fn is_pinned(kind: TokenKind) -> bool {
    matches!(kind, TokenKind::ClientAssertion)
}

/// What one shard may hold.
#[derive(Clone, Copy, Debug)]
struct ShardLimits {
    records: usize,
    bytes: usize,
}

struct Shard {
    records: HashMap<Key, Stored, BuildHasherDefault<KeyHasher>>,
    /// The sum of the records' weights; kept by the methods below, the only ones that add or
    /// remove records.
    bytes: usize,
    /// When an insert next drops the shard's expired records.
    next_sweep: UnixTime,
}

impl Default for Shard {
    fn default() -> Self {
        Self {
            records: HashMap::default(),
            bytes: 0,
            next_sweep: UnixTime::now().plus(SWEEP_EVERY_SECS),
        }
    }
}

impl Shard {
    /// Store a record, replacing any under its key.
    fn put(&mut self, key: Key, stored: Stored) {
        self.bytes += stored.weight();
        if let Some(old) = self.records.insert(key, stored) {
            self.bytes -= old.weight();
        }
    }

    fn remove(&mut self, key: &Key) -> Option<Stored> {
        let removed = self.records.remove(key)?;
        self.bytes -= removed.weight();
        Some(removed)
    }

    /// Keep the records `keep` says yes to; how many went.
    fn retain(&mut self, mut keep: impl FnMut(&Key, &Stored) -> bool) -> usize {
        let before = self.records.len();
        let mut freed = 0;
        self.records.retain(|key, stored| {
            let kept = keep(key, stored);
            if !kept {
                freed += stored.weight();
            }
            kept
        });
        self.bytes -= freed;
        before - self.records.len()
    }

    fn sweep(&mut self, now: UnixTime) -> usize {
        self.next_sweep = now.plus(SWEEP_EVERY_SECS);
        self.retain(|_, stored| stored.is_live(now))
    }

    /// Before inserting a record of `incoming` bytes: drop expired records once a minute, and
    /// when the shard is full (by records or by bytes), drop expired records and then evict,
    /// down to seven eighths of each limit, first consumed records (kept only to recognise a
    /// replay; every refresh leaves one for the refresh token's whole lifetime), then records
    /// nobody approved, then the live ones closest to expiry. Each full pass frees an eighth of
    /// the shard, so its cost is amortised over as many inserts. Pinned records stay; whether
    /// there is room for the incoming record now.
    fn make_room(&mut self, limits: ShardLimits, incoming: usize, now: UnixTime) -> bool {
        let has_room = |shard: &Self| {
            shard.records.len() < limits.records && shard.bytes + incoming <= limits.bytes
        };
        let full = !has_room(self);
        if full || now >= self.next_sweep {
            self.sweep(now);
        }
        let keep_records = limits.records - limits.records.div_ceil(8);
        let keep_bytes = (limits.bytes - limits.bytes / 8).saturating_sub(incoming);
        let over = |records: usize, bytes: usize| records > keep_records || bytes > keep_bytes;
        if !full || !over(self.records.len(), self.bytes) {
            return has_room(self);
        }
        // The rank below which every record goes, and at which some do, to get under both limits.
        let mut ranked: Vec<(Rank, usize)> = self
            .records
            .iter()
            .filter(|(key, _)| !is_pinned(key.kind))
            .map(|(key, stored)| (stored.rank(key), stored.weight()))
            .collect();
        ranked.sort_unstable_by_key(|&(rank, _)| rank);
        let (mut records, mut bytes) = (self.records.len(), self.bytes);
        let mut threshold = None;
        for (rank, weight) in ranked {
            if !over(records, bytes) {
                break;
            }
            records -= 1;
            bytes -= weight;
            threshold = Some(rank);
        }
        let Some(threshold) = threshold else {
            return has_room(self);
        };
        self.retain(|key, stored| is_pinned(key.kind) || stored.rank(key) >= threshold);
        // Removing every record at the threshold gets under both limits (or removes every
        // record that may go), so this ends there.
        let (mut records, mut bytes) = (self.records.len(), self.bytes);
        self.retain(|key, stored| {
            if over(records, bytes) && !is_pinned(key.kind) && stored.rank(key) == threshold {
                records -= 1;
                bytes -= stored.weight();
                false
            } else {
                true
            }
        });
        has_room(self)
    }
}

/// What [`TokenTable::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Inserted {
    Done,
    /// A live record has the key.
    Exists,
    /// The shard is full of records that may not be evicted.
    Full,
}

/// One bounded table of token records: the long-lived one (access and refresh tokens, markers) or
/// the transient one (pending requests, codes, ceremonies).
pub(super) struct TokenTable {
    shards: Box<[RwLock<Shard>]>,
    shard_limits: ShardLimits,
    /// Picks a record's shard with a key of its own, so nobody can compute which shard a
    /// secret of theirs lands in and fill one shard to crowd out another's records.
    shard_picker: RandomState,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTable")
            .field("records", &self.len())
            .field("capacity", &(self.shard_limits.records * self.shards.len()))
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl TokenTable {
    /// Room for `capacity` records and `bytes` bytes, spread over up to 32 shards of at least
    /// 1,024 records (so that a small capacity stays exact).
    pub(super) fn new(capacity: u64, bytes: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX).max(1);
        let shards = (capacity / 1024).clamp(1, 32).next_power_of_two().min(32);
        Self {
            shards: (0..shards).map(|_| RwLock::default()).collect(),
            shard_limits: ShardLimits {
                records: capacity / shards,
                bytes: (bytes / shards).max(1),
            },
            shard_picker: RandomState::new(),
        }
    }

    fn shard_of(&self, key: &Key) -> &RwLock<Shard> {
        // By the hash alone, not the kind: a consumed refresh token and the pair kept for its
        // retries share a shard, where consumed records are evicted first, so the pair never goes
        // while the token can still be retried (a retry finding no pair would rotate it again).
        let picked = self.shard_picker.hash_one(key.hash.0);
        #[allow(clippy::cast_possible_truncation)] // only the low bits choose the shard
        let picked = picked as usize;
        &self.shards[picked & (self.shards.len() - 1)]
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

    /// How many records of `typical_bytes` each it holds before it evicts: its record limit, or
    /// its byte budget, whichever binds first.
    pub(super) fn room(&self, typical_bytes: usize) -> u64 {
        let shards = self.shards.len();
        let by_count = self.shard_limits.records * shards;
        let by_bytes = self.shard_limits.bytes * shards / typical_bytes.max(1);
        u64::try_from(by_count.min(by_bytes)).unwrap_or(u64::MAX)
    }

    /// The bytes the records count against the budget.
    pub(super) fn bytes(&self) -> usize {
        self.shards.iter().map(|s| Self::read(s).bytes).sum()
    }

    /// Insert if no live record has the key and there is room.
    pub(super) fn insert(&self, record: TokenRecord) -> Inserted {
        let key = Key {
            kind: record.kind,
            hash: record.hash,
        };
        let now = UnixTime::now();
        let mut shard = Self::write(self.shard_of(&key));
        if shard.records.get(&key).is_some_and(|s| s.is_live(now)) {
            return Inserted::Exists;
        }
        let stored = Stored {
            grant_id: record.grant_id,
            payload: record.payload.into_boxed_slice(),
            expires_at: record.expires_at,
            consumed_at: None,
        };
        if !shard.make_room(self.shard_limits, stored.weight(), now) {
            return Inserted::Full;
        }
        shard.put(key, stored);
        Inserted::Done
    }

    /// The live, unconsumed record.
    pub(super) fn get(&self, kind: TokenKind, hash: &TokenHash) -> Option<TokenRecord> {
        let key = Key { kind, hash: *hash };
        let now = UnixTime::now();
        let shard = Self::read(self.shard_of(&key));
        let stored = shard.records.get(&key)?;
        (stored.is_live(now) && stored.consumed_at.is_none()).then(|| stored.record(key))
    }

    /// Mark the record consumed: the first caller gets it (and its `at` is recorded), later ones
    /// learn it was replayed, and when.
    pub(super) fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        at: UnixTime,
    ) -> Option<Consumed> {
        let key = Key { kind, hash: *hash };
        let mut shard = Self::write(self.shard_of(&key));
        if !shard.records.get(&key)?.is_live(UnixTime::now()) {
            shard.remove(&key);
            return None;
        }
        let stored = shard.records.get_mut(&key)?;
        Some(match stored.consumed_at {
            Some(consumed_at) => Consumed::Replayed {
                record: stored.record(key),
                consumed_at,
            },
            None => {
                stored.consumed_at = Some(at);
                Consumed::First(stored.record(key))
            }
        })
    }

    /// Remove the record; whether a live one was removed.
    pub(super) fn delete(&self, kind: TokenKind, hash: &TokenHash) -> bool {
        let key = Key { kind, hash: *hash };
        let removed = Self::write(self.shard_of(&key)).remove(&key);
        removed.is_some_and(|stored| stored.is_live(UnixTime::now()))
    }

    /// Remove every record of the grant: a pass over the table, one shard at a time. Revocation
    /// is rare (the owner's console, RFC 7009, a replayed code or refresh token), so the common
    /// path keeps no per-grant index to maintain.
    pub(super) fn revoke(&self, grant_id: &GrantId) -> u64 {
        let mut removed = 0;
        for shard in &self.shards {
            removed += Self::write(shard).retain(|_, stored| stored.grant_id != *grant_id);
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
    fn used_assertion_markers_are_never_evicted_and_a_table_full_of_them_refuses() {
        let table = TokenTable::new(16, u64::MAX);
        let marker = |name: &str| TokenRecord {
            kind: TokenKind::ClientAssertion,
            // Expiring first: the rank would evict them first if they could go at all.
            ..record(name, name, 30)
        };
        assert_eq!(table.insert(marker("used")), Inserted::Done);
        for i in 0..40 {
            let flood = record(&format!("flood-{i}"), "flood", 3_600);
            assert_eq!(
                table.insert(flood),
                Inserted::Done,
                "other records make room"
            );
        }
        assert_eq!(
            table.insert(marker("used")),
            Inserted::Exists,
            "the used assertion's marker outlived the flood"
        );
        let mut refused = 0;
        for i in 0..40 {
            match table.insert(marker(&format!("marker-{i}"))) {
                Inserted::Done => {}
                Inserted::Full => refused += 1,
                Inserted::Exists => panic!("a fresh marker's key exists"),
            }
        }
        assert!(refused > 0, "a table full of markers refuses more");
        assert!(table.len() <= 16, "and stays within its bounds");
        assert_eq!(table.insert(marker("used")), Inserted::Exists);
    }

    #[test]
    fn a_full_table_evicts_the_records_closest_to_expiry() {
        let table = TokenTable::new(64, u64::MAX);
        let long = record("long-lived", "g", 86_400);
        assert_eq!(table.insert(long.clone()), Inserted::Done);
        for i in 0..1_000 {
            assert_eq!(
                table.insert(record(&format!("short-{i}"), "flood", 60 + i % 7)),
                Inserted::Done
            );
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
        let table = TokenTable::new(64, u64::MAX);
        // An access token in use, expiring soon, and many rotated refresh tokens expiring later.
        let access = record("access", "g", 3_600);
        assert_eq!(table.insert(access.clone()), Inserted::Done);
        for i in 0..1_000 {
            let refresh = record(&format!("rotated-{i}"), "g", 30 * 86_400);
            assert_eq!(table.insert(refresh.clone()), Inserted::Done);
            assert!(matches!(
                table.consume(refresh.kind, &refresh.hash, UnixTime::now()),
                Some(Consumed::First(_))
            ));
        }
        assert!(
            table.get(access.kind, &access.hash).is_some(),
            "replay markers go before a live token"
        );
    }

    #[test]
    fn a_table_full_of_bytes_evicts_down_to_its_byte_budget() {
        const BUDGET: usize = 64 * 1024;
        let table = TokenTable::new(10_000, BUDGET as u64);
        let long = record("long-lived", "g", 86_400);
        assert_eq!(table.insert(long.clone()), Inserted::Done);
        for i in 0..1_000 {
            let mut large = record(&format!("large-{i}"), "flood", 60 + i % 7);
            large.payload = vec![0; 1024];
            assert_eq!(table.insert(large), Inserted::Done);
            assert!(table.bytes() <= BUDGET, "bounded at every step");
        }
        assert!(table.len() < 64, "{} records of a kilobyte", table.len());
        assert!(
            table.get(long.kind, &long.hash).is_some(),
            "the record expiring last survives"
        );
        assert!(
            table
                .get(TokenKind::AccessToken, &TokenHash::of("large-999"))
                .is_some(),
            "a new record is always admitted"
        );
        // Every way out gives the bytes back.
        table.consume(long.kind, &long.hash, UnixTime::now());
        assert!(table.delete(TokenKind::AccessToken, &TokenHash::of("large-999")));
        table.revoke(&GrantId("flood".into()));
        assert!(table.delete(long.kind, &long.hash));
        assert_eq!((table.len(), table.bytes()), (0, 0));
    }

    #[test]
    fn a_full_table_evicts_unapproved_records_before_approved_ones() {
        let table = TokenTable::new(64, u64::MAX);
        let mut code = record("code", "g", 60);
        code.kind = TokenKind::AuthorizationCode;
        assert_eq!(table.insert(code.clone()), Inserted::Done);
        for i in 0..1_000 {
            let mut pending = record(&format!("pending-{i}"), "flood", 600);
            pending.kind = TokenKind::AuthorizationRequest;
            assert_eq!(table.insert(pending), Inserted::Done);
        }
        assert!(
            table.get(code.kind, &code.hash).is_some(),
            "a code the owner approved outlasts a flood of requests nobody approved"
        );
    }

    #[test]
    fn a_kept_pair_is_never_evicted_before_the_consumed_refresh_token_it_answers_for() {
        let table = TokenTable::new(4_096, u64::MAX);
        let mut rotated = Vec::new();
        for i in 0..200 {
            let refresh = TokenRecord {
                kind: TokenKind::RefreshToken,
                ..record(&format!("rt-{i}"), "g", 30 * 86_400)
            };
            assert_eq!(table.insert(refresh.clone()), Inserted::Done);
            table.consume(refresh.kind, &refresh.hash, UnixTime::now());
            let pair = TokenRecord {
                kind: TokenKind::RefreshSuccessor,
                ..record(&format!("rt-{i}"), "g", 90)
            };
            assert_eq!(table.insert(pair), Inserted::Done);
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
                    table.consume(TokenKind::RefreshToken, hash, UnixTime::now()),
                    None,
                    "a pair went while its token could still be retried"
                );
            }
        }
        assert!(evicted > 0, "the flood evicted kept pairs");
    }

    #[test]
    fn expired_records_are_swept_and_never_returned() {
        let table = TokenTable::new(100, u64::MAX);
        let mut expired = record("old", "g", 0);
        expired.expires_at = UnixTime(UnixTime::now().0 - 60);
        assert_eq!(table.insert(expired.clone()), Inserted::Done);
        assert_eq!(table.get(expired.kind, &expired.hash), None);
        assert_eq!(
            table.consume(expired.kind, &expired.hash, UnixTime::now()),
            None
        );
        assert_eq!(
            table.insert(expired.clone()),
            Inserted::Done,
            "an expired record does not block its key"
        );
        assert_eq!(table.insert(record("live", "g", 60)), Inserted::Done);
        assert_eq!(table.sweep(), 1);
        assert_eq!(table.len(), 1);
        assert_eq!(table.bytes(), ENTRY_OVERHEAD + "payload".len() + "g".len());
    }

    #[test]
    fn large_tables_are_sharded_and_keep_their_capacity() {
        let table = TokenTable::new(2_000_000, 1 << 30);
        assert_eq!(table.shards.len(), 32);
        assert_eq!(table.shard_limits.records * 32, 2_000_000);
        assert_eq!(table.shard_limits.bytes * 32, 1 << 30);
        assert_eq!(TokenTable::new(50, 1).shards.len(), 1);
        assert_eq!(TokenTable::new(0, 0).shard_limits.records, 1);
        assert_eq!(TokenTable::new(0, 0).shard_limits.bytes, 1);
    }

    #[test]
    fn revoking_removes_every_record_of_the_grant_and_only_those() {
        let table = TokenTable::new(10_000, u64::MAX);
        for i in 0..100 {
            table.insert(record(&format!("a{i}"), "revoked", 60));
            table.insert(record(&format!("b{i}"), "kept", 60));
        }
        table.consume(
            TokenKind::AccessToken,
            &TokenHash::of("a7"),
            UnixTime::now(),
        );
        assert_eq!(table.revoke(&GrantId("revoked".into())), 100);
        assert_eq!(table.len(), 100);
        assert_eq!(table.revoke(&GrantId("revoked".into())), 0);
    }
}
