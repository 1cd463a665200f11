//! The server side of the load benchmark (`benches/load.sh`): one process serving, on consecutive
//! ports from `BASE_PORT`,
//!
//! - `BASE_PORT`     the MCP route with no guard (the limit);
//! - `BASE_PORT + 1` the same route behind the bearer guard on `MemoryStore`;
//! - `BASE_PORT + 2` ... on `SqliteStore` (a file in `DIR`);
//! - `BASE_PORT + 3` ... on `RedisStore` at `REDIS_URL`;
//! - `BASE_PORT + 4` the whole router on `MemoryStore` (CORS, the OAuth endpoints: `/token`);
//! - `BASE_PORT + 5` ... with the configured client authenticating by `private_key_jwt` (an RS256
//!   key, its public key set configured inline);
//! - `BASE_PORT + 6`, `BASE_PORT + 7` the guarded route on SQLite and on Redis, each behind a
//!   `CachingStore` (5 seconds);
//! - `BASE_PORT + 8` the demo's MCP server (`examples/demo/tools.rs`: rmcp, stateless, JSON
//!   responses) at `/mcp`, bare; `BASE_PORT + 9` the same behind the bearer guard on
//!   `MemoryStore`, as the demo serves it;
//!
//! all with rate limits off. Before listening it runs the OAuth flow on each backend and writes
//! `DIR/tokens.env` (an access token per backend and per cached backend, the two clients' ids),
//! `DIR/refresh_tokens_<round>.txt` and `DIR/refresh_tokens_signed_<round>.txt` for each of
//! `ROUNDS` rounds (one refresh token per line, each of its own grant), and the signing client's
//! private key, `DIR/signing_key.pk8` (for `bench_assertions`), then prints `ready`.
//!
//! It runs one worker thread per CPU it may use: pinned with `taskset -c 0`, one.
//!
//! ```sh
//! cargo run --release --example bench_server --features sqlite,redis -- 18100 /tmp/bench redis://127.0.0.1:6379/ 3
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../benches/support/mod.rs"]
mod support;
#[path = "demo/tools.rs"]
mod tools;

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::Router;
use support::{Backend, Bench, jose};

/// Refresh tokens handed to the load tool: more than it keeps in flight, so rotation is followed
/// without two requests ever carrying the same token.
const REFRESH_POOL: usize = 256;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(dir), Some(redis_url)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: bench_server BASE_PORT DIR REDIS_URL [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = args
        .next()
        .map_or(1, |n| n.parse().expect("a number of rounds"));
    let port: u16 = port.parse().expect("a port number");
    std::fs::create_dir_all(&dir).unwrap();

    let sqlite = format!("{dir}/bench.sqlite");
    let _ = std::fs::remove_file(&sqlite);
    let mut memory = Bench::start(&Backend::Memory).await;
    let mut on_sqlite = Bench::start(&Backend::Sqlite(sqlite)).await;
    let mut on_redis = Bench::start(&Backend::Redis(redis_url.clone())).await;
    let cached_sqlite = format!("{dir}/bench-cached.sqlite");
    let _ = std::fs::remove_file(&cached_sqlite);
    let mut on_cached_sqlite =
        Bench::start(&Backend::Cached(Box::new(Backend::Sqlite(cached_sqlite)))).await;
    let mut on_cached_redis =
        Bench::start(&Backend::Cached(Box::new(Backend::Redis(redis_url)))).await;
    let signing_key = jose::TestKey::rsa("bench-key");
    let mut signing = Bench::start_signing(&Backend::Memory, &signing_key).await;
    std::fs::write(format!("{dir}/signing_key.pk8"), signing_key.rsa_pkcs8()).unwrap();

    let mut env = String::new();
    writeln!(env, "MEMORY_ACCESS={}", memory.connect().await.access).unwrap();
    writeln!(env, "SQLITE_ACCESS={}", on_sqlite.connect().await.access).unwrap();
    writeln!(env, "REDIS_ACCESS={}", on_redis.connect().await.access).unwrap();
    let access = on_cached_sqlite.connect().await.access;
    writeln!(env, "SQLITE_CACHED_ACCESS={access}").unwrap();
    let access = on_cached_redis.connect().await.access;
    writeln!(env, "REDIS_CACHED_ACCESS={access}").unwrap();
    writeln!(env, "MEMORY_CLIENT_ID={}", memory.client_id).unwrap();
    writeln!(env, "SIGNING_CLIENT_ID={}", signing.client_id).unwrap();
    std::fs::write(format!("{dir}/tokens.env"), env).unwrap();
    // A fresh pool per round: a pool spent in one round holds used tokens (and its rotated ones
    // are lost with the requests in flight when wrk stops).
    for round in 1..=rounds {
        let mut pool = String::new();
        for _ in 0..REFRESH_POOL {
            writeln!(pool, "{}", memory.connect().await.refresh).unwrap();
        }
        std::fs::write(format!("{dir}/refresh_tokens_{round}.txt"), pool).unwrap();
        let mut pool = String::new();
        for _ in 0..REFRESH_POOL {
            let refresh = signing.connect_signed(&signing_key).await.refresh;
            writeln!(pool, "{refresh}").unwrap();
        }
        std::fs::write(format!("{dir}/refresh_tokens_signed_{round}.txt"), pool).unwrap();
    }

    // The same route bare and behind the guard (what the guard costs), then the whole router for
    // the token endpoint, with each kind of client.
    let demo = || {
        let hosts = vec!["127.0.0.1".to_owned()];
        Router::new().nest_service("/mcp", tools::mcp_service(tools::transport_config(hosts)))
    };
    let apps: [Router; 10] = [
        support::mcp_route(),
        memory.guarded.clone(),
        on_sqlite.guarded.clone(),
        on_redis.guarded.clone(),
        memory.full.clone(),
        signing.full.clone(),
        on_cached_sqlite.guarded.clone(),
        on_cached_redis.guarded.clone(),
        demo(),
        demo().layer(memory.oauth.bearer_layer()),
    ];
    let mut servers = Vec::new();
    for (offset, app) in (0u16..).zip(apps) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port + offset))
            .await
            .expect("bind");
        servers.push(tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        }));
    }
    println!("ready");
    for server in servers {
        server.await.unwrap();
    }
}
