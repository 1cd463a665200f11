//! Per-IP rate limits in three tiers, with bounded state, over the OAuth endpoints and
//! pages. The MCP routes are limited per grant instead ([`super::grant_limit`]).

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use super::client_ip::{ClientAddresses, rate_limit_key};
use super::grant_limit::GrantLimits;
use super::refusals::Refusals;
use crate::config::{MAX_RATE_LIMIT, RateLimit, RateLimits};
use crate::oauth::budget::Failures;
use crate::oauth::{ErrorCode, OAuthError};

/// Past this many tracked addresses, idle ones are dropped at once.
const MAX_TRACKED: usize = 50_000;
/// Idle addresses are dropped every this many requests.
const SWEEP_EVERY: u64 = 4096;
/// While the table is full of active addresses, every request shares this key: degraded, but bounded.
const OVERFLOW_KEY: IpAddr = IpAddr::V4(Ipv4Addr::BROADCAST);
/// Without connect info there is no peer address; all such requests share this key.
const UNKNOWN_KEY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The three tiers and how to find the client.
pub(crate) struct Limits {
    auth: DefaultKeyedRateLimiter<IpAddr>,
    registration: DefaultKeyedRateLimiter<IpAddr>,
    general: DefaultKeyedRateLimiter<IpAddr>,
    addresses: ClientAddresses,
    requests: AtomicU64,
    warned_no_peer: AtomicBool,
    /// Per grant, on the MCP routes.
    pub(crate) grants: GrantLimits,
    /// Failed credential checks per address and thing guessed.
    pub(crate) failures: Arc<Failures>,
    /// Requests the bearer guard refused, per address.
    pub(crate) refusals: Refusals,
    /// For the HTML variant of the 429 answer.
    app_name: Arc<str>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Tier {
    Auth,
    Registration,
    General,
}

fn tier_of(path: &str) -> Tier {
    if path == "/token"
        || path == "/revoke"
        || path == "/introspect"
        || path == "/authorize"
        || path.starts_with("/authorize/")
        // Each stores a passkey ceremony for minutes, and the first needs no secret at all.
        || path == "/oauth/console/signin/start"
        || path == "/oauth/console/passkeys/add/start"
    {
        Tier::Auth
    } else if path == "/register"
        || path == "/passkey/register"
        || path.starts_with("/passkey/register/")
    {
        Tier::Registration
    } else {
        Tier::General
    }
}

pub(crate) fn limiter<K: std::hash::Hash + Eq + Clone>(
    limit: RateLimit,
) -> DefaultKeyedRateLimiter<K> {
    // Held to the bounds the configuration enforces: governor multiplies the cell by the burst in
    // nanoseconds, which overflows (a panic) past them.
    let bounded = |n: u32| NonZeroU32::new(n.min(MAX_RATE_LIMIT)).unwrap_or(NonZeroU32::MIN);
    let per_minute = bounded(limit.per_minute);
    let burst = bounded(limit.burst);
    RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst))
}

impl Limits {
    /// `None` when rate limiting is switched off.
    pub(crate) fn new(
        config: &RateLimits,
        trusted_proxies: &[IpNet],
        app_name: &str,
    ) -> Option<Arc<Self>> {
        config.enabled.then(|| {
            Arc::new(Self {
                auth: limiter(config.auth),
                registration: limiter(config.registration),
                general: limiter(config.general),
                addresses: ClientAddresses::new(trusted_proxies),
                requests: AtomicU64::new(0),
                warned_no_peer: AtomicBool::new(false),
                grants: GrantLimits::new(config.mcp),
                app_name: Arc::from(app_name),
                failures: Arc::new(Failures::new(config.failures)),
                refusals: Refusals::new(config.refused),
            })
        })
    }

    fn limiter(&self, tier: Tier) -> &DefaultKeyedRateLimiter<IpAddr> {
        match tier {
            Tier::Auth => &self.auth,
            Tier::Registration => &self.registration,
            Tier::General => &self.general,
        }
    }

    pub(crate) fn key(&self, request: &Request) -> IpAddr {
        self.key_of(request.extensions(), request.headers())
    }

