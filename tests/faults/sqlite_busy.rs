//! SQLite under concurrent writers: two instances, each with its own connection pool, on one file.

use std::sync::Arc;

use axum::http::StatusCode;
use mcp_oauth::SqliteStore;
use tokio::sync::Mutex;

use crate::common::*;
use crate::flow::{self, Statuses, unlimited_config};

const FLOWS: usize = 32;
const REFRESHES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flows_on_two_pools_lose_no_write() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    let key = Arc::new(Mutex::new(SoftAuthenticator::new(true)));
    let mut instances = Vec::new();
    for _ in 0..2 {
        let stores = Stores::of(SqliteStore::connect(&url).await.unwrap());
        instances.push(Arc::new(TestServer {
            key: Arc::clone(&key),
            ..TestServer::on(stores, unlimited_config(), mcp_routes())
        }));
    }
    instances[0].register_passkey(SETUP_TOKEN).await;

    // Every flow alternates between the instances: register on one, approve on the other, and so on.
    let seen = Arc::new(Statuses::default());
    let flows = (0..FLOWS).map(|n| {
        let (a, b) = (
            Arc::clone(&instances[n % 2]),
            Arc::clone(&instances[(n + 1) % 2]),
        );
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut connection = flow::connect(&a, &seen).await?;
            for round in 0..REFRESHES {
                let server = if round % 2 == 0 { &b } else { &a };
                connection = flow::refresh(server, &connection, &seen).await?;
            }
            Ok::<_, StatusCode>(connection)
        })
    });
    let outcomes = futures::future::join_all(flows).await;
    seen.assert_only_success_or_503();
    let connections: Vec<_> = outcomes
        .into_iter()
        .filter_map(|outcome| outcome.unwrap().ok())
        .collect();
    eprintln!(
        "sqlite busy: {} of {FLOWS} flows completed, statuses {:?}",
        connections.len(),
        seen.snapshot()
    );
    assert_eq!(
        connections.len(),
        FLOWS,
        "the busy timeout absorbs the contention: every flow completes"
    );

    // No lost write: both instances see every client, grant and newest token, and the newest
    // refresh token of each flow refreshes.
    for server in &instances {
        let grants = server.oauth.admin().grants().await.unwrap();
        let clients = server.oauth.admin().clients().await.unwrap();
        for connection in &connections {
            assert_eq!(
                grants
                    .iter()
                    .filter(|g| g.grant_id.0 == connection.grant_id)
                    .count(),
                1
            );
            assert!(clients.iter().any(|c| c.client_id == connection.client_id));
            let called = server.mcp(Some(&connection.access)).await;
            assert_eq!(called.status, StatusCode::OK, "{}", called.text());
        }
    }
    for connection in &connections {
        let refreshed = instances[1]
            .refresh(&connection.client_id, &connection.refresh)
            .await;
        assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    }
}
