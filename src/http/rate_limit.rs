//! Per-IP rate limits in three tiers, with bounded state, over the OAuth endpoints and
//! pages. Each group of routes is held to its tier where the router adds it ([`super::routes`]),
//! never by matching paths here. The MCP routes are limited per grant instead
//! ([`super::grant_limit`]).

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use super::client_ip::{ClientAddresses, rate_limit_key};
use super::grant_limit::GrantLimits;
use super::refusals::Refusals;
use super::state::AppState;
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

/// A per-address tier: how often one address may call a group of routes, by what each call costs
/// the server (the bounds are [`RateLimits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    /// A credential is checked or a passkey ceremony is stored.
    Auth,
    /// Something lasting is created: a client, a passkey.
    Registration,
    /// Everything else: discovery, the pages' assets, the console; and paths no route matches.
    General,
}

impl Tier {
    /// Its name in metrics.
    fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Registration => "registration",
            Self::General => "general",
        }
    }
}

/// What an address over its tier is answered: JSON for clients and scripts, or, for a person's
/// browser opening a page (`GET`), a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Json,
    Page,
}

/// The middleware's state: the limits, and the tier and answer of the group it guards.
#[derive(Clone)]
struct Held {
    limits: Arc<Limits>,
    tier: Tier,
    answer: Answer,
}

/// The OAuth routes, each group held to its tier as it is added. Only [`Tiers::hold`] adds routes,
/// so a route cannot be added without a tier; paths no route matches get the general tier.
pub(super) struct Tiers {
    limits: Option<Arc<Limits>>,
    routes: Router<AppState>,
}

impl Tiers {
    /// No routes yet; `limits` is `None` when rate limiting is off.
    pub(super) fn new(limits: Option<Arc<Limits>>) -> Self {
        Self {
            limits,
            routes: Router::new(),
        }
    }

    /// Add `routes`, every one held to `tier` whatever the method (a wrong method's 405 too).
    pub(super) fn hold(mut self, tier: Tier, answer: Answer, routes: Router<AppState>) -> Self {
        let routes = match &self.limits {
            Some(limits) => routes.route_layer(from_fn_with_state(
                Held {
                    limits: Arc::clone(limits),
                    tier,
                    answer,
                },
                enforce,
            )),
            None => routes,
        };
        self.routes = self.routes.merge(routes);
        self
    }

    /// The routes, and for paths none of them matches the general tier: a layer over an empty
    /// router holds only its fallback, and `merge` keeps its argument's fallback.
    pub(super) fn finish(self) -> Router<AppState> {
        match self.limits {
            Some(limits) => {
                let unmatched = Router::new().layer(from_fn_with_state(
                    Held {
                        limits,
                        tier: Tier::General,
                        answer: Answer::Json,
                    },
                    enforce,
                ));
                self.routes.merge(unmatched)
            }
            None => self.routes,
        }
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

    /// `Err(wait_secs)` when `request` is over `tier`'s limit.
    fn check(&self, tier: Tier, request: &Request) -> Result<(), u64> {
        let limiter = self.limiter(tier);
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
async fn enforce(
    State(Held {
        limits,
        tier,
        answer,
    }): State<Held>,
    request: Request,
    next: Next,
) -> Response {
    match limits.check(tier, &request) {
        Ok(()) => next.run(request).await,
        // A person's browser opening a page gets a page, not JSON.
        Err(wait) if answer == Answer::Page && request.method() == Method::GET => {
            crate::telemetry::rate_limited(tier.as_str());
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
        Err(wait) => {
            crate::telemetry::rate_limited(tier.as_str());
            too_many_requests(wait)
        }
    }
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
