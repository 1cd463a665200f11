//! Clients' JWK sets at their `jwks_uri`, fetched by the same SSRF-safe fetcher as documents and
//! kept by the same freshness policy ([`cache::time_to_live`]); as for documents, when a refetch
//! fails the last good set serves for up to [`cache::STALE_FOR`] more. An assertion naming a key the
//! cached set lacks earns a refetch (the client may have rotated its keys), but at most one per
//! client and key id per [`REFETCH_INTERVAL`]: nobody can spend the refetch a client's real new
//! key needs without guessing its id, and a flood of made-up key ids is held to the failure budget
//! of the address sending it (each one is a failed assertion, and a spent budget fetches nothing).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;

use super::cache;
use super::fetch::{FetchError, Fetcher, Freshness};
use super::ssrf::{self, UrlRules};
use crate::oauth::assertion::keys::public_key_set;
use crate::oauth::assertion::public_keys::PublicKeys;
use crate::oauth::assertion::{KeySet, KeySetError};
use crate::oauth::client_metadata::DocumentProblem;

use crate::rules::limits::MAX_JWKS_BYTES;

/// At most one refetch per client and unknown key id in this interval.
pub(crate) const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// How long a fetch that failed through nobody's fault answers for its client and URL without
/// another fetch: long enough that no burst makes the server fetch a down host in a loop, short
/// enough that a client's host back up is fetched again at once in practice.
pub(crate) const OUTAGE_HOLD: Duration = Duration::from_secs(1);

/// Sets kept at most (one per client using `jwks_uri`).
const CAPACITY: u64 = 1_000;

#[derive(Clone, Debug)]
struct Entry {
    uri: String,
    set: Arc<PublicKeys>,
    fresh_until: Instant,
}

/// What a refetch for an unknown key id found, shared by every request naming that key id
/// until [`REFETCH_INTERVAL`] has passed.
type Refetched = Result<Arc<PublicKeys>, KeySetError>;

/// The cached sets, and each client's recent refetches by the unknown key id that caused them.
pub(crate) struct KeySetCache {
    entries: Cache<String, Entry>,
    refetched: Cache<String, Refetched>,
    /// Fetches under way when no fresh set is held, by client and URL, shared by their callers.
    fetching: Cache<String, Arc<PublicKeys>>,
    /// The last fetch failure through nobody's fault, by client and URL, for [`OUTAGE_HOLD`].
    outages: Cache<String, KeySetError>,
    /// One refetch at a time per client and URL, whatever key id caused it: a burst of made-up
    /// key ids while the host is down fetches it once, and the rest find the outage held.
    refetch_turns: Cache<String, Arc<tokio::sync::Mutex<()>>>,
    /// Refetches under way, by the same keys: marked while one runs, cleared when it ends or is
    /// dropped.
    pending: Mutex<HashSet<String>>,
}

/// A refetch under way, marked in [`KeySetCache::pending`] for as long as it lives.
struct Pending<'a> {
    under_way: &'a Mutex<HashSet<String>>,
    key: String,
}

impl<'a> Pending<'a> {
    fn mark(under_way: &'a Mutex<HashSet<String>>, key: &str) -> Self {
        lock(under_way).insert(key.to_owned());
        Self {
            under_way,
            key: key.to_owned(),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        lock(self.under_way).remove(&self.key);
    }
}

/// The set of refetches under way; a panic elsewhere while it was held leaves it usable.
fn lock(under_way: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    under_way
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::fmt::Debug for KeySetCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySetCache")
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

impl KeySetCache {
    pub(crate) fn new() -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(cache::MAX_TTL + cache::STALE_FOR)
                .build(),
            refetched: Cache::builder()
                .max_capacity(CAPACITY * 10)
                .time_to_live(REFETCH_INTERVAL)
                .build(),
            pending: Mutex::default(),
            fetching: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(REFETCH_INTERVAL)
                .build(),
            outages: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(OUTAGE_HOLD)
                .build(),
            refetch_turns: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(REFETCH_INTERVAL)
                .build(),
        }
    }

