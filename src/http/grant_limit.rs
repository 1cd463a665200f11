//! The MCP routes are limited per grant, not per address: Claude.ai and other hosted clients send
//! every user's calls from a few shared egress addresses. Runs inside the bearer guard, where the
//! grant is known.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use governor::DefaultKeyedRateLimiter;

use super::rate_limit::{Limits, limiter, too_many_requests, wait_secs};
use crate::config::RateLimit;
use crate::oauth::{TokenInfo, TokenSubject};

/// Idle grants are dropped every this many requests.
const SWEEP_EVERY: u64 = 4096;

/// A token bucket per grant.
pub(crate) struct GrantLimits {
    buckets: DefaultKeyedRateLimiter<String>,
    requests: AtomicU64,
}

impl std::fmt::Debug for GrantLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantLimits").finish_non_exhaustive()
    }
}

impl GrantLimits {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            buckets: limiter(limit),
            requests: AtomicU64::new(0),
        }
    }

    fn check(&self, grant: &str) -> Result<(), u64> {
        // Grants are created only by the owner's approval, so their number is small; sweeping now
        // and then keeps even a long-running server's table at the active ones.
        if self
            .requests
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            self.buckets.retain_recent();
            self.buckets.shrink_to_fit();
        }
        self.buckets
            .check_key(&grant.to_owned())
            .map_err(|not_until| wait_secs(&not_until))
    }
}

/// The middleware: a request of a grant over its budget gets 429 with `Retry-After`.
pub(crate) async fn enforce(
    State(limits): State<Arc<Limits>>,
    request: Request,
    next: Next,
) -> Response {
    let verdict = request
        .extensions()
        .get::<TokenInfo>()
        .map(|info| match info.subject {
            // Each of a machine's tokens is a grant of its own: minting more must not buy more
            // requests, so its tokens share one budget.
            TokenSubject::Machine => limits.grants.check(&format!("machine:{}", info.client_id)),
            _ => limits.grants.check(&info.grant_id.0),
        });
    match verdict {
        Some(Err(wait)) => {
            crate::telemetry::rate_limited("mcp");
            too_many_requests(wait)
        }
        // No token information: a preflight, or a route outside the guard; nothing to key on.
        _ => next.run(request).await,
    }
}
