//! Micro-benchmarks (criterion): the bearer guard per backend against the bare route, token hashing,
//! the refresh grant (rotation followed) per backend, the code grant end to end, and dynamic client
//! registration. Everything runs in process through the real router (`tower::oneshot`).
//!
//! ```sh
//! cargo bench                                  # MemoryStore
//! MCP_OAUTH_TEST_REDIS_URL=redis://127.0.0.1:6379/ cargo bench --all-features   # and SQLite, Redis
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::cell::RefCell;

use axum::http::StatusCode;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mcp_oauth::store::TokenHash;
use support::{Backend, Bench, STATIC_CLIENT, jose, mcp_request, register_request, send};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Memory; a SQLite file with the `sqlite` feature; Redis with the `redis` feature when
/// `MCP_OAUTH_TEST_REDIS_URL` names a server.
fn backends(dir: &tempfile::TempDir) -> Vec<Backend> {
    let mut backends = vec![Backend::Memory];
    #[cfg(feature = "sqlite")]
    backends.push(Backend::Sqlite(
        dir.path().join("bench.sqlite").display().to_string(),
    ));
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("MCP_OAUTH_TEST_REDIS_URL") {
        backends.push(Backend::Redis(url));
    }
    let _ = dir;
    backends
}

fn guard(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("mcp_request");
    let plain = support::served(support::mcp_route());
    group.bench_function("no_guard", |b| {
        b.to_async(&rt).iter(|| async {
            let (status, _) = send(&plain, mcp_request(None)).await;
            assert_eq!(status, StatusCode::OK);
        });
    });
    for backend in backends(&dir) {
        let (guarded, token) = rt.block_on(async {
            let mut bench = Bench::start(&backend).await;
            let token = bench.connect().await.access;
            (bench.guarded, token)
        });
        group.bench_function(format!("guard_{}", backend.name()), |b| {
            b.to_async(&rt).iter(|| async {
                let (status, _) = send(&guarded, mcp_request(Some(&token))).await;
                assert_eq!(status, StatusCode::OK);
            });
        });
    }
    group.finish();
}

fn hashing(c: &mut Criterion) {
    let token = "mcp_at_Qk9pZ3hWbGxNcWJ3dGtYZ0lZb2JmRlN3ZWJkcW9aRHg";
    c.bench_function("token_hash", |b| {
        b.iter(|| TokenHash::of(std::hint::black_box(token)))
    });
}

fn grants(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("token_endpoint");
    group.sample_size(30);
    for backend in backends(&dir) {
        let bench = RefCell::new(rt.block_on(Bench::start(&backend)));
        let refresh = RefCell::new(rt.block_on(bench.borrow_mut().connect()).refresh);
        group.bench_function(format!("refresh_{}", backend.name()), |b| {
            b.iter(|| {
                let next = rt.block_on(bench.borrow().refresh(&refresh.borrow()));
                *refresh.borrow_mut() = next.refresh;
            });
        });
        // The same refresh by a confidential client authenticating with an RS256 assertion (its
        // public key configured, so no key fetch): one signature check more. Signing is set-up.
        if matches!(backend, Backend::Memory) {
            let key = jose::TestKey::rsa("bench-key");
            let signer = RefCell::new(rt.block_on(Bench::start_signing(&backend, &key)));
            let refresh = RefCell::new(
                rt.block_on(signer.borrow_mut().connect_signed(&key))
                    .refresh,
            );
            group.bench_function("refresh_memory_private_key_jwt", |b| {
                b.iter_batched(
                    || key.sign(&jose::claims(STATIC_CLIENT, jose::now())),
                    |assertion| {
                        let signer = signer.borrow();
                        let next =
                            rt.block_on(signer.refresh_signed(&refresh.borrow(), &assertion));
                        *refresh.borrow_mut() = next.refresh;
                    },
                    BatchSize::SmallInput,
                );
            });
        }
        // The code grant: authorization and the passkey approval are set-up, the exchange is timed.
        group.bench_function(format!("code_exchange_{}", backend.name()), |b| {
            b.iter_batched(
                || rt.block_on(bench.borrow_mut().code()),
                |(code, verifier)| {
                    let bench = bench.borrow();
                    let request = bench.exchange_request(&code, &verifier);
                    let (status, _) = rt.block_on(send(&bench.full, request));
                    assert_eq!(status, StatusCode::OK);
                },
                BatchSize::SmallInput,
            );
        });
        group.bench_function(format!("register_{}", backend.name()), |b| {
            let full = bench.borrow().full.clone();
            b.to_async(&rt).iter(|| async {
                let (status, _) = send(&full, register_request()).await;
                assert_eq!(status, StatusCode::CREATED);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, guard, hashing, grants);
criterion_main!(benches);
