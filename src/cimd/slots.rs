//! Fetch slots: at most [`SlotLimits::global`] fetches in flight, and at most
//! [`SlotLimits::per_host`] of them for any one host, so that a host which accepts connections and
//! then stalls holds only its own share while other clients' documents are still fetched.
//!
//! Waiting for a slot is bounded twice: at most [`SlotLimits::max_waiting`] fetches wait at once,
//! each for at most [`SlotLimits::max_wait`]. The wait is separate from a fetch's own time limit,
//! which starts only once the slot is held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::oauth::client_metadata::Unavailable;

/// How many fetches may run and wait.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotLimits {
    /// Fetches in flight at once, so that a flood of authorization requests naming URLs cannot
    /// turn the server into a request cannon.
    pub(crate) global: usize,
    /// Fetches in flight at once to one host (by name, whatever the port).
    pub(crate) per_host: usize,
    /// Fetches waiting for a slot at once; past it, a fetch fails at once as [`Unavailable::Busy`].
    pub(crate) max_waiting: usize,
    /// The longest a fetch waits for a slot.
    pub(crate) max_wait: Duration,
}

impl SlotLimits {
    /// 16 in flight, 4 per host, 64 waiting for up to 5 seconds: a request that needs a document
    /// gets its answer within 10 seconds (the wait, then the fetch's own 5), and the waiting
    /// requests, and the hosts tracked for them, stay bounded.
    pub(crate) const DEFAULT: Self = Self {
        global: 16,
        per_host: 4,
        max_waiting: 64,
        max_wait: Duration::from_secs(5),
    };
}

/// The slots.
pub(crate) struct FetchSlots {
    limits: SlotLimits,
    global: Arc<Semaphore>,
    shared: Mutex<Shared>,
}

/// What the waiting and running fetches share.
#[derive(Default)]
struct Shared {
    waiting: usize,
    /// A host's semaphore, and how many fetches are waiting for it or holding it. An entry is
    /// removed when that count drops to zero, so the map holds at most `max_waiting + global`.
    hosts: HashMap<String, (Arc<Semaphore>, usize)>,
}

impl std::fmt::Debug for FetchSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchSlots")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A held slot; dropping it frees it.
#[derive(Debug)]
pub(crate) struct Slot<'a> {
    // Field order is drop order: the permits go back before the host can be forgotten, so a new
    // semaphore for the host never coexists with a permit of the old one.
    _global: OwnedSemaphorePermit,
    _host: OwnedSemaphorePermit,
    _user: HostUser<'a>,
}

impl FetchSlots {
    pub(crate) fn new(limits: SlotLimits) -> Self {
        Self {
            limits,
            global: Arc::new(Semaphore::new(limits.global)),
            shared: Mutex::default(),
        }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        // Plain counters, consistent after any panic.
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a fetch from `host`: its own share first, then one of the global slots, so
    /// that fetches queued behind a stalling host never sit on a global slot.
    ///
    /// # Errors
    ///
    /// [`Unavailable::Busy`] when too many fetches are waiting already, or none came free within
    /// [`SlotLimits::max_wait`].
    pub(crate) async fn acquire(&self, host: &str) -> Result<Slot<'_>, Unavailable> {
        let waiting = Waiting::enter(self)?;
        let (user, host_semaphore) = HostUser::enter(self, host);
        let global = Arc::clone(&self.global);
        let permits = tokio::time::timeout(self.limits.max_wait, async move {
            let host = host_semaphore.acquire_owned().await.ok()?;
            let global = global.acquire_owned().await.ok()?;
            Some((host, global))
        })
        .await;
        drop(waiting);
        match permits {
            Ok(Some((host, global))) => Ok(Slot {
                _global: global,
                _host: host,
                _user: user,
            }),
            // Timed out; the semaphores are never closed.
            Err(_) | Ok(None) => Err(Unavailable::Busy),
        }
    }

    #[cfg(test)]
    fn tracked_hosts(&self) -> usize {
        self.shared().hosts.len()
    }
}

