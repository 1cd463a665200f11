//! A per-address budget of requests the bearer guard refuses (no token, an invalid one, too few
//! scopes). A refusal costs the server a hash, a store read (a round trip, with Redis) and a
//! connection-doctor entry; once an address has spent its budget, the guard answers 429 before any of that
//! until the budget refills. Valid tokens spend nothing, and while no address is over its budget,
//! the check costs a request one atomic load.
//!
//! The check and the refusal are not one step: requests under way when an address runs out are
//! still answered. When its wait ends, the first request through claims the next cell for itself,
//! so the others keep waiting and an address over its budget costs one refusal per cell however
//! fast it sends.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;

use super::rate_limit::limiter;
use crate::config::{MAX_RATE_LIMIT, RateLimit};

/// Past this many tracked addresses, the idle ones are dropped.
const MAX_TRACKED: usize = 50_000;
/// Idle addresses are dropped every this many refusals.
const SWEEP_EVERY: u64 = 4096;
/// While the buckets are full of active addresses, new ones share this bucket.
const OVERFLOW_KEY: IpAddr = IpAddr::V4(Ipv4Addr::BROADCAST);

type Buckets =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

/// The refusals each address may still cost, and the addresses that may cost none for now.
pub(crate) struct Refusals {
    /// One cell per refused request.
    buckets: Buckets,
    /// Addresses whose bucket is empty, and until when: read before any work, written only when a
    /// bucket runs dry.
    over: Mutex<HashMap<IpAddr, Instant>>,
    /// When the last entry of `over` ends, in milliseconds after `epoch`; 0 while there is none.
    over_until: AtomicU64,
    /// How long a bucket takes to refill one cell.
    cell: Duration,
    epoch: Instant,
    spent: AtomicU64,
}

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusals").finish_non_exhaustive()
    }
}

impl Refusals {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            buckets: limiter(limit).with_middleware::<StateInformationMiddleware>(),
            over: Mutex::default(),
            over_until: AtomicU64::new(0),
            cell: Duration::from_secs(60) / limit.per_minute.clamp(1, MAX_RATE_LIMIT),
            epoch: Instant::now(),
            spent: AtomicU64::new(0),
        }
    }

    fn over(&self) -> MutexGuard<'_, HashMap<IpAddr, Instant>> {
        // A panic while holding the lock leaves plain deadlines behind, still consistent.
        self.over
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Milliseconds after `epoch`, rounded up, and never 0.
    fn millis(&self, at: Instant) -> u64 {
        let elapsed = at.saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// `Err(wait_secs)` while the address has no refusal left. `address` is worked out only while
    /// some address is over its budget.
    pub(crate) fn check(&self, address: impl FnOnce() -> IpAddr) -> Result<(), u64> {
        if self.over_until.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let address = address();
        let now = Instant::now();
        let mut over = self.over();
        if self.millis(now) > self.over_until.load(Ordering::Relaxed) {
            // Every deadline has passed: back to the one-load check.
            over.clear();
            self.over_until.store(0, Ordering::Relaxed);
            return Ok(());
        }
        match over.get_mut(&address) {
            Some(until) if *until > now => Err(whole_seconds(*until - now)),
            Some(until) => {
                // The wait is over: this request may cost the next cell, the others wait for it.
                *until = now + self.cell;
                self.over_until
                    .fetch_max(self.millis(*until), Ordering::Relaxed);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Count one refusal against `address`; when that empties its bucket, the address is over
    /// until a refusal is allowed again.
    pub(crate) fn spend(&self, address: IpAddr) {
        self.sweep();
        let bucket = if self.buckets.len() >= MAX_TRACKED {
            OVERFLOW_KEY
        } else {
            address
        };
        let now = Instant::now();
        let until = match self.buckets.check_key(&bucket) {
            Ok(state) if state.remaining_burst_capacity() > 0 => return,
            // The last one: the next cell is at most one interval away.
            Ok(_) => now + self.cell,
            Err(not_until) => now + not_until.wait_time_from(self.buckets.clock().now()),
        };
        let mut over = self.over();
        if over.len() >= MAX_TRACKED {
            over.retain(|_, ends| *ends > now);
        }
        // Still full of live deadlines: this address is not held back early, but each of its
        // refusals still spends from its bucket, and the table stays bounded.
        if over.len() < MAX_TRACKED {
            over.insert(address, until);
            self.over_until
                .fetch_max(self.millis(until), Ordering::Relaxed);
        }
    }

    /// Keep the buckets bounded: drop addresses whose buckets are full again.
    fn sweep(&self) {
        if self
            .spent
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            self.buckets.retain_recent();
            self.buckets.shrink_to_fit();
        }
    }
}

/// Whole seconds, rounded up, at least 1.
fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_over_once_its_burst_is_spent_and_others_are_not() {
        let refusals = Refusals::new(RateLimit::new(1, 3));
        let stranger = ip("192.0.2.1");
        let unused = || -> IpAddr { panic!("no address is over: nothing to look up") };
        for _ in 0..2 {
            refusals.spend(stranger);
            assert_eq!(refusals.check(unused), Ok(()));
        }
        refusals.spend(stranger);
        let wait = refusals.check(|| stranger).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(refusals.check(|| ip("192.0.2.2")), Ok(()));
    }

    #[test]
    fn past_every_deadline_the_check_is_one_load_again() {
        // 60 000 a minute: one refusal every millisecond.
        let refusals = Refusals::new(RateLimit::new(60_000, 1));
        let stranger = ip("192.0.2.1");
        refusals.spend(stranger);
        assert_ne!(refusals.over_until.load(Ordering::Relaxed), 0);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(refusals.check(|| stranger), Ok(()));
        assert_eq!(refusals.over_until.load(Ordering::Relaxed), 0);
        assert!(refusals.over().is_empty());
    }

    #[test]
    fn when_the_wait_ends_one_request_claims_the_next_cell() {
        let refusals = Refusals::new(RateLimit::new(1, 1));
        let stranger = ip("192.0.2.1");
        let now = Instant::now();
        // Over, and its wait has just ended; another address keeps the table alive.
        refusals.over().insert(stranger, now);
        refusals
            .over()
            .insert(ip("192.0.2.9"), now + Duration::from_secs(600));
        refusals.over_until.store(
            refusals.millis(now + Duration::from_secs(600)),
            Ordering::Relaxed,
        );
        assert_eq!(refusals.check(|| stranger), Ok(()), "the first one through");
        let wait = refusals.check(|| stranger).unwrap_err();
        assert!((59..=60).contains(&wait), "the rest wait a cell: {wait}");
    }

    #[test]
    fn a_tier_past_the_limit_is_held_to_it_and_never_overflows() {
        // The configuration refuses such tiers; the arithmetic does not rely on it.
        for tier in [RateLimit::new(1, u32::MAX), RateLimit::new(u32::MAX, 1)] {
            let refusals = Refusals::new(tier);
            let stranger = ip("192.0.2.1");
            refusals.spend(stranger);
            refusals.spend(stranger);
            let _ = refusals.check(|| stranger);
        }
    }

    #[test]
    fn the_tables_stay_bounded() {
        let refusals = Refusals::new(RateLimit::new(1, 1));
        for i in 0..(MAX_TRACKED as u32 + 500) {
            refusals.spend(IpAddr::from(Ipv4Addr::from(i)));
        }
        assert!(refusals.over().len() <= MAX_TRACKED);
        assert!(refusals.buckets.len() <= MAX_TRACKED + 1);
    }
}
