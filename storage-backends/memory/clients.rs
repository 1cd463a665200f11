//! Registered clients in memory. Approved clients stay until they lapse or the owner removes them;
//! registrations nobody approved are capped, by count and by bytes, and past the cap a new one is
//! refused. Nothing is ever evicted to make room, so a flood of registrations cannot push out a
//! client the owner approved.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::limits::client_bytes;
use crate::store::{ClientRecord, StoreError, UnixTime};

/// The clients, behind one lock: each operation is one short critical section, so counting the
/// unapproved clients and inserting one are a single atomic step.
pub(super) struct ClientTable {
    inner: Mutex<Clients>,
    /// At most this many unapproved clients, whatever the caller's cap.
    max_unapproved: u64,
    /// At most this many bytes of unapproved clients.
    max_unapproved_bytes: u64,
}

#[derive(Default)]
struct Clients {
    records: HashMap<String, ClientRecord>,
    /// The unapproved clients by expiry, so the lapsed ones are found first and dropped.
    unapproved: BTreeSet<(UnixTime, String)>,
    unapproved_bytes: u64,
}

/// Where an unapproved client sits in the expiry order; one that never expires sorts last.
fn expiry_key(client: &ClientRecord) -> (UnixTime, String) {
    (
        client.expires_at.unwrap_or(UnixTime(u64::MAX)),
        client.client_id.clone(),
    )
}

fn weight(client: &ClientRecord) -> u64 {
    u64::try_from(client_bytes(client)).unwrap_or(u64::MAX)
}

impl Clients {
    /// Remove a client, and its place among the unapproved.
    fn remove(&mut self, client_id: &str) -> Option<ClientRecord> {
        let client = self.records.remove(client_id)?;
        if !client.is_approved() && self.unapproved.remove(&expiry_key(&client)) {
            self.unapproved_bytes = self.unapproved_bytes.saturating_sub(weight(&client));
        }
        Some(client)
    }

    /// Drop the unapproved clients that have lapsed, so they neither count nor weigh.
    fn drop_lapsed_unapproved(&mut self, now: UnixTime) {
        while let Some((expires_at, client_id)) = self.unapproved.first().cloned() {
            if expires_at.is_after(now) {
                break;
            }
            self.remove(&client_id);
        }
    }
}

impl ClientTable {
    pub(super) fn new(max_unapproved: u64, max_unapproved_bytes: u64) -> Self {
        Self {
            inner: Mutex::default(),
            max_unapproved,
            max_unapproved_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Clients> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn len(&self) -> usize {
        self.lock().records.len()
    }

    pub(super) fn insert(
        &self,
        client: ClientRecord,
        max_unapproved: u64,
    ) -> Result<(), StoreError> {
        let now = UnixTime::now();
        let mut clients = self.lock();
        clients.drop_lapsed_unapproved(now);
        match clients.records.get(&client.client_id) {
            Some(existing) if existing.is_live(now) => {
                return Err(StoreError::AlreadyExists { what: "client" });
            }
            Some(_) => {
                clients.remove(&client.client_id);
            }
            None => {}
        }
        // Already lapsed: invisible at once, so there is nothing to keep.
        if !client.is_live(now) {
            return Ok(());
        }
        if !client.is_approved() {
            let count = u64::try_from(clients.unapproved.len()).unwrap_or(u64::MAX);
            let bytes = clients.unapproved_bytes.saturating_add(weight(&client));
            if count >= max_unapproved.min(self.max_unapproved) || bytes > self.max_unapproved_bytes
            {
                return Err(StoreError::CapacityReached {
                    what: "unapproved client",
                });
            }
            clients.unapproved.insert(expiry_key(&client));
            clients.unapproved_bytes = bytes;
        }
        clients.records.insert(client.client_id.clone(), client);
        Ok(())
    }

    pub(super) fn get(&self, client_id: &str) -> Option<ClientRecord> {
        let now = UnixTime::now();
        self.lock()
            .records
            .get(client_id)
            .filter(|client| client.is_live(now))
            .cloned()
    }

    pub(super) fn mark_approved(
        &self,
        client_id: &str,
        approved_at: UnixTime,
        expires_at: Option<UnixTime>,
    ) -> bool {
        let now = UnixTime::now();
        let mut clients = self.lock();
        let live = clients
            .records
            .get(client_id)
            .is_some_and(|client| client.is_live(now));
        if !live {
            return false;
        }
        let Some(mut client) = clients.remove(client_id) else {
            return false;
        };
        client.approved_at = Some(approved_at);
        client.expires_at = expires_at;
        clients.records.insert(client.client_id.clone(), client);
        true
    }

    /// Remove a client if `which` says so; returns whether a live one was removed.
    fn delete_where(&self, client_id: &str, which: impl Fn(&ClientRecord) -> bool) -> bool {
        let now = UnixTime::now();
        let mut clients = self.lock();
        if !clients.records.get(client_id).is_some_and(which) {
            return false;
        }
        clients
            .remove(client_id)
            .is_some_and(|client| client.is_live(now))
    }

    pub(super) fn delete(&self, client_id: &str) -> bool {
        self.delete_where(client_id, |_| true)
    }

    pub(super) fn delete_unapproved(&self, client_id: &str) -> bool {
        self.delete_where(client_id, |client| !client.is_approved())
    }

    pub(super) fn list(&self) -> Vec<ClientRecord> {
        let now = UnixTime::now();
        self.lock()
            .records
            .values()
            .filter(|client| client.is_live(now))
            .cloned()
            .collect()
    }

    /// Drop every lapsed client; returns how many.
    pub(super) fn sweep(&self) -> u64 {
        let now = UnixTime::now();
        let mut clients = self.lock();
        let lapsed: Vec<String> = clients
            .records
            .values()
            .filter(|client| !client.is_live(now))
            .map(|client| client.client_id.clone())
            .collect();
        for client_id in &lapsed {
            clients.remove(client_id);
        }
        u64::try_from(lapsed.len()).unwrap_or(u64::MAX)
    }
}