    /// The set at `uri` for `client_id`: cached while fresh; fetched otherwise, or when an
    /// assertion named the unknown key `unknown_kid` and this client had no refetch for that key
    /// id lately. A failed fetch falls back on the last good set within its time bound.
    pub(crate) async fn key_set(
        &self,
        fetcher: &Fetcher,
        rules: &UrlRules,
        client_id: &str,
        uri: &str,
        unknown_kid: Option<&str>,
    ) -> Result<KeySet, KeySetError> {
        let now = Instant::now();
        let held = self
            .entries
            .get(client_id)
            .await
            .filter(|entry| entry.uri == uri);
        if let Some(entry) = &held
            && entry.fresh_until > now
        {
            return match unknown_kid {
                Some(kid) => self.refetch(fetcher, rules, client_id, uri, kid).await,
                None => Ok(KeySet {
                    keys: Arc::clone(&entry.set),
                    cached: true,
                }),
            };
        }
        let unknown_kid = unknown_kid.is_some();
        let keys = match self.fetch_shared(fetcher, rules, client_id, uri).await {
            Ok(keys) => keys,
            Err(error) => {
                // After an unknown kid the set held lacks that key: serving it would refuse the
                // assertion on a verdict the failed fetch cannot back. The last good copy stands
                // in only for a host that cannot answer, never for an answer the client made.
                let stale = held.filter(|e| {
                    is_outage(&error) && !unknown_kid && e.fresh_until + cache::STALE_FOR > now
                });
                let Some(entry) = stale else {
                    return Err(error);
                };
                tracing::warn!(target: "mcp_oauth::cimd", url = %error.url, detail = %error.detail(), "using the last good copy of a client's JWK set");
                return Ok(KeySet {
                    keys: entry.set,
                    cached: true,
                });
            }
        };
        Ok(KeySet {
            keys,
            cached: false,
        })
    }

    /// Fetch and keep `client_id`'s set at `uri`, one fetch for every caller asking at once (a
    /// burst of requests on a cold or uncacheable set causes one fetch, not one each); a caller
    /// coming after it ended fetches again.
    async fn fetch_shared(
        &self,
        fetcher: &Fetcher,
        rules: &UrlRules,
        client_id: &str,
        uri: &str,
    ) -> Result<Arc<PublicKeys>, KeySetError> {
        let key = outage_key(client_id, uri);
        if let Some(outage) = self.outages.get(&key).await {
            return Err(outage);
        }
        let fetched = self
            .fetching
            .try_get_with(key.clone(), async {
                let (set, freshness) = self.fetch_noting(fetcher, rules, client_id, uri).await?;
                Ok::<_, KeySetError>(self.keep(client_id, uri, set, freshness).await)
            })
            .await;
        // Shared while under way only: what is kept lives in `entries`, by its freshness.
        self.fetching.invalidate(&key).await;
        fetched.map_err(|error| (*error).clone())
    }

