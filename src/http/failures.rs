//! A budget of failed credential checks per client address. A wrong client secret or setup token
//! costs one; past the budget the endpoint answers 429 before it checks anything, until the window
//! ends, so guessing is held to a few attempts per window whatever the request rate.
//!
//! Each check reserves its unit before it runs and gives it back if it succeeds, so checks under
//! way count against the budget: a burst of concurrent guesses cannot all pass a check that only
//! sees the failures already recorded.

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

/// Past this many tracked keys, closed windows are dropped; if all are open, the oldest go.
const MAX_TRACKED: usize = 10_000;

/// Whose budget a credential check spends: the client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FailureKey(IpAddr);

impl FailureKey {
    fn of(limits: &Limits, request: &Request) -> Self {
        Self(limits.key(request))
    }
}

#[derive(Clone, Copy, Debug)]
struct Window {
    opened: Instant,
    /// Failures recorded plus checks under way.
    spent: u32,
}

/// Failures per key in fixed windows.
pub(crate) struct Failures {
    budget: FailureLimit,
    windows: Mutex<HashMap<FailureKey, Window>>,
}

impl std::fmt::Debug for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failures")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// One unit of a budget, taken before a credential check. Dropped, it stays spent (the check
/// failed, or was cut short); [`refund`](Reservation::refund) gives it back after a success.
#[must_use]
struct Reservation<'a> {
    failures: &'a Failures,
    key: FailureKey,
    window: Instant,
}

impl Reservation<'_> {
    fn refund(self) {
        self.failures.refund(self.key, self.window);
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

    fn windows(&self) -> MutexGuard<'_, HashMap<FailureKey, Window>> {
        // A panic while holding the lock leaves plain counters behind, still consistent.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take a unit of `key`'s budget for a check about to run; `Err(wait_secs)` when none is left.
    fn reserve(&self, key: FailureKey, now: Instant) -> Result<Reservation<'_>, u64> {
        let window_length = self.window();
        let mut windows = self.windows();
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&key) {
            windows.retain(|_, w| w.opened + window_length > now);
            if windows.len() >= MAX_TRACKED {
                // Every window is open: forget the oldest half rather than grow without bound.
                let mut opened: Vec<Instant> = windows.values().map(|w| w.opened).collect();
                opened.sort_unstable();
                let cutoff = opened[opened.len() / 2];
                windows.retain(|_, w| w.opened > cutoff);
            }
        }
        let window = windows.entry(key).or_insert(Window {
            opened: now,
            spent: 0,
        });
        let ends = window.opened + window_length;
        if ends <= now {
            *window = Window {
                opened: now,
                spent: 0,
            };
        } else if window.spent >= self.budget.max_failures {
            return Err((ends - now).as_secs().max(1));
        }
        window.spent += 1;
        Ok(Reservation {
            failures: self,
            key,
            window: window.opened,
        })
    }

    /// Give back a unit reserved in the window opened at `window`, if that window still runs.
    fn refund(&self, key: FailureKey, window: Instant) {
        let mut windows = self.windows();
        if let Some(current) = windows.get_mut(&key)
            && current.opened == window
        {
            current.spent = current.spent.saturating_sub(1);
            if current.spent == 0 {
                // Successes leave nothing behind.
                windows.remove(&key);
            }
        }
    }
}

/// The middleware, on the endpoints that check a secret: a 401 or 403 answer keeps its unit spent.
pub(crate) async fn count(
    State(limits): State<Arc<Limits>>,
    request: Request,
    next: Next,
) -> Response {
    let key = FailureKey::of(&limits, &request);
    let reservation = match limits.failures.reserve(key, Instant::now()) {
        Ok(reservation) => reservation,
        Err(wait) => return too_many_requests(wait),
    };
    let response = next.run(request).await;
    if !matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        reservation.refund();
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

    fn key(ip: &str) -> FailureKey {
        FailureKey(ip.parse().unwrap())
    }

    #[test]
    fn the_budget_blocks_until_the_window_ends() {
        let failures = failures(3);
        let ip = key("192.0.2.1");
        let start = Instant::now();
        for _ in 0..3 {
            drop(failures.reserve(ip, start).unwrap());
        }
        assert_eq!(
            failures
                .reserve(ip, start + Duration::from_secs(10))
                .map(|_| ()),
            Err(50)
        );
        assert!(failures.reserve(key("192.0.2.2"), start).is_ok(), "per key");
        let later = start + Duration::from_secs(61);
        drop(failures.reserve(ip, later).expect("a new window"));
        assert!(
            failures.reserve(ip, later + Duration::from_secs(1)).is_ok(),
            "counts start again"
        );
    }

    #[test]
    fn checks_under_way_count_and_successes_give_their_unit_back() {
        let failures = failures(2);
        let ip = key("192.0.2.1");
        let now = Instant::now();
        let first = failures.reserve(ip, now).unwrap();
        let second = failures.reserve(ip, now).unwrap();
        assert!(failures.reserve(ip, now).is_err(), "two checks under way");
        second.refund();
        let third = failures
            .reserve(ip, now)
            .expect("a success gave its unit back");
        first.refund();
        third.refund();
        assert!(failures.windows().is_empty(), "successes leave nothing");
        // A refund from a window that has closed does not touch the next one.
        let old = failures.reserve(ip, now).unwrap();
        let later = now + Duration::from_secs(61);
        drop(failures.reserve(ip, later).unwrap());
        old.refund();
        assert_eq!(failures.windows()[&ip].spent, 1);
    }

    #[test]
    fn the_table_stays_bounded() {
        let failures = failures(3);
        let start = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let ip = FailureKey(IpAddr::from(std::net::Ipv4Addr::from(i)));
            drop(failures.reserve(ip, start + Duration::from_millis(u64::from(i))));
        }
        assert!(failures.windows().len() <= MAX_TRACKED);
    }
}
