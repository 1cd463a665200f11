//! N in-process requests of one kind, for instruction counts under callgrind (`benches/load.sh`
//! runs it twice, with N and 2N, and divides the difference by N, so setup cancels out).
//!
//! ```sh
//! cargo build --release --example bench_calls
//! valgrind --tool=callgrind target/release/examples/bench_calls guard 1000
//! ```
//!
//! Modes: `plain` (the MCP route, no guard), `guard` (the route behind the bearer guard on
//! `MemoryStore`), `full` (the whole router: CORS and the guard), `refresh` (the refresh grant,
//! following rotation), `refresh_jwt` (the same by a client signing RS256 assertions: always
//! [`SIGNED`] of them, signed first, so that the difference between N and 2N holds no signing;
//! N at most [`SIGNED`]; `BENCH_RSA_KEY=path` names a PKCS#8 key to sign with, else one is
//! generated, whose prime search makes the count vary).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../benches/support/mod.rs"]
mod support;

use std::time::Instant;

use axum::http::StatusCode;
use support::{Backend, Bench, jose, mcp_request, send};

/// The assertions `refresh_jwt` signs, whatever N.
const SIGNED: usize = 1_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage());
    let count: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| usage());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut bench = Bench::start(&Backend::Memory).await;
        let tokens = bench.connect().await;
        match mode.as_str() {
            "plain" | "guard" | "full" => {
                let app = match mode.as_str() {
                    "plain" => support::served(support::mcp_route()),
                    "guard" => bench.guarded.clone(),
                    _ => bench.full.clone(),
                };
                // The same request in every mode (the bare route ignores the header), so the
                // difference between modes is the server's work alone.
                for _ in 0..count {
                    let (status, _) = send(&app, mcp_request(Some(&tokens.access))).await;
                    assert_eq!(status, StatusCode::OK);
                }
            }
            "refresh" => {
                let mut refresh = tokens.refresh;
                let started = Instant::now();
                for _ in 0..count {
                    refresh = bench.refresh(&refresh).await.refresh;
                }
                report_wall(started, count);
            }
            "refresh_jwt" => {
                // A fixed key when given: generating one searches for primes, whose instruction
                // count varies from run to run by more than a refresh costs.
                let key = match std::env::var("BENCH_RSA_KEY") {
                    Ok(path) => {
                        jose::TestKey::rsa_from_pkcs8("bench-key", &std::fs::read(path).unwrap())
                    }
                    Err(_) => jose::TestKey::rsa("bench-key"),
                };
                let mut signing = Bench::start_signing(&Backend::Memory, &key).await;
                let mut refresh = signing.connect_signed(&key).await.refresh;
                assert!(
                    count <= SIGNED,
                    "refresh_jwt signs {SIGNED} assertions at most"
                );
                let assertions: Vec<String> = (0..SIGNED)
                    .map(|_| key.sign(&jose::claims(&signing.client_id, jose::now())))
                    .collect();
                let started = Instant::now();
                for assertion in &assertions[..count] {
                    refresh = signing.refresh_signed(&refresh, assertion).await.refresh;
                }
                report_wall(started, count);
            }
            _ => usage(),
        }
    });
}

/// Wall time per call of the loop just run, on stderr: a quick in-process comparison of two
/// modes (pinned with `taskset`), beside the instruction counts callgrind gives.
fn report_wall(started: Instant, count: usize) {
    let per_call = started.elapsed().as_secs_f64() * 1e6 / count.max(1) as f64;
    eprintln!("{per_call:.1} µs per call (wall, in process)");
}

fn usage() -> ! {
    eprintln!("usage: bench_calls plain|guard|full|refresh|refresh_jwt COUNT");
    std::process::exit(2)
}