    /// The set refetched for the unknown key id `kid`: fetched by the first request naming it
    /// in [`REFETCH_INTERVAL`], whose answer (a set, or why there is none) every request naming
    /// it meanwhile gets, the ones waiting on it included. `cached: false` either way: this set
    /// is as new as this server will fetch for that key id now.
    async fn refetch(
        &self,
        fetcher: &Fetcher,
        rules: &UrlRules,
        client_id: &str,
        uri: &str,
        kid: &str,
    ) -> Result<KeySet, KeySetError> {
        let outage = outage_key(client_id, uri);
        if let Some(held) = self.outages.get(&outage).await {
            return Err(held);
        }
        // Waiting for the turn holds nothing but this request (and the budget unit its caller
        // holds for a refetch it may cause); the one before may have found the host down.
        let turn = self
            .refetch_turns
            .get_with(outage.clone(), async { Arc::default() })
            .await;
        let _turn = turn.lock().await;
        if let Some(held) = self.outages.get(&outage).await {
            return Err(held);
        }
        // The turn before may have brought the key this request names: no fetch of its own.
        if let Some(held) = self.held(client_id, uri).await
            && held.find(kid).is_some()
        {
            return Ok(KeySet {
                keys: held,
                cached: false,
            });
        }
        let key = refetch_key(client_id, uri, kid);
        let fetched_here = std::sync::atomic::AtomicBool::new(false);
        let refetched = self
            .refetched
            // One initialisation per key for concurrent callers; if its caller is dropped, a
            // waiting one takes it over. An answer that is nobody's fault (the host down, no
            // fetch slot free) is not kept for the minute, so nobody can make a real new key fail
            // for the minute by naming it while the fetch cannot succeed; it answers for the
            // client for [`OUTAGE_HOLD`] instead, so that no burst fetches a down host in a loop.
            .try_get_with(key.clone(), async {
                let _under_way = Pending::mark(&self.pending, &key);
                fetched_here.store(true, std::sync::atomic::Ordering::Relaxed);
                match self.fetch_noting(fetcher, rules, client_id, uri).await {
                    Ok((set, freshness)) => Ok(Ok(self.keep(client_id, uri, set, freshness).await)),
                    Err(error) if is_outage(&error) => Err(error),
                    Err(error) => Ok(Err(error)),
                }
            })
            .await;
        match refetched {
            // The newest set this server holds for the client, which a later fetch may have
            // replaced since this key id's refetch: a key dropped from the set must not verify
            // from an older answer kept for the minute. With none held (a set found invalid
            // since, or one not to be cached), only a set fetched by this very call answers;
            // an older one kept for the minute is never trusted alone: fetch now.
            Ok(Ok(refetched)) => match self.held(client_id, uri).await {
                Some(held) => Ok(KeySet {
                    keys: held,
                    cached: false,
                }),
                None if fetched_here.load(std::sync::atomic::Ordering::Relaxed) => Ok(KeySet {
                    keys: refetched,
                    cached: false,
                }),
                None => {
                    self.refetched.invalidate(&key).await;
                    let keys = self.fetch_shared(fetcher, rules, client_id, uri).await?;
                    Ok(KeySet {
                        keys,
                        cached: false,
                    })
                }
            },
            Ok(Err(error)) => Err(error),
            Err(unavailable) => Err((*unavailable).clone()),
        }
    }

    /// Whether a refetch for `client_id`'s unknown key id `kid` is under way, was done within
    /// [`REFETCH_INTERVAL`], or an outage of its key host is held: a request naming that key id
    /// then gets that answer and causes no fetch of its own.
    pub(crate) async fn shares_refetch(&self, client_id: &str, uri: &str, kid: &str) -> bool {
        let key = refetch_key(client_id, uri, kid);
        self.refetched.contains_key(&key)
            || lock(&self.pending).contains(&key)
            || self.outages.contains_key(&outage_key(client_id, uri))
    }

    /// The set held for `client_id` at `uri`, fresh or not.
    async fn held(&self, client_id: &str, uri: &str) -> Option<Arc<PublicKeys>> {
        self.entries
            .get(client_id)
            .await
            .filter(|entry| entry.uri == uri)
            .map(|entry| entry.set)
    }

    /// [`fetch`], noting what a failure means for what is held: one that is nobody's fault is
    /// held for the client and URL for [`OUTAGE_HOLD`]; a set that is no longer valid (a private
    /// key published in it, above all) ends the set held for the client, so that no key of a set
    /// its owner broke verifies on from the cache.
    async fn fetch_noting(
        &self,
        fetcher: &Fetcher,
        rules: &UrlRules,
        client_id: &str,
        uri: &str,
    ) -> Result<(PublicKeys, Freshness), KeySetError> {
        let fetched = fetch(fetcher, rules, uri).await;
        if let Err(error) = &fetched {
            if is_outage(error) {
                let key = outage_key(client_id, uri);
                self.outages.insert(key, error.clone()).await;
            } else if matches!(error.problem, DocumentProblem::Invalid(_))
                && self.held(client_id, uri).await.is_some()
            {
                self.entries.invalidate(client_id).await;
            }
        }
        fetched
    }

