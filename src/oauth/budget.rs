//! A budget of failed credential checks per client address *and* per thing guessed: one client's
//! secret, the setup token, the owner's passkey. A failed check costs one; past the budget, checks
//! of that thing from that address are answered 429 before anything is checked, until the window
//! ends, so guessing is held to a few attempts per window whatever the request rate.
//!
//! Keyed by what is guessed, failures against one credential never deny another credential from
//! the same address (a NAT, a hosted client's egress, an untrusted proxy): wrong secrets for one
//! client leave every other client's budget and the owner's sign-in alone. (Guesses against one
//! credential do hold that credential back from that address: that is the limit.)
//!
//! Each check reserves its unit before it runs and gives it back if it succeeds, so checks under
//! way count against the budget: a burst of concurrent guesses cannot all pass a check that only
//! sees the failures already recorded. The right credential is refused as well once the budget is
//! spent: a budget that let it through would tell the guesser which guess was right.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{ErrorCode, OAuthError};
use crate::config::{FailureLimit, MAX_SHORT_LIFETIME_SECS};
use crate::store::{StoreError, TokenHash};

/// Past this many tracked keys, closed windows are dropped; if all are open, the cheapest to
/// rebuild go (see [`forget_the_cheapest`]).
const MAX_TRACKED: usize = 10_000;

/// What a credential check is guessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Guessed {
    /// The secret of the client with this id (hashed, so that a key is small whatever the id).
    Client(TokenHash),
    /// Any client id that names no client: one budget per address for all of them, apart from
    /// every real client's, so that made-up ids can neither block a client nor fill the table.
    UnknownClient,
    /// The setup token that enrols a passkey.
    SetupToken,
    /// The owner's passkey: console sign-in, and approving the enrolment of another passkey.
    Owner,
}

impl Guessed {
    pub(crate) fn client(client_id: &str) -> Self {
        Self::Client(TokenHash::of(client_id))
    }
}

/// Whose budget a credential check spends: the thing guessed, from the client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FailureKey {
    address: IpAddr,
    guessed: Guessed,
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
    /// The window, at most a day whatever the budget says, so that adding it to an `Instant`
    /// cannot overflow (which panics).
    window: Duration,
    windows: Mutex<HashMap<FailureKey, Window>>,
}

impl std::fmt::Debug for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failures")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// The budget is spent: answer 429 with `Retry-After: wait_secs`, without checking anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exhausted {
    pub(crate) wait_secs: u64,
}

/// Why an endpoint that checks a credential did not serve a request.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The protocol said no.
    Error(OAuthError),
    /// The caller's budget for what it is guessing is spent.
    Limited(Exhausted),
}

impl From<OAuthError> for Refused {
    fn from(error: OAuthError) -> Self {
        Self::Error(error)
    }
}

/// A backend failure: `temporarily_unavailable`, as everywhere.
impl From<StoreError> for Refused {
    fn from(error: StoreError) -> Self {
        Self::Error(error.into())
    }
}

impl From<Exhausted> for Refused {
    fn from(exhausted: Exhausted) -> Self {
        Self::Limited(exhausted)
    }
}

/// One caller's budget: the shared table and the caller's address; `None` when rate limits are
/// off.
#[derive(Debug)]
pub(crate) struct Budget(Option<(Arc<Failures>, IpAddr)>);

/// One unit of a budget, taken before a credential check. Dropped, it stays spent (the check
/// failed, or was cut short); [`refund`](Attempt::refund) gives it back after a success.
#[must_use]
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    /// `None` when the budget is unlimited.
    reserved: Option<(&'a Failures, FailureKey, Instant)>,
}

impl Attempt<'_> {
    /// The check passed, or checked nothing that could be guessed: the unit goes back.
    pub(crate) fn refund(self) {
        if let Some((failures, key, window)) = self.reserved {
            failures.refund(key, window);
        }
    }

    /// The check failed: the unit stays spent.
    pub(crate) fn spend(self) {}
}

impl Budget {
    pub(crate) fn new(failures: Arc<Failures>, address: IpAddr) -> Self {
        Self(Some((failures, address)))
    }

    /// No budget: rate limits are off.
    pub(crate) fn unlimited() -> Self {
        Self(None)
    }

