//! Floods that cost the server: a burst of concurrent wrong secrets is held to the failure budget
//! (each check reserves a unit of it first), and requests the bearer guard refuses spend a
//! per-address budget, past which they are answered 429 before any work.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::http::{Request, StatusCode};
use mcp_oauth::store::{ClientRecord, ClientStore, StoreError, TokenKind, UnixTime};
use mcp_oauth::{FailureLimit, MemoryStore, RateLimit};
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::common::*;

/// A client store that holds every lookup of one client at a gate, counting arrivals, until the
/// test opens it: whatever reaches the credential check waits there.
struct GatedClients {
    store: MemoryStore,
    gated: std::sync::Mutex<Option<String>>,
    arrived: AtomicUsize,
    progress: Arc<Notify>,
    open: watch::Sender<bool>,
}

#[async_trait]
impl ClientStore for GatedClients {
    async fn insert(&self, client: ClientRecord, max_unapproved: u64) -> Result<(), StoreError> {
        self.store.insert(client, max_unapproved).await
    }
    async fn get(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let gated = self.gated.lock().unwrap().as_deref() == Some(client_id);
        if gated {
            let mut open = self.open.subscribe();
            self.arrived.fetch_add(1, Ordering::SeqCst);
            self.progress.notify_one();
            open.wait_for(|open| *open).await.unwrap();
        }
        ClientStore::get(&self.store, client_id).await
    }
    async fn mark_approved(
        &self,
        client_id: &str,
        approved_at: UnixTime,
        expires_at: Option<UnixTime>,
    ) -> Result<bool, StoreError> {
        self.store
            .mark_approved(client_id, approved_at, expires_at)
            .await
    }
    async fn delete(&self, client_id: &str) -> Result<bool, StoreError> {
        ClientStore::delete(&self.store, client_id).await
    }
    async fn delete_unapproved(&self, client_id: &str) -> Result<bool, StoreError> {
        self.store.delete_unapproved(client_id).await
    }
    async fn list(&self) -> Result<Vec<ClientRecord>, StoreError> {
        ClientStore::list(&self.store).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_concurrent_wrong_secrets_is_held_to_the_failure_budget() {
    const BURST: usize = 60;
    const BUDGET: u32 = 20;
    let memory = MemoryStore::new();
    let progress = Arc::new(Notify::new());
    let clients = Arc::new(GatedClients {
        store: memory.clone(),
        gated: std::sync::Mutex::new(None),
        arrived: AtomicUsize::new(0),
        progress: Arc::clone(&progress),
        open: watch::channel(false).0,
    });
    let stores = Stores {
        tokens: Arc::new(memory.clone()),
        clients: Arc::clone(&clients) as Arc<dyn ClientStore>,
        passkeys: Arc::new(memory),
    };
    let mut config = config();
    config.rate_limits.auth = RateLimit::new(1000, 1000);
    config.rate_limits.failures = FailureLimit {
        max_failures: BUDGET,
        window_secs: 600,
    };
    let server = TestServer::on(stores, config, mcp_routes());
    let client = server
        .register_client(json!({
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .await;
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    *clients.gated.lock().unwrap() = Some(client_id.clone());

    // All at once from one address, each its own task, as concurrent connections are.
    let finished = Arc::new(AtomicUsize::new(0));
    let attempts: Vec<_> = (0..BURST)
        .map(|i| {
            let request = Request::post("/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .header(
                    "authorization",
                    basic(&client_id, &format!("wrong-guess-{i:04}")),
                )
                .body(axum::body::Body::from(form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", "x"),
                ])))
                .unwrap();
            let app = server.app.clone();
            let peer = server.peer;
            let (finished, progress) = (Arc::clone(&finished), Arc::clone(&progress));
            tokio::spawn(async move {
                let mut request = request;
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let status = tower::ServiceExt::oneshot(app, request)
                    .await
                    .unwrap()
                    .status();
                finished.fetch_add(1, Ordering::SeqCst);
                progress.notify_one();
                status
            })
        })
        .collect();
    // Every attempt now waits in the client lookup, before any secret is compared.
    while clients.arrived.load(Ordering::SeqCst) + finished.load(Ordering::SeqCst) < BURST {
        progress.notified().await;
    }
    clients.open.send_replace(true);
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap().as_u16());
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        checked, BUDGET as usize,
        "{checked} of {BURST} concurrent wrong secrets were checked with a budget of {BUDGET}: {statuses:?}"
    );
    assert_eq!(checked + limited, BURST, "{statuses:?}");
    // The budget is spent: the right secret is not checked either, until the window ends.
    let right = server
        .post_form(
            "/token",
            &form(&[("grant_type", "refresh_token"), ("refresh_token", "x")]),
            &[(
                "authorization",
                &basic(&client_id, client["client_secret"].as_str().unwrap()),
            )],
        )
        .await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
}

/// Counts the access-token reads: the store work each request to the MCP routes costs.
struct CountReads(Arc<AtomicUsize>);

#[async_trait]
impl StoreHooks for CountReads {
    async fn before_get(&self, kind: TokenKind) {
        if kind == TokenKind::AccessToken {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn refused_mcp_requests_spend_a_per_address_budget_then_429_before_any_work() {
    let reads = Arc::new(AtomicUsize::new(0));
    let memory = MemoryStore::new();
    let stores = Stores {
        tokens: Arc::new(Hooked {
            store: memory.clone(),
            hooks: CountReads(Arc::clone(&reads)),
        }),
        clients: Arc::new(memory.clone()),
        passkeys: Arc::new(memory),
    };
    let mut config = config();
    config.rate_limits.refused = RateLimit::new(1, 3);
    let mut server = TestServer::on(stores, config, mcp_routes());
    server.register_passkey(SETUP_TOKEN).await;
    let (_, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();

    // Valid tokens spend nothing, however many.
    for _ in 0..10 {
        assert_eq!(server.mcp(Some(access)).await.status, StatusCode::OK);
    }
    // A stranger at another address: no token, forged tokens, a token in the query.
    server.peer = "192.0.2.66:40000".parse().unwrap();
    let before = reads.load(Ordering::SeqCst);
    let mut statuses = vec![
        server.mcp(None).await.status.as_u16(),
        server.mcp(Some("mcp_at_forged_one")).await.status.as_u16(),
        server.mcp(Some("mcp_at_forged_two")).await.status.as_u16(),
    ];
    let spent_reads = reads.load(Ordering::SeqCst) - before;
    let limited = server.mcp(Some("mcp_at_forged_three")).await;
    statuses.push(limited.status.as_u16());
    statuses.push(server.mcp(None).await.status.as_u16());
    let in_query = Request::post("/mcp?access_token=mcp_at_forged_four")
        .body(axum::body::Body::empty())
        .unwrap();
    statuses.push(server.send(in_query).await.status.as_u16());
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    assert_eq!(
        reads.load(Ordering::SeqCst) - before,
        spent_reads,
        "a request over the budget still read the store"
    );
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(limited.error(), "temporarily_unavailable");
    assert!(limited.header("www-authenticate").is_none());
    // A valid token from that address waits too (its validity is not looked up), and gets 429,
    // never 401, so it is not dropped.
    assert_eq!(
        server.mcp(Some(access)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Other addresses are not affected.
    server.peer = "192.0.2.67:40000".parse().unwrap();
    assert_eq!(server.mcp(None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.mcp(Some(access)).await.status, StatusCode::OK);
}
