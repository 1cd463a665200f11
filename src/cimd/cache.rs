//! Validated documents, kept as long as their server allows within our bounds.
//!
//! Policy: `Cache-Control: max-age` is honoured, clamped to [`MIN_TTL`]..[`MAX_TTL`] (less `Age`);
//! without a directive a document is kept [`DEFAULT_TTL`]; `no-store` or `no-cache` means it is
//! fetched again every time. Failures and invalid documents are never cached. When a refetch of an
//! expired document fails (unreachable *or* invalid), the last good copy is served for up to
//! [`STALE_FOR`] more: client documents have had outages (HTML instead of JSON, bot-protection
//! 403s, 404s) and a short one should not log everyone out. A document that changes validly
//! replaces the old copy at once.
//!
//! The cache is shared by every URL client id anyone sends, so a flood of strangers' ids pushes
//! documents out of it. The last good copy of a client the owner approved is therefore also kept
//! apart, in a map only approvals add to: it is the fallback (within the same time bound) however
//! many other ids arrive. Both live in this process; another instance keeps its own.

use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::Op;

use super::fetch::Freshness;
use crate::oauth::clients::Client;

/// Shortest time a cacheable document is kept.
pub(crate) const MIN_TTL: Duration = Duration::from_secs(60);
/// Longest time a document is kept fresh (SEP-991 recommends at most 24 hours).
pub(crate) const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Freshness of a document served without `Cache-Control`.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// How long past its freshness a document may stand in for one that cannot be fetched.
pub(crate) const STALE_FOR: Duration = Duration::from_secs(3600);
/// Documents kept at most.
const CAPACITY: u64 = 1_000;
/// Approved clients whose last good copy is kept apart. Only the owner's approvals add to it, so a
/// flood cannot fill it.
const APPROVED_CAPACITY: u64 = 10_000;

/// How long a document may be used without fetching it again; `None`: not at all.
pub(crate) fn time_to_live(freshness: Freshness) -> Option<Duration> {
    match freshness {
        Freshness::DoNotCache => None,
        Freshness::MaxAge(seconds) => Some(Duration::from_secs(seconds).clamp(MIN_TTL, MAX_TTL)),
        Freshness::Unspecified => Some(DEFAULT_TTL),
    }
}

/// What the cache holds for a client id.
#[derive(Debug)]
pub(crate) enum Cached {
    /// Use it.
    Fresh(Client),
    /// Fetch again; fall back to it if that fails.
    Stale(Client),
}

#[derive(Clone, Debug)]
struct Entry {
    client: Client,
    fresh_until: Instant,
    keep_until: Instant,
}

impl Entry {
    fn at(&self, now: Instant) -> Option<Cached> {
        if now < self.fresh_until {
            Some(Cached::Fresh(self.client.clone()))
        } else if now < self.keep_until {
            Some(Cached::Stale(self.client.clone()))
        } else {
            None
        }
    }
}

/// What is kept for a client the owner approved: its last good copy, once there is one.
#[derive(Clone, Debug)]
struct Approved {
    last_good: Option<Entry>,
}

/// The cache, keyed by client id (the document URL as sent).
#[derive(Clone)]
pub(crate) struct DocumentCache {
    entries: Cache<String, Entry>,
    /// Approved clients, apart from `entries`; not expiring with the copy they hold, so a client
    /// idle past its copy's time bound is still known as approved when it is next fetched.
    approved: Cache<String, Approved>,
}

impl std::fmt::Debug for DocumentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentCache")
            .field("entries", &self.entries.entry_count())
            .field("approved", &self.approved.entry_count())
            .finish()
    }
}

struct KeepUntil;

impl Expiry<String, Entry> for KeepUntil {
    fn expire_after_create(&self, _: &String, entry: &Entry, now: Instant) -> Option<Duration> {
        Some(entry.keep_until.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.keep_until.saturating_duration_since(now))
    }
}