    /// Run `check`, a credential check that answers `access_denied` when the credential is wrong,
    /// on a unit of the budget for `guessed`: the unit is reserved before the check runs (a future
    /// runs only when awaited), a refusal keeps it spent, and anything else (success, a malformed
    /// request, an outage) gives it back.
    pub(crate) async fn check<T>(
        &self,
        guessed: Guessed,
        check: impl Future<Output = Result<T, OAuthError>>,
    ) -> Result<T, Refused> {
        let attempt = self.reserve(guessed)?;
        let result = check.await;
        match &result {
            Err(error) if error.code == ErrorCode::AccessDenied => attempt.spend(),
            _ => attempt.refund(),
        }
        Ok(result?)
    }

    /// Take a unit of the caller's budget for guessing `guessed`, before the check runs.
    pub(crate) fn reserve(&self, guessed: Guessed) -> Result<Attempt<'_>, Exhausted> {
        let Some((failures, address)) = &self.0 else {
            return Ok(Attempt { reserved: None });
        };
        let key = FailureKey {
            address: *address,
            guessed,
        };
        let window = failures.reserve(key, Instant::now())?;
        Ok(Attempt {
            reserved: Some((failures, key, window)),
        })
    }
}

impl Failures {
    pub(crate) fn new(budget: FailureLimit) -> Self {
        Self {
            budget,
            window: Duration::from_secs(budget.window_secs.min(MAX_SHORT_LIFETIME_SECS)),
            windows: Mutex::default(),
        }
    }

