//! Time as the core sees it: the system clock, or a [`ManualClock`] that a test moves by hand.
//!
//! Every expiry the core writes, and every expiry it checks, reads this clock. The stores keep
//! their own time (they drop expired records by the system clock, Redis by its server's), so the
//! core also treats a record whose expiry has passed by *its* clock as gone
//! ([`ClockedTokens`], [`ClockedClients`]). A manual clock never runs behind the system clock, so
//! a record the core holds live is one every store still holds.

mod expiry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::UnixTime;

pub(crate) use expiry::{ClockedClients, ClockedTokens};

/// A clock that moves when told to, for tests: build the layer with it
/// ([`McpOAuthBuilder::clock`](crate::McpOAuthBuilder::clock)) and
/// [`advance`](ManualClock::advance) it to see codes, tokens, consent requests, registrations and
/// console sessions expire, without waiting.
///
/// It shows the system time until it is first advanced; then it stands still, ahead of the system
/// clock, until moved again. It never shows a time behind the system clock: the stores drop
/// expired records by their own time, and a clock behind theirs would hold records live that they
/// have dropped. Clones share one time, so one clock can drive several instances over a shared
/// store. Every time the core compares is its own, the first use of a refresh token included (the
/// store records the time the core gives it), so the refresh grace window runs on this clock too.
///
/// ```
/// use std::time::Duration;
/// use mcp_oauth::ManualClock;
///
/// let clock = ManualClock::new();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(3_600));
/// assert!(clock.now().0 >= before.0 + 3_600);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    /// Where it was last moved to, in milliseconds since the Unix epoch, so that advancing by
    /// fractions of a second adds up. Shown until the system clock passes it.
    moved_to: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock showing the system time, until it is advanced.
    pub fn new() -> Self {
        Self {
            moved_to: Arc::new(AtomicU64::new(system_millis())),
        }
    }

    /// Move the clock `by` past the time it shows now.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        // Saturating: a clock pushed to the end of time stays there rather than wrapping.
        let _ = self
            .moved_to
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |at| {
                Some(at.max(system_millis()).saturating_add(by))
            });
    }

    /// The time the clock shows, in whole seconds like every time in this crate.
    pub fn now(&self) -> UnixTime {
        UnixTime(self.millis() / 1_000)
    }

    /// The time the clock shows, in milliseconds since the Unix epoch.
    fn millis(&self) -> u64 {
        self.moved_to.load(Ordering::SeqCst).max(system_millis())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

fn system_millis() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// Where the core takes the time from.
#[derive(Clone, Debug, Default)]
pub(crate) enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A clock a test moves.
    Manual(ManualClock),
}

impl Clock {
    pub(crate) fn now(&self) -> UnixTime {
        match self {
            Self::System => UnixTime::now(),
            Self::Manual(clock) => clock.now(),
        }
    }

    /// Milliseconds since the Unix epoch, for spans shorter than the seconds every record keeps.
    // Only the caching store measures such spans.
    #[cfg_attr(not(feature = "caching"), allow(dead_code))]
    pub(crate) fn millis(&self) -> u64 {
        match self {
            Self::System => system_millis(),
            Self::Manual(clock) => clock.millis(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved_to(millis: u64) -> ManualClock {
        ManualClock {
            moved_to: Arc::new(AtomicU64::new(millis)),
        }
    }

    #[test]
    fn a_clock_ahead_of_the_system_clock_stands_still_and_its_clones_share_it() {
        let hour_ahead = system_millis() + 3_600_000;
        let clock = moved_to(hour_ahead);
        let shared = Clock::Manual(clock.clone());
        assert_eq!(
            shared.now().0,
            hour_ahead / 1_000,
            "shows where it was moved"
        );
        for _ in 0..8 {
            clock.advance(Duration::from_millis(250));
        }
        assert_eq!(shared.now().0, hour_ahead / 1_000 + 2, "fractions add up");
        clock.advance(Duration::MAX);
        assert_eq!(shared.now().0, u64::MAX / 1_000, "saturates, never wraps");
    }

    #[test]
    fn a_clock_never_shows_a_time_behind_the_system_clock() {
        let clock = moved_to(0);
        let system = UnixTime::now();
        assert!(
            clock.now() >= system,
            "{:?} is behind {system:?}",
            clock.now()
        );
        clock.advance(Duration::from_secs(60));
        assert!(
            clock.now().0 >= system.0 + 60,
            "moved 60 s past the time it showed, not past where it stood"
        );
    }
}
