//! Clients' JWK sets at their `jwks_uri`, fetched by the same SSRF-safe fetcher as documents and
//! kept by the same freshness policy ([`cache::time_to_live`]); as for documents, when a refetch
//! fails the last good set serves for up to [`cache::STALE_FOR`] more. An assertion naming a key the
//! cached set lacks earns a refetch (the client may have rotated its keys), but at most one per
//! client and key id per [`REFETCH_INTERVAL`]: nobody can spend the refetch a client's real new
//! key needs without guessing its id, and a flood of made-up key ids is held to the failure budget
//! of the address sending it (each one is a failed assertion, and a spent budget fetches nothing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use moka::future::Cache;

use super::cache;
use super::fetch::{FetchError, Fetcher, Freshness};
use super::ssrf::{self, UrlRules};
use crate::oauth::assertion::keys::public_key_set;
use crate::oauth::assertion::{KeySet, KeySetError};
use crate::oauth::client_metadata::DocumentProblem;

use crate::rules::limits::MAX_JWKS_BYTES;

/// At most one refetch per client and unknown key id in this interval.
pub(crate) const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// Sets kept at most (one per client using `jwks_uri`).
const CAPACITY: u64 = 1_000;

#[derive(Clone, Debug)]
struct Entry {
    uri: String,
    set: Arc<JwkSet>,
    fresh_until: Instant,
}

/// The cached sets, and when each client last had its set refetched for an unknown key id.
pub(crate) struct KeySetCache {
    entries: Cache<String, Entry>,
    refetched: Cache<String, ()>,
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
            let refetch = match unknown_kid {
                Some(kid) => self.may_refetch(client_id, kid).await,
                None => false,
            };
            if !refetch {
                return Ok(KeySet {
                    keys: Arc::clone(&entry.set),
                    cached: true,
                });
            }
        }
        let unknown_kid = unknown_kid.is_some();
        let (set, freshness) = match fetch(fetcher, rules, uri).await {
            Ok(fetched) => fetched,
            Err(error) => {
                // After an unknown kid the set held lacks that key: serving it would refuse the
                // assertion on a verdict the failed fetch cannot back.
                let stale = held.filter(|e| !unknown_kid && e.fresh_until + cache::STALE_FOR > now);
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
        Ok(KeySet {
            keys: set,
            cached: false,
        })
    }

    /// Whether `client_id` may have its set refetched for the unknown key id `kid` now; if so,
    /// not again for that key id for [`REFETCH_INTERVAL`]. Atomic: of concurrent callers, one
    /// gets `true`.
    async fn may_refetch(&self, client_id: &str, kid: &str) -> bool {
        self.refetched
            .entry(format!("{client_id}\n{kid}"))
            // `or_insert_with` coalesces concurrent calls for one key (`or_insert` does not).
            .or_insert_with(async {})
            .await
            .is_fresh()
    }
}

/// Fetch and check the set at `uri`.
async fn fetch(
    fetcher: &Fetcher,
    rules: &UrlRules,
    uri: &str,
) -> Result<(JwkSet, Freshness), KeySetError> {
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

        let last_good = Arc::new(JwkSet { keys: Vec::new() });
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

    /// A burst of assertions naming one unknown key id, all at once, earns one refetch per
    /// client; another key id earns its own, so made-up ids cannot spend a real new key's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_naming_one_unknown_kid_earns_one_refetch_and_another_kid_its_own() {
        let cache = Arc::new(KeySetCache::new());
        let calls = (0..32).map(|i| {
            let cache = Arc::clone(&cache);
            let client = if i % 2 == 0 {
                "https://a.example/c"
            } else {
                "https://b.example/c"
            };
            tokio::spawn(async move { (client, cache.may_refetch(client, "made-up").await) })
        });
        let results = futures::future::join_all(calls).await;
        for client in ["https://a.example/c", "https://b.example/c"] {
            let granted = results
                .iter()
                .filter(|r| matches!(r, Ok((c, true)) if *c == client))
                .count();
            assert_eq!(granted, 1, "{client}");
            assert!(!cache.may_refetch(client, "made-up").await, "{client}");
            assert!(cache.may_refetch(client, "real-new-key").await, "{client}");
        }
    }
}
