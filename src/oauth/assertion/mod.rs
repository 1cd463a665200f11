//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, RFC 7521 §4.2): a client signs
//! a short-lived JWT with a private key whose public half it published, and presents it at every
//! endpoint that authenticates clients.
//!
//! [`keys`] says which keys and algorithms may be trusted, [`verify`] checks one assertion,
//! and this module ties them to the client, the key fetcher ([`KeySets`], implemented by the
//! `cimd` module, which owns the SSRF-safe fetcher), the failure budget and single use of `jti`.

pub(crate) mod compact;
pub(crate) mod keys;
pub(crate) mod public_keys;
pub(crate) mod verify;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::budget::{Budget, Guessed, Refused};
use super::client_metadata::DocumentProblem;
use super::{AuthServer, ErrorCode, OAuthError};
use crate::audit::{Source, StepKind};
use crate::store::{GrantId, StoreError, TokenHash, TokenKind, TokenRecord};
use compact::Assertion;
use keys::{AssertionRules, KeySource};
use public_keys::PublicKeys;
use verify::{Expected, Failure};

/// The one `client_assertion_type` this server accepts (RFC 7523 §2.2).
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Fetches the key set at a client's `jwks_uri`.
#[async_trait]
pub(crate) trait KeySets: Send + Sync + fmt::Debug {
    /// The key set at `jwks_uri` for `client_id`, from the cache when it holds one. With
    /// `unknown_kid`, an assertion named that key and the cached set lacks it: fetch again,
    /// unless this client's set was refetched for that same key id a short while ago (so nobody
    /// can spend the refetch a client's real new key needs, short of guessing its id).
    ///
    /// # Errors
    ///
    /// Why there is no usable set.
    async fn key_set(
        &self,
        client_id: &str,
        jwks_uri: &str,
        unknown_kid: Option<&str>,
    ) -> Result<KeySet, KeySetError>;

    /// Whether a refetch for `client_id`'s unknown key id `kid` is under way or was just done, so
    /// that a request naming it shares that refetch's answer and causes no fetch.
    async fn shares_refetch(&self, client_id: &str, jwks_uri: &str, kid: &str) -> bool;

    /// Whether `jwks_uri` may be registered: the rules a metadata document's URL meets, on the
    /// URL's text (where a name points is checked at each fetch).
    ///
    /// # Errors
    ///
    /// A plain-words reason, about the URL's text alone.
    fn check_uri(&self, jwks_uri: &str) -> Result<(), String>;
}

/// A client's key set, and whether it came from the cache (rather than a fetch just now, which a
/// refetch could not improve on).
#[derive(Clone, Debug)]
pub(crate) struct KeySet {
    pub(crate) keys: Arc<PublicKeys>,
    pub(crate) cached: bool,
}

/// Why a client's key set could not be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeySetError {
    /// The `jwks_uri`, ASCII-serialised.
    pub(crate) url: String,
    pub(crate) problem: DocumentProblem,
}

impl KeySetError {
    /// What the client hears: "try again" (503) when the set could not be fetched through no
    /// fault of the client, otherwise `invalid_client` (401), in a category only.
    fn token_error(&self) -> OAuthError {
        match &self.problem {
            DocumentProblem::Unavailable(_) => OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the client's JWK set (jwks_uri) could not be fetched right now; try again later",
            ),
            _ => OAuthError::invalid_client(
                "the client's JWK set (jwks_uri) could not be fetched or is invalid",
            ),
        }
    }

    /// Everything known, for the log only.
    pub(crate) fn detail(&self) -> String {
        match &self.problem {
            DocumentProblem::Refused(reason) => format!("its jwks_uri is not acceptable: {reason}"),
            DocumentProblem::Unavailable(why) => {
                format!(
                    "its JWK set could not be fetched right now: {}",
                    why.reason()
                )
            }
            DocumentProblem::BadAnswer(reason) => {
                format!("its JWK set could not be fetched: {reason}")
            }
            DocumentProblem::Invalid(reason) => format!("its JWK set is not valid: {reason}"),
        }
    }
}