/// One fetch counted as waiting, until dropped.
#[derive(Debug)]
struct Waiting<'a>(&'a FetchSlots);

impl<'a> Waiting<'a> {
    fn enter(slots: &'a FetchSlots) -> Result<Self, Unavailable> {
        let mut shared = slots.shared();
        if shared.waiting >= slots.limits.max_waiting {
            return Err(Unavailable::Busy);
        }
        shared.waiting += 1;
        Ok(Self(slots))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.shared().waiting -= 1;
    }
}

/// One fetch counted as a user of its host's semaphore, until dropped.
#[derive(Debug)]
struct HostUser<'a> {
    slots: &'a FetchSlots,
    host: String,
}

impl<'a> HostUser<'a> {
    fn enter(slots: &'a FetchSlots, host: &str) -> (Self, Arc<Semaphore>) {
        let mut shared = slots.shared();
        let (semaphore, users) = shared
            .hosts
            .entry(host.to_owned())
            .or_insert_with(|| (Arc::new(Semaphore::new(slots.limits.per_host)), 0));
        *users += 1;
        let semaphore = Arc::clone(semaphore);
        let user = Self {
            slots,
            host: host.to_owned(),
        };
        (user, semaphore)
    }
}

impl Drop for HostUser<'_> {
    fn drop(&mut self) {
        let mut shared = self.slots.shared();
        if let Some((_, users)) = shared.hosts.get_mut(&self.host) {
            *users -= 1;
            if *users == 0 {
                shared.hosts.remove(&self.host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(global: usize, per_host: usize, max_waiting: usize) -> SlotLimits {
        SlotLimits {
            global,
            per_host,
            max_waiting,
            max_wait: Duration::from_secs(30),
        }
    }

    #[tokio::test]
    async fn one_host_gets_its_share_and_others_the_rest() {
        let slots = FetchSlots::new(limits(3, 2, 8));
        let a1 = slots.acquire("a.example").await.unwrap();
        let _a2 = slots.acquire("a.example").await.unwrap();
        // A third for the same host waits; another host is served at once.
        let waiting = slots.acquire("a.example");
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        let b = slots.acquire("b.example").await.unwrap();
        // The global limit holds too: with all three taken, a fourth host waits.
        let c = slots.acquire("c.example");
        tokio::pin!(c);
        assert!(futures::poll!(&mut c).is_pending());
        // Slots go to the waiting in turn: the freed global slot to the fetch first in line for
        // one, the freed share of `a` to the fetch waiting for `a`.
        drop(a1);
        let _c = c.await.unwrap();
        drop(b);
        let _a3 = waiting.await.unwrap();
    }

    #[tokio::test]
    async fn waiting_is_bounded_in_number_and_in_time() {
        let mut short = limits(1, 1, 1);
        short.max_wait = Duration::from_millis(50);
        let slots = FetchSlots::new(short);
        let _held = slots.acquire("a.example").await.unwrap();
        let first = slots.acquire("b.example");
        tokio::pin!(first);
        assert!(futures::poll!(&mut first).is_pending());
        // One is waiting, the most allowed: the next is refused without waiting.
        assert_eq!(
            slots.acquire("c.example").await.unwrap_err(),
            Unavailable::Busy
        );
        // And the one waiting gives up once its wait is over.
        assert_eq!(first.await.unwrap_err(), Unavailable::Busy);
    }

    #[tokio::test]
    async fn hosts_are_forgotten_once_no_fetch_wants_them() {
        let mut short = limits(1, 1, 100);
        short.max_wait = Duration::from_millis(10);
        let slots = FetchSlots::new(short);
        let held = slots.acquire("a.example").await.unwrap();
        for i in 0..50 {
            // Each waits, times out, and leaves nothing behind.
            assert!(slots.acquire(&format!("h{i}.example")).await.is_err());
        }
        assert_eq!(slots.tracked_hosts(), 1);
        drop(held);
        assert_eq!(slots.tracked_hosts(), 0);
    }
}
