//! Counters shared by the workers, and the report line.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Tally {
    flows: AtomicU64,
    requests: AtomicU64,
    server_errors: AtomicU64,
    /// Answers that differ from what the token's history says: the first few, for the report.
    unexpected: AtomicU64,
    examples: Mutex<Vec<String>>,
    load: Mutex<Duration>,
    load_requests: AtomicU64,
    verified: AtomicU64,
    peak_rss_kib: Mutex<Option<u64>>,
}

impl Tally {
    pub(crate) fn request(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn flow_done(&self) {
        self.flows.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn verified(&self) {
        self.verified.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unexpected(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        let mut examples = self.examples.lock().unwrap();
        if examples.len() < 5 {
            examples.push(what);
        }
    }

    pub(crate) fn finish_load(&self, elapsed: Duration) {
        *self.load.lock().unwrap() = elapsed;
        self.load_requests
            .store(self.requests.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub(crate) fn set_peak_rss(&self, kib: Option<u64>) {
        *self.peak_rss_kib.lock().unwrap() = kib;
    }

    pub(crate) fn flows(&self) -> u64 {
        self.flows.load(Ordering::Relaxed)
    }

    /// No 5xx and no answer that contradicts a token's history.
    pub(crate) fn clean(&self) -> bool {
        self.server_errors.load(Ordering::Relaxed) == 0
            && self.unexpected.load(Ordering::Relaxed) == 0
    }

    pub(crate) fn report(&self, backend: &str) -> String {
        let load = *self.load.lock().unwrap();
        let load_requests = self.load_requests.load(Ordering::Relaxed);
        let flows = self.flows();
        let mut line = format!(
            "{backend:>6}: {flows} flows, {} requests ({load_requests} under load in {:.1} s: {:.0} req/s, {:.1} flows/s), \
             {} tokens checked against their history, {} unexpected, {} 5xx, peak RSS {}",
            self.requests.load(Ordering::Relaxed),
            load.as_secs_f64(),
            load_requests as f64 / load.as_secs_f64(),
            flows as f64 / load.as_secs_f64(),
            self.verified.load(Ordering::Relaxed),
            self.unexpected.load(Ordering::Relaxed),
            self.server_errors.load(Ordering::Relaxed),
            self.peak_rss_kib
                .lock()
                .unwrap()
                .map_or("unknown".to_owned(), |kib| format!(
                    "{:.1} MiB",
                    kib as f64 / 1024.0
                )),
        );
        for example in self.examples.lock().unwrap().iter() {
            line.push_str("\n        ");
            line.push_str(example);
        }
        line
    }
}