    fn windows(&self) -> MutexGuard<'_, HashMap<FailureKey, Window>> {
        // A panic while holding the lock leaves plain counters behind, still consistent.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take a unit of `key`'s budget for a check about to run; the window it was taken in.
    fn reserve(&self, key: FailureKey, now: Instant) -> Result<Instant, Exhausted> {
        let window_length = self.window;
        let mut windows = self.windows();
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&key) {
            windows.retain(|_, w| w.opened + window_length > now);
            if windows.len() >= MAX_TRACKED {
                forget_the_cheapest(&mut windows);
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
            return Err(Exhausted {
                wait_secs: (ends - now).as_secs().max(1),
            });
        }
        window.spent += 1;
        Ok(window.opened)
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

/// Every window is open and the table is full: forget an eighth of it rather than grow without
/// bound, cheapest to build again first: the fewest units spent, and among equals the newest.
/// So a spent budget outlives a flood of fresh keys (forgetting it would hand its guesser a new
/// budget), and a flood of spent ones forgets its own newest keys before anyone's older ones.
fn forget_the_cheapest(windows: &mut HashMap<FailureKey, Window>) {
    let mut by_cost: Vec<(u32, std::cmp::Reverse<Instant>, FailureKey)> = windows
        .iter()
        .map(|(key, w)| (w.spent, std::cmp::Reverse(w.opened), *key))
        .collect();
    by_cost.sort_unstable_by_key(|(spent, newest, _)| (*spent, *newest));
    let forget = windows.len() - MAX_TRACKED / 8 * 7;
    for (_, _, key) in by_cost.into_iter().take(forget) {
        windows.remove(&key);
    }
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
        FailureKey {
            address: ip.parse().unwrap(),
            guessed: Guessed::client("a-client"),
        }
    }

    #[test]
    fn a_window_past_the_limit_is_held_to_a_day_and_never_overflows() {
        // The configuration refuses such a window; the arithmetic does not rely on it.
        let failures = Failures::new(FailureLimit {
            max_failures: 1,
            window_secs: u64::MAX,
        });
        let ip = key("192.0.2.1");
        let now = Instant::now();
        failures.reserve(ip, now).unwrap();
        assert_eq!(
            failures.reserve(ip, now),
            Err(Exhausted {
                wait_secs: MAX_SHORT_LIFETIME_SECS
            })
        );
    }

    #[test]
    fn the_budget_blocks_until_the_window_ends() {
        let failures = failures(3);
        let ip = key("192.0.2.1");
        let start = Instant::now();
        for _ in 0..3 {
            failures.reserve(ip, start).unwrap();
        }
        assert_eq!(
            failures.reserve(ip, start + Duration::from_secs(10)),
            Err(Exhausted { wait_secs: 50 })
        );
        assert!(failures.reserve(key("192.0.2.2"), start).is_ok(), "per key");
        let later = start + Duration::from_secs(61);
        failures.reserve(ip, later).expect("a new window");
        assert!(
            failures.reserve(ip, later + Duration::from_secs(1)).is_ok(),
            "counts start again"
        );
    }

    #[test]
    fn each_thing_guessed_has_its_own_budget_at_one_address() {
        let failures = failures(1);
        let now = Instant::now();
        let at = |guessed| FailureKey {
            address: "192.0.2.1".parse().unwrap(),
            guessed,
        };
        let keys = [
            at(Guessed::client("a")),
            at(Guessed::client("b")),
            at(Guessed::UnknownClient),
            at(Guessed::SetupToken),
            at(Guessed::Owner),
        ];
        for key in keys {
            failures.reserve(key, now).unwrap();
        }
        for key in keys {
            assert!(failures.reserve(key, now).is_err(), "{key:?}");
        }
    }

    #[test]
    fn checks_under_way_count_and_successes_give_their_unit_back() {
        let failures = Arc::new(failures(2));
        let budget = Budget::new(Arc::clone(&failures), "192.0.2.1".parse().unwrap());
        let guessed = Guessed::client("a-client");
        let first = budget.reserve(guessed).unwrap();
        let second = budget.reserve(guessed).unwrap();
        assert!(budget.reserve(guessed).is_err(), "two checks under way");
        second.refund();
        let third = budget
            .reserve(guessed)
            .expect("a success gave its unit back");
        first.refund();
        third.refund();
        assert!(failures.windows().is_empty(), "successes leave nothing");
        // A refund from a window that has closed does not touch the next one.
        let ip = key("192.0.2.1");
        let now = Instant::now();
        let old = failures.reserve(ip, now).unwrap();
        let later = now + Duration::from_secs(61);
        failures.reserve(ip, later).unwrap();
        failures.refund(ip, old);
        assert_eq!(failures.windows()[&ip].spent, 1);
    }

    #[tokio::test]
    async fn a_check_runs_on_a_reserved_unit_that_only_a_refusal_keeps() {
        let failures = Arc::new(failures(1));
        let budget = Budget::new(Arc::clone(&failures), "192.0.2.1".parse().unwrap());
        for outcome in [Ok(()), Err(OAuthError::invalid_request("malformed"))] {
            let checked = budget
                .check(Guessed::Owner, async {
                    assert_eq!(
                        failures.windows().len(),
                        1,
                        "reserved before the check runs"
                    );
                    outcome.clone()
                })
                .await;
            assert!(matches!(checked, Ok(()) | Err(Refused::Error(_))));
            assert!(
                failures.windows().is_empty(),
                "{outcome:?} gave the unit back"
            );
        }
        let denied = budget
            .check(Guessed::Owner, async {
                Err::<(), _>(OAuthError::new(ErrorCode::AccessDenied, "wrong"))
            })
            .await;
        assert!(matches!(denied, Err(Refused::Error(_))));
        let limited = budget.check(Guessed::Owner, async { Ok(()) }).await;
        assert!(
            matches!(limited, Err(Refused::Limited(_))),
            "a refusal kept its unit, and the budget of one is spent"
        );
    }

    #[test]
    fn an_unlimited_budget_never_refuses() {
        let budget = Budget::unlimited();
        for _ in 0..100 {
            budget.reserve(Guessed::SetupToken).unwrap().spend();
        }
    }

    #[test]
    fn the_table_stays_bounded() {
        let failures = failures(3);
        let start = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let key = FailureKey {
                address: IpAddr::from(std::net::Ipv4Addr::from(i)),
                guessed: Guessed::UnknownClient,
            };
            let _ = failures.reserve(key, start + Duration::from_millis(u64::from(i)));
        }
        assert!(failures.windows().len() <= MAX_TRACKED);
    }

    #[test]
    fn a_flood_of_fresh_keys_does_not_forget_a_spent_budget() {
        let failures = failures(3);
        let start = Instant::now();
        let guesser = key("192.0.2.1");
        for _ in 0..3 {
            failures.reserve(guesser, start).unwrap();
        }
        // Fresh keys, one failure each, until the table has been full several times over.
        for i in 0..(4 * MAX_TRACKED as u32) {
            let flood = FailureKey {
                address: IpAddr::from(std::net::Ipv4Addr::from(i)),
                guessed: Guessed::UnknownClient,
            };
            let _ = failures.reserve(flood, start + Duration::from_millis(u64::from(i % 1000)));
            assert!(failures.windows().len() <= MAX_TRACKED, "bounded");
        }
        assert!(
            failures
                .reserve(guesser, start + Duration::from_secs(1))
                .is_err(),
            "the guesser's spent budget survives the flood"
        );
    }
}
