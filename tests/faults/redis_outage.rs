//! Redis killed (SIGKILL) under load, then restarted on the same port and data.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use mcp_oauth::RedisStore;

use crate::common::*;
use crate::flow::{self, Connection, Statuses, unlimited_config};
use crate::redis_process::RedisProcess;

/// Connections completed by the load, each with the tokens it last received.
pub(crate) type Completed = Arc<std::sync::Mutex<Vec<Connection>>>;

/// Connect, refresh once, keep the newest tokens; on a failed refresh keep the tokens held
/// before, as a client would, and retry them later.
pub(crate) async fn load(
    server: Arc<TestServer>,
    seen: Arc<Statuses>,
    stop: Arc<AtomicBool>,
    done: Completed,
) {
    while !stop.load(Ordering::Relaxed) {
        match flow::connect(&server, &seen).await {
            Ok(connection) => {
                let newest = flow::refresh(&server, &connection, &seen)
                    .await
                    .unwrap_or(connection);
                done.lock().unwrap().push(newest);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Wait (up to a generous bound, for a loaded machine) until `ready` holds.
pub(crate) async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..600 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_is_503_then_everything_issued_still_works() {
    let Some(mut redis) = RedisProcess::start().await else {
        return;
    };
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let server = Arc::new(TestServer::on(
        Stores::of(store),
        unlimited_config(),
        mcp_routes(),
    ));
    server.register_passkey(SETUP_TOKEN).await;
    let before = server.connected_client().await;
    let before_access = before.1["access_token"].as_str().unwrap().to_owned();
    let before_refresh = before.1["refresh_token"].as_str().unwrap().to_owned();

    let seen = Arc::new(Statuses::default());
    let stop = Arc::new(AtomicBool::new(false));
    let done: Completed = Arc::default();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(load(
                Arc::clone(&server),
                Arc::clone(&seen),
                Arc::clone(&stop),
                Arc::clone(&done),
            ))
        })
        .collect();

    until("the load completes connections", || {
        done.lock().unwrap().len() >= 4
    })
    .await;
    redis.kill();
    let completed_before_kill = done.lock().unwrap().len();
    until("the load sees 503s", || seen.count(503) >= 8).await;

    // While Redis is down: the guard and the token endpoint say "try again", never "unauthorized".
    let guarded = server.mcp(Some(&before_access)).await;
    assert_eq!(
        guarded.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        guarded.text()
    );
    assert!(guarded.header("retry-after").is_some());
    let token = server.refresh(&before.0, &before_refresh).await;
    token.assert_oauth_error(503, "temporarily_unavailable");

    redis.restart().await;
    let mut recovered = false;
    for _ in 0..600 {
        if server.mcp(Some(&before_access)).await.status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "the store reconnected by itself");
    let completed_at_restart = done.lock().unwrap().len();
    until("the load completes connections again", || {
        done.lock().unwrap().len() >= completed_at_restart + 4
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    seen.assert_only_success_or_503();

    // Nothing lost: every token a client holds works, and every refresh token refreshes (a retry
    // of one whose rotation failed mid-way falls in the grace window).
    let connections = done.lock().unwrap().clone();
    let refreshed = server.refresh(&before.0, &before_refresh).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    for connection in &connections {
        let called = server.mcp(Some(&connection.access)).await;
        assert_eq!(called.status, StatusCode::OK, "{}", called.text());
        let refreshed = server
            .refresh(&connection.client_id, &connection.refresh)
            .await;
        assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    }
    // Nothing duplicated: each connection is one grant and one client, listed once.
    let grants = server.oauth.admin().grants().await.unwrap();
    let clients = server.oauth.admin().clients().await.unwrap();
    for connection in &connections {
        let listed = grants
            .iter()
            .filter(|g| g.grant_id.0 == connection.grant_id)
            .count();
        assert_eq!(listed, 1, "grant of {}", connection.client_id);
        let listed = clients
            .iter()
            .filter(|c| c.client_id == connection.client_id)
            .count();
        assert_eq!(listed, 1, "client {}", connection.client_id);
    }
    eprintln!(
        "redis outage: {} connections ({completed_before_kill} before the kill, {} after), statuses {:?}",
        connections.len(),
        connections.len() - completed_at_restart,
        seen.snapshot()
    );
}