impl AuthServer {
    /// Authenticate `client_id` by its `assertion`, under `rules`. The client's failure budget
    /// from this address is checked before anything is fetched (a spent budget costs no fetch);
    /// a unit is spent by a failed check, a key set the client broke, or a failed refetch for a
    /// key id the assertion named, and reserved around each signature check and each refetch
    /// for an unknown key id.
    /// The `jti` is then recorded until the assertion expires, so a second use anywhere the token
    /// store is shared is refused.
    pub(crate) async fn check_assertion(
        &self,
        client_id: &str,
        assertion: &Assertion,
        rules: &AssertionRules,
        budget: &Budget,
    ) -> Result<(), Refused> {
        // As the discovery document names it.
        let token_endpoint = format!("{}{}", self.settings.issuer, crate::paths::TOKEN);
        let expected = Expected {
            client_id,
            audiences: [&self.settings.issuer, &token_endpoint],
            algorithm: rules.algorithm,
            now: self.now(),
        };
        // A spent budget costs no fetch. (Checked, not held: a unit held across a slow first
        // fetch would count good requests waiting on it as failures.)
        budget.reserve(Guessed::client(client_id))?.refund();
        let mut keys = match self.client_keys(client_id, &rules.keys, None).await {
            Ok(keys) => keys,
            Err(refused) => return Err(keys_refused(budget, client_id, refused)),
        };
        // Whether this request's unknown kid was answered by a refetch it did not cause.
        let mut shared = false;
        let verified = loop {
            let attempt = budget.reserve(Guessed::client(client_id))?;
            match verify::verify(assertion, &keys.keys, &expected) {
                Ok(verified) => {
                    attempt.refund();
                    break verified;
                }
                // Keys rotate: a kid the cached set lacks earns a refetch (which the fetcher
                // allows once per short interval per client and key id, shared by every request
                // naming that kid meanwhile). The unit of the request that causes the fetch stays
                // held across it, so that concurrent made-up kids from one address fetch no more
                // often than its budget allows; a request sharing a refetch under way holds none
                // (it causes no fetch), so a client's burst of first uses of a new key is never
                // 429; a known kid never waits here.
                Err(Failure::UnknownKey(kid)) if keys.cached => {
                    let held = if self.shares_refetch(client_id, &rules.keys, &kid).await {
                        attempt.refund();
                        shared = true;
                        None
                    } else {
                        Some(attempt)
                    };
                    match self.client_keys(client_id, &rules.keys, Some(&kid)).await {
                        Ok(refetched) => {
                            if let Some(attempt) = held {
                                attempt.refund();
                            }
                            keys = KeySet {
                                cached: false,
                                ..refetched
                            }
                        }
                        Err(refused) => {
                            // Spent when the client is at fault (its set broken, its URL
                            // refused); given back when its host could not answer (503: nobody's
                            // fault, and held a few seconds so that no burst fetches it in a
                            // loop), so that an outage during a rotation costs the client nothing.
                            if let Some(attempt) = held {
                                if is_outage(&refused) {
                                    attempt.refund();
                                } else {
                                    attempt.spend();
                                }
                            }
                            return Err(refused);
                        }
                    }
                }
                // Still unknown. It costs a unit when this request made the server fetch for it;
                // answered from a refetch another caused, it checked no signature and fetched
                // nothing, so it guesses nothing (and a real client naming its new key before
                // the set holding it is fetched again does not spend its own budget).
                Err(Failure::UnknownKey(kid)) => {
                    if shared {
                        attempt.refund();
                    } else {
                        attempt.spend();
                    }
                    return Err(refusal(&format!(
                        "the assertion names key {}, which the client's JWK set does not hold",
                        super::params::printable(&kid)
                    )));
                }
                Err(Failure::Refused(reason)) => {
                    attempt.spend();
                    return Err(refusal(&reason));
                }
            }
        };
        let hash = TokenHash::of(&format!("{client_id}\n{}", verified.jti));
        let record = TokenRecord {
            kind: TokenKind::ClientAssertion,
            hash,
            // A grant of its own, so that revoking no grant can remove it (the marker of a
            // used assertion must outlive any grant it helped obtain).
            grant_id: GrantId(format!("client-assertion.{}", hash.to_hex())),
            expires_at: verified.remember_until,
            payload: Vec::new(),
        };
        match self.tokens.insert(record).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists { .. }) => {
                budget.reserve(Guessed::client(client_id))?.spend();
                Err(refusal(
                    "the assertion's jti was used before; sign a new assertion",
                ))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Whether a refetch of the key set at `source` for `kid` is under way or just done.
    async fn shares_refetch(&self, client_id: &str, source: &KeySource, kid: &str) -> bool {
        match (source, &self.key_sets) {
            (KeySource::Uri(uri), Some(key_sets)) => {
                key_sets.shares_refetch(client_id, uri, kid).await
            }
            _ => false,
        }
    }

    async fn client_keys(
        &self,
        client_id: &str,
        source: &KeySource,
        unknown_kid: Option<&str>,
    ) -> Result<KeySet, Refused> {
        let uri = match source {
            // Configured keys: nothing to fetch again.
            KeySource::Inline(set) => {
                return Ok(KeySet {
                    keys: Arc::clone(set),
                    cached: false,
                });
            }
            KeySource::Uri(uri) => uri,
        };
        let Some(key_sets) = &self.key_sets else {
            return Err(refusal("this server cannot fetch the client's jwks_uri"));
        };
        key_sets
            .key_set(client_id, uri, unknown_kid)
            .await
            .map_err(|error| {
                tracing::warn!(target: "mcp_oauth::cimd", url = %error.url, detail = %error.detail(), "no usable JWK set for a client assertion");
                // The client hears a category; the owner's connection doctor hears why.
                let answer = error.token_error();
                self.audit.doctor().record(
                    Source::of(Some(client_id), None),
                    StepKind::KeySet,
                    Some((answer.code.as_str(), &error.detail())),
                    None,
                );
                answer.into()
            })
    }
}

/// No usable key set on the first fetch: a unit of the client's budget is spent when the client
/// is at fault (its set is broken, its URL refused); not when its set could not be fetched right
/// now (503, nobody's fault; the key sets hold such an answer a few seconds, so that no burst
/// fetches a down host in a loop).
fn keys_refused(budget: &Budget, client_id: &str, refused: Refused) -> Refused {
    if !is_outage(&refused) {
        // Spent if there is room; if not, the refusal stands as it is.
        if let Ok(attempt) = budget.reserve(Guessed::client(client_id)) {
            attempt.spend();
        }
    }
    refused
}

/// A key set that could not be had through nobody's fault: 503.
fn is_outage(refused: &Refused) -> bool {
    matches!(refused, Refused::Error(error) if error.code == ErrorCode::TemporarilyUnavailable)
}

/// Every failed check: 401 `invalid_client`, naming the check.
fn refusal(reason: &str) -> Refused {
    OAuthError::invalid_client(format!("client assertion refused: {reason}")).into()
}