impl DocumentCache {
    pub(crate) fn new() -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(KeepUntil)
                .build(),
            approved: Cache::new(APPROVED_CAPACITY),
        }
    }

    /// The shared copy or, when strangers' ids pushed it out, an approved client's own.
    pub(crate) async fn get(&self, client_id: &str, now: Instant) -> Option<Cached> {
        if let Some(entry) = self.entries.get(client_id).await {
            return entry.at(now);
        }
        self.approved.get(client_id).await?.last_good?.at(now)
    }

    /// Keep a validated document for `ttl`, and as a fallback for [`STALE_FOR`] after.
    pub(crate) async fn insert(
        &self,
        client_id: &str,
        client: Client,
        ttl: Duration,
        now: Instant,
    ) {
        let fresh_until = now + ttl;
        let entry = Entry {
            client,
            fresh_until,
            keep_until: fresh_until + STALE_FOR,
        };
        self.entries
            .insert(client_id.to_owned(), entry.clone())
            .await;
        self.set_approved_copy(client_id, Some(entry)).await;
    }

    /// Forget the document (its server asked not to keep it), but not that its client is approved.
    pub(crate) async fn remove(&self, client_id: &str) {
        self.entries.invalidate(client_id).await;
        self.set_approved_copy(client_id, None).await;
    }

    /// The owner approved the client: keep its last good copy apart from now on. A copy already
    /// kept from an earlier approval stays when the shared one was pushed out meanwhile.
    pub(crate) async fn approve(&self, client_id: &str) {
        let shared = self.entries.get(client_id).await;
        self.approved
            .entry_by_ref(client_id)
            .and_compute_with(|held| async move {
                let last_good = shared.or_else(|| held.and_then(|h| h.into_value().last_good));
                Op::Put(Approved { last_good })
            })
            .await;
    }

    /// The owner removed the client: it is no longer approved.
    pub(crate) async fn forget_approval(&self, client_id: &str) {
        self.approved.invalidate(client_id).await;
    }

    /// Replace an approved client's own copy; nothing for a client not approved.
    async fn set_approved_copy(&self, client_id: &str, last_good: Option<Entry>) {
        self.approved
            .entry_by_ref(client_id)
            .and_compute_with(|held| async move {
                match held {
                    Some(_) => Op::Put(Approved { last_good }),
                    None => Op::Nop,
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            client_id: "https://client.example/meta".into(),
            secret_hash: None,
            redirect_uris: vec!["https://client.example/cb".into()],
            name: Some("Client".into()),
            pre_registered: false,
            may_refresh: true,
            may_use_code: true,
            metadata_host: Some("client.example".into()),
            assertion: None,
            machine_scopes: None,
        }
    }

    #[test]
    fn lifetimes_are_clamped() {
        assert_eq!(time_to_live(Freshness::DoNotCache), None);
        assert_eq!(time_to_live(Freshness::Unspecified), Some(DEFAULT_TTL));
        assert_eq!(time_to_live(Freshness::MaxAge(0)), Some(MIN_TTL));
        assert_eq!(time_to_live(Freshness::MaxAge(5)), Some(MIN_TTL));
        assert_eq!(
            time_to_live(Freshness::MaxAge(600)),
            Some(Duration::from_secs(600))
        );
        assert_eq!(time_to_live(Freshness::MaxAge(u64::MAX)), Some(MAX_TTL));
    }

    #[test]
    fn fresh_then_stale_then_gone() {
        let now = Instant::now();
        let entry = Entry {
            client: client(),
            fresh_until: now + Duration::from_secs(60),
            keep_until: now + Duration::from_secs(60) + STALE_FOR,
        };
        assert!(matches!(entry.at(now), Some(Cached::Fresh(_))));
        assert!(matches!(
            entry.at(now + Duration::from_secs(61)),
            Some(Cached::Stale(_))
        ));
        assert!(
            entry
                .at(now + Duration::from_secs(61) + STALE_FOR)
                .is_none()
        );
    }

    #[tokio::test]
    async fn insert_get_remove() {
        let cache = DocumentCache::new();
        let id = "https://client.example/meta";
        let now = Instant::now();
        assert!(cache.get(id, now).await.is_none());
        cache.insert(id, client(), MIN_TTL, now).await;
        assert!(matches!(cache.get(id, now).await, Some(Cached::Fresh(_))));
        assert!(matches!(
            cache.get(id, now + MIN_TTL).await,
            Some(Cached::Stale(_))
        ));
        cache.remove(id).await;
        assert!(cache.get(id, now).await.is_none());
    }

    #[tokio::test]
    async fn an_approved_clients_copy_outlives_the_shared_one_within_its_time_bound() {
        let cache = DocumentCache::new();
        let id = "https://client.example/meta";
        let now = Instant::now();
        cache.insert(id, client(), MIN_TTL, now).await;
        cache.approve(id).await;
        // Pushed out of the shared cache, as by a flood of other ids.
        cache.entries.invalidate(id).await;
        assert!(matches!(cache.get(id, now).await, Some(Cached::Fresh(_))));
        assert!(matches!(
            cache.get(id, now + MIN_TTL).await,
            Some(Cached::Stale(_))
        ));
        assert!(cache.get(id, now + MIN_TTL + STALE_FOR).await.is_none());

        // A later good fetch refreshes the approved copy; `no-store` clears it.
        let later = now + MIN_TTL + STALE_FOR;
        cache.insert(id, client(), MIN_TTL, later).await;
        cache.entries.invalidate(id).await;
        assert!(matches!(cache.get(id, later).await, Some(Cached::Fresh(_))));
        cache.remove(id).await;
        assert!(cache.get(id, later).await.is_none());

        // Still approved without a copy: the next good fetch is kept apart again.
        cache.insert(id, client(), MIN_TTL, later).await;
        cache.entries.invalidate(id).await;
        assert!(matches!(cache.get(id, later).await, Some(Cached::Fresh(_))));

        // Removed by the owner: nothing kept apart any more.
        cache.forget_approval(id).await;
        assert!(cache.get(id, later).await.is_none());
    }

    #[tokio::test]
    async fn a_client_never_approved_has_no_copy_apart() {
        let cache = DocumentCache::new();
        let id = "https://client.example/meta";
        let now = Instant::now();
        cache.insert(id, client(), MIN_TTL, now).await;
        cache.entries.invalidate(id).await;
        assert!(cache.get(id, now).await.is_none());
    }
}