    /// Keep a fetched set as `client_id`'s for as long as its answer allows.
    async fn keep(
        &self,
        client_id: &str,
        uri: &str,
        set: PublicKeys,
        freshness: Freshness,
    ) -> Arc<PublicKeys> {
        let set = Arc::new(set);
        match cache::time_to_live(freshness) {
            Some(ttl) => {
                let entry = Entry {
                    uri: uri.to_owned(),
                    set: Arc::clone(&set),
                    fresh_until: Instant::now() + ttl,
                };
                self.entries.insert(client_id.to_owned(), entry).await;
            }
            None => self.entries.invalidate(client_id).await,
        }
        set
    }
}

/// A failure that is nobody's fault: the host could not answer (503 to the client).
fn is_outage(error: &KeySetError) -> bool {
    matches!(error.problem, DocumentProblem::Unavailable(_))
}

/// The key of a client's key host outage: the client and the URL.
fn outage_key(client_id: &str, uri: &str) -> String {
    format!("{client_id}\n{uri}")
}

/// A refetch's key: the client, the URL its keys are at now (another URL is another set), and
/// the key id.
fn refetch_key(client_id: &str, uri: &str, kid: &str) -> String {
    format!("{client_id}\n{uri}\n{kid}")
}

/// Fetch and check the set at `uri`.
async fn fetch(
    fetcher: &Fetcher,
    rules: &UrlRules,
    uri: &str,
) -> Result<(PublicKeys, Freshness), KeySetError> {
    let error = |problem| KeySetError {
        url: crate::oauth::params::printable(uri),
        problem,
    };
    let target = ssrf::check_url(uri, rules).map_err(|r| error(DocumentProblem::Refused(r)))?;
    let fetched = fetcher
        .fetch_up_to(&target, MAX_JWKS_BYTES)
        .await
        .map_err(|failure| {
            error(match failure {
                FetchError::Unavailable(why) => DocumentProblem::Unavailable(why),
                FetchError::BadAnswer(reason) => DocumentProblem::BadAnswer(reason),
            })
        })?;
    let set = serde_json::from_slice(&fetched.body)
        .map_err(|e| format!("it is not valid JSON ({e})"))
        .and_then(|value| public_key_set(&value))
        .map_err(|reason| error(DocumentProblem::Invalid(reason)))?;
    Ok((set, fetched.freshness))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JWK set URL on a loopback port nothing listens on, and the rules letting it be tried.
    async fn dead_uri() -> (String, UrlRules) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let rules = UrlRules {
            allowed_ports: vec![port],
            own_host: "mcp.example.com".into(),
            allow_loopback_http: true,
        };
        (format!("http://127.0.0.1:{port}/jwks.json"), rules)
    }

    #[tokio::test]
    async fn a_failed_refetch_serves_the_last_good_set_but_not_for_an_unknown_kid() {
        let (uri, rules) = dead_uri().await;
        let fetcher = Fetcher::new().unwrap();
        let cache = KeySetCache::new();
        let client = "https://client.example/c";
        let error = cache
            .key_set(&fetcher, &rules, client, &uri, None)
            .await
            .unwrap_err();
        assert!(
            matches!(error.problem, DocumentProblem::Unavailable(_)),
            "nothing to fall back on"
        );

        let last_good = Arc::new(PublicKeys::default());
        let expired = Entry {
            uri: uri.clone(),
            set: Arc::clone(&last_good),
            fresh_until: Instant::now(),
        };
        cache.entries.insert(client.to_owned(), expired).await;
        let served = cache
            .key_set(&fetcher, &rules, client, &uri, None)
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&served.keys, &last_good));
        let error = cache
            .key_set(&fetcher, &rules, client, &uri, Some("rotated"))
            .await
            .unwrap_err();
        assert!(matches!(error.problem, DocumentProblem::Unavailable(_)));
        // Another URL is another set: the one held is not its fallback.
        let other = uri.replace("jwks.json", "other.json");
        assert!(
            cache
                .key_set(&fetcher, &rules, client, &other, None)
                .await
                .is_err()
        );
    }

    /// A key host on loopback that counts the connections it gets and answers each with `status`
    /// and no body.
    async fn counting_host(
        status: &'static str,
    ) -> (String, UrlRules, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    // Slow enough that every caller of the burst is waiting on this one.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        let rules = UrlRules {
            allowed_ports: vec![port],
            own_host: "mcp.example.com".into(),
            allow_loopback_http: true,
        };
        (format!("http://127.0.0.1:{port}/jwks.json"), rules, hits)
    }

    /// A burst of assertions naming one unknown key id, all at once, shares one refetch per
    /// client, every caller getting its answer; another key id earns its own, so made-up ids
    /// cannot spend a real new key's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_naming_one_unknown_kid_shares_one_refetch_and_another_kid_earns_its_own() {
        // A 404 is the client's own answer: kept for the minute.
        let (uri, rules, hits) = counting_host("404 Not Found").await;
        let fetcher = Arc::new(Fetcher::new().unwrap());
        let cache = Arc::new(KeySetCache::new());
        let fresh = Entry {
            uri: uri.clone(),
            set: Arc::new(PublicKeys::default()),
            fresh_until: Instant::now() + Duration::from_secs(600),
        };
        let clients = ["https://a.example/c", "https://b.example/c"];
        for client in clients {
            cache.entries.insert(client.to_owned(), fresh.clone()).await;
        }
        let refetch = |client: &'static str, kid: &'static str| {
            let (cache, fetcher, rules, uri) = (
                Arc::clone(&cache),
                Arc::clone(&fetcher),
                rules.clone(),
                uri.clone(),
            );
            tokio::spawn(async move {
                cache
                    .key_set(&fetcher, &rules, client, &uri, Some(kid))
                    .await
                    .map(|_| ())
            })
        };
        let burst = (0..32).map(|i| refetch(clients[i % 2], "made-up"));
        for answer in futures::future::join_all(burst).await {
            let error = answer.unwrap().unwrap_err();
            assert!(
                matches!(
                    error.problem,
                    DocumentProblem::BadAnswer(_) | DocumentProblem::Unavailable(_)
                ),
                "{error:?}"
            );
        }
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "one fetch per client"
        );
        for client in clients {
            refetch(client, "made-up").await.unwrap().unwrap_err();
        }
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "answered from the refetch"
        );
        for client in clients {
            refetch(client, "real-new-key").await.unwrap().unwrap_err();
        }
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "another key id, its own refetch"
        );
    }

    /// A refetch that failed through nobody's fault (here a 503 from the key host) is not kept:
    /// the next request naming that key id fetches again.
    /// ... and is held for its client for [`OUTAGE_HOLD`] only (not the refetch's minute): a
    /// request naming the key id meanwhile gets the 503 without a fetch of its own.
    #[tokio::test]
    async fn a_refetch_that_failed_through_nobodys_fault_is_held_a_moment_not_kept() {
        let (uri, rules, hits) = counting_host("503 Service Unavailable").await;
        let fetcher = Fetcher::new().unwrap();
        let cache = KeySetCache::new();
        let client = "https://a.example/c";
        let fresh = Entry {
            uri: uri.clone(),
            set: Arc::new(PublicKeys::default()),
            fresh_until: Instant::now() + Duration::from_secs(600),
        };
        cache.entries.insert(client.to_owned(), fresh).await;
        for attempt in 1..=2 {
            let error = cache
                .key_set(&fetcher, &rules, client, &uri, Some("new-key"))
                .await
                .unwrap_err();
            assert!(
                matches!(error.problem, DocumentProblem::Unavailable(_)),
                "{error:?}"
            );
            assert_eq!(
                hits.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "attempt {attempt}"
            );
        }
        assert!(cache.shares_refetch(client, &uri, "new-key").await, "held");
        assert!(
            !cache
                .refetched
                .contains_key(&refetch_key(client, &uri, "new-key")),
            "not kept for the minute"
        );
        const { assert!(OUTAGE_HOLD.as_secs() * 10 <= REFETCH_INTERVAL.as_secs()) };
    }
}