    /// The rate-limit key of a request, from its parts.
    pub(crate) fn key_of(&self, extensions: &Extensions, headers: &HeaderMap) -> IpAddr {
        match self.addresses.of(extensions, headers) {
            Some(ip) => rate_limit_key(ip),
            None => {
                if !self.warned_no_peer.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target: "mcp_oauth",
                        "no peer address on requests: serve with `into_make_service_with_connect_info::<SocketAddr>()` \
                         so rate limits apply per client; until then all clients share one limit"
                    );
                }
                UNKNOWN_KEY
            }
        }
    }

    /// Keep the keyed state bounded: drop addresses whose buckets are full again.
    fn sweep(&self, limiter: &DefaultKeyedRateLimiter<IpAddr>) {
        let count = self.requests.fetch_add(1, Ordering::Relaxed);
        if count.is_multiple_of(SWEEP_EVERY) || limiter.len() > MAX_TRACKED {
            for tier in [&self.auth, &self.registration, &self.general] {
                tier.retain_recent();
                tier.shrink_to_fit();
            }
        }
    }

    /// `Err(wait_secs)` when `request` is over its tier's limit.
    fn check(&self, request: &Request) -> Result<(), u64> {
        let limiter = self.limiter(tier_of(request.uri().path()));
        self.sweep(limiter);
        let mut key = self.key(request);
        if limiter.len() >= MAX_TRACKED {
            key = OVERFLOW_KEY;
        }
        limiter
            .check_key(&key)
            .map_err(|not_until| wait_secs(&not_until))
    }
}

/// The middleware: 429 with `Retry-After` over the limit, never 401.
pub(crate) async fn enforce(
    State(limits): State<Arc<Limits>>,
    request: Request,
    next: Next,
) -> Response {
    match limits.check(&request) {
        Ok(()) => next.run(request).await,
        // A person's browser opening a page gets a page, not JSON.
        Err(wait) if is_page(&request) => {
            let message = format!(
                "Too many requests from your address. Try again in {}.",
                seconds(wait)
            );
            let mut response = crate::pages::error(&crate::pages::ErrorPage {
                app_name: &limits.app_name,
                status: StatusCode::TOO_MANY_REQUESTS,
                title: "Slow down",
                message: &message,
                return_to: None,
            });
            if let Ok(value) = HeaderValue::from_str(&wait.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(wait) => too_many_requests(wait),
    }
}

/// The HTML pages: `GET /authorize` and `GET /passkey/register`.
fn is_page(request: &Request) -> bool {
    request.method() == axum::http::Method::GET
        && matches!(request.uri().path(), "/authorize" | "/passkey/register")
}

/// `1 second`, `5 seconds`.
fn seconds(wait: u64) -> String {
    let wait = wait.max(1);
    if wait == 1 {
        "1 second".to_owned()
    } else {
        format!("{wait} seconds")
    }
}

/// 429 with `Retry-After` (RFC 6749-shaped body), never 401: a 401 makes clients drop their tokens.
pub(crate) fn too_many_requests(wait_secs: u64) -> Response {
    let wait = wait_secs.max(1);
    let mut response = OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        format!("too many requests; retry in {}", seconds(wait)),
    )
    .into_response();
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Whole seconds until `not_until` allows the next request, rounded up.
pub(crate) fn wait_secs(not_until: &governor::NotUntil<governor::clock::QuantaInstant>) -> u64 {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_tiers() {
        assert!(matches!(tier_of("/token"), Tier::Auth));
        assert!(matches!(tier_of("/authorize"), Tier::Auth));
        assert!(matches!(tier_of("/authorize/approve"), Tier::Auth));
        assert!(matches!(tier_of("/revoke"), Tier::Auth));
        assert!(matches!(tier_of("/introspect"), Tier::Auth));
        assert!(matches!(tier_of("/register"), Tier::Registration));
        assert!(matches!(
            tier_of("/passkey/register/start"),
            Tier::Registration
        ));
        assert!(matches!(tier_of("/oauth/console/signin/start"), Tier::Auth));
        assert!(matches!(
            tier_of("/oauth/console/passkeys/add/start"),
            Tier::Auth
        ));
        assert!(matches!(
            tier_of("/passkey/register/approval"),
            Tier::Registration
        ));
        assert!(matches!(tier_of("/oauth/console"), Tier::General));
        assert!(matches!(tier_of("/mcp"), Tier::General));
        assert!(matches!(tier_of("/tokens"), Tier::General));
        assert!(matches!(tier_of("/authorized"), Tier::General));
    }
}
