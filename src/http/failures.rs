//! A budget of failed credential checks per client address. A wrong client secret or setup token
//! costs one; past the budget the endpoint answers 429 before it checks anything, until the window
//! ends, so guessing is held to a few attempts per window whatever the request rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::rate_limit::{Limits, too_many_requests};
use crate::config::FailureLimit;

/// Past this many tracked addresses, closed windows are dropped; if all are open, the oldest go.
const MAX_TRACKED: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Window {
    opened: Instant,
    failures: u32,
}

/// Failures per address in fixed windows.
pub(crate) struct Failures {
    budget: FailureLimit,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

impl std::fmt::Debug for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failures")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Failures {
    pub(crate) fn new(budget: FailureLimit) -> Self {
        Self {
            budget,
            windows: Mutex::default(),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.budget.window_secs)
    }

    fn windows(&self) -> MutexGuard<'_, HashMap<IpAddr, Window>> {
        // A panic while holding the lock leaves plain counters behind, still consistent.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err(wait_secs)` while `ip` has used up its budget.
    fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        match self.windows().get(&ip) {
            Some(window) if window.failures >= self.budget.max_failures => {
                let ends = window.opened + self.window();
                if ends > now {
                    Err((ends - now).as_secs().max(1))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    fn record(&self, ip: IpAddr, now: Instant) {
        let window_length = self.window();
        let mut windows = self.windows();
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&ip) {
            windows.retain(|_, w| w.opened + window_length > now);
            if windows.len() >= MAX_TRACKED {
                // Every window is open: forget the oldest half rather than grow without bound.
                let mut opened: Vec<Instant> = windows.values().map(|w| w.opened).collect();
                opened.sort_unstable();
                let cutoff = opened[opened.len() / 2];
                windows.retain(|_, w| w.opened > cutoff);
            }
        }
        let window = windows.entry(ip).or_insert(Window {
            opened: now,
            failures: 0,
        });
        if window.opened + window_length <= now {
            *window = Window {
                opened: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }
}

/// The middleware, on the endpoints that check a secret: a 401 or 403 answer counts as a failure.
pub(crate) async fn count(
    State(limits): State<Arc<Limits>>,
    request: Request,
    next: Next,
) -> Response {
    let failures = &limits.failures;
    let ip = limits.key(&request);
    if let Err(wait) = failures.check(ip, Instant::now()) {
        return too_many_requests(wait);
    }
    let response = next.run(request).await;
    if matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        failures.record(ip, Instant::now());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(max_failures: u32) -> Failures {
        Failures::new(FailureLimit {
            max_failures,
            window_secs: 60,
        })
    }

    #[test]
    fn the_budget_blocks_until_the_window_ends() {
        let failures = failures(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(failures.check(ip, start).is_ok());
            failures.record(ip, start);
        }
        assert_eq!(failures.check(ip, start + Duration::from_secs(10)), Err(50));
        assert!(
            failures.check("192.0.2.2".parse().unwrap(), start).is_ok(),
            "per address"
        );
        assert!(
            failures.check(ip, start + Duration::from_secs(61)).is_ok(),
            "a new window"
        );
        failures.record(ip, start + Duration::from_secs(61));
        assert!(
            failures.check(ip, start + Duration::from_secs(62)).is_ok(),
            "counts start again"
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let failures = failures(3);
        let start = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            failures.record(ip, start + Duration::from_millis(u64::from(i)));
        }
        assert!(failures.windows().len() <= MAX_TRACKED);
    }
}
