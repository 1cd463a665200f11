//! Soak test: many concurrent complete flows against a real server on 127.0.0.1, on each backend
//! (memory, an SQLite file, Redis), then a check that every token behaves as its history says.
//!
//! ```text
//! cargo run --release --example soak --features memory,sqlite,redis -- --seconds 60
//! ```
//!
//! Options: `--seconds N` of load per backend (default 60), `--workers N` concurrent clients
//! (default 16), `--backends memory,sqlite,redis` (default all three). Redis runs as a child
//! `redis-server` on a free port (append-only, fsync on every write); without `redis-server` that
//! backend is skipped with a line saying so. Exits non-zero on any unexpected answer or any 5xx.
//! See `docs/soak.md` for a run's figures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

// The tests' software passkey, which holds discoverable credentials as the server requires.
mod client;
mod flow;
#[path = "../../tests/faults/redis_process.rs"]
mod redis_process;
mod rss;
mod server;
#[path = "../../tests/flows/common/soft_key.rs"]
mod soft_key;
mod tally;

use server::Backend;
use tally::Tally;

struct Options {
    seconds: u64,
    workers: usize,
    backends: Vec<Backend>,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 60,
        workers: 16,
        backends: vec![Backend::Memory, Backend::Sqlite, Backend::Redis],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        match pair[0].as_str() {
            "--seconds" => options.seconds = value.parse().expect("--seconds N"),
            "--workers" => options.workers = value.parse().expect("--workers N"),
            "--backends" => {
                options.backends = value
                    .split(',')
                    .map(|b| Backend::parse(b).expect("--backends memory,sqlite,redis"))
                    .collect();
            }
            other => panic!("unknown option {other}; see the example's documentation"),
        }
    }
    options
}

#[tokio::main]
async fn main() {
    let options = options();
    let mut failed = false;
    if options.backends.len() > 1 {
        println!(
            "soak: {} s per backend, {} concurrent clients, one process per backend",
            options.seconds, options.workers
        );
        // One process per backend, so each one's peak memory is its own.
        for backend in &options.backends {
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--seconds", &options.seconds.to_string()])
                .args(["--workers", &options.workers.to_string()])
                .args(["--backends", backend.name()])
                .status()
                .unwrap();
            failed |= !status.success();
        }
        finish(failed);
    }
    for backend in &options.backends {
        let Some(tally) = soak(
            *backend,
            Duration::from_secs(options.seconds),
            options.workers,
        )
        .await
        else {
            continue;
        };
        println!("{}", tally.report(backend.name()));
        failed |= !tally.clean();
    }
    finish(failed);
}

fn finish(failed: bool) -> ! {
    if failed {
        eprintln!("soak: FAILED (unexpected answers or 5xx above)");
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// One backend: load for `duration`, then check every token against its history. `None` when the
/// backend is not available here.
async fn soak(backend: Backend, duration: Duration, workers: usize) -> Option<Tally> {
    rss::reset_peak();
    let server = server::Running::start(backend).await?;
    let tally = Tally::default();
    let started = Instant::now();
    let deadline = started + duration;
    let histories = futures::future::join_all(
        (0..workers).map(|worker| flow::worker(&server, &tally, deadline, worker)),
    )
    .await;
    tally.finish_load(started.elapsed());
    for history in histories.iter().flatten() {
        flow::verify(&server, history, &tally).await;
    }
    tally.set_peak_rss(rss::peak_kib());
    Some(tally)
}

#[cfg(test)]
mod smoke {
    /// The soak in miniature, in `cargo test`: a second per backend.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_soak_on_every_backend_is_clean() {
        for backend in [
            super::Backend::Memory,
            super::Backend::Sqlite,
            super::Backend::Redis,
        ] {
            if let Some(tally) = super::soak(backend, std::time::Duration::from_secs(1), 4).await {
                println!("{}", tally.report(backend.name()));
                assert!(tally.clean(), "{}", tally.report(backend.name()));
                assert!(tally.flows() > 0);
            }
        }
    }
}
