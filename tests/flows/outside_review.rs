//! Attacks written by an outside reader of the round-2 fixes, from outside: on the refresh grace
//! window (a rotation failing midway across instances, a revocation racing a retry, another
//! client's replay) and on the failure budget (concurrent requests of one busy client, which
//! once got 429 while they waited on the store or a metadata document).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use mcp_oauth::MemoryStore;
use mcp_oauth::store::{
    Consumed, GrantId, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime,
};
use tower::ServiceExt;

use crate::common::*;

/// A memory store that can (a) fail the next insert of a kept successor pair, before storing it,
/// as a store outage in the middle of a rotation would; (b) revoke a grant over HTTP, through
/// `/revoke`, the moment a given refresh token has been read (the head check of a retry).
#[derive(Clone)]
struct Faulty {
    store: Arc<dyn TokenStore>,
    others: Stores,
    fail_next_successor: Arc<AtomicBool>,
    revoke_after_reading: Arc<Mutex<Option<(TokenHash, String, String)>>>,
    app: Arc<OnceLock<Router>>,
    successor_inserts: Arc<AtomicUsize>,
}

impl Faulty {
    fn new() -> Self {
        Self::over(Stores::of(MemoryStore::new()))
    }

    /// Over another backend's stores.
    fn over(others: Stores) -> Self {
        Self {
            store: Arc::clone(&others.tokens),
            others,
            fail_next_successor: Arc::default(),
            revoke_after_reading: Arc::default(),
            app: Arc::default(),
            successor_inserts: Arc::default(),
        }
    }

    fn stores(&self) -> Stores {
        Stores {
            tokens: Arc::new(self.clone()),
            clients: Arc::clone(&self.others.clients),
            passkeys: Arc::clone(&self.others.passkeys),
        }
    }
}

#[async_trait]
impl TokenStore for Faulty {
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
        if record.kind == TokenKind::RefreshSuccessor {
            self.successor_inserts.fetch_add(1, Ordering::SeqCst);
            if self.fail_next_successor.swap(false, Ordering::SeqCst) {
                return Err(StoreError::backend(
                    "test",
                    "the store went away mid-rotation",
                ));
            }
        }
        self.store.insert(record).await
    }
    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let found = self.store.get(kind, hash).await?;
        let revoke = {
            let mut armed = self.revoke_after_reading.lock().unwrap();
            match &*armed {
                Some((head, _, _)) if kind == TokenKind::RefreshToken && head == hash => {
                    armed.take()
                }
                _ => None,
            }
        };
        if let Some((_, client_id, token)) = revoke {
            let app = self.app.get().unwrap().clone();
            let request = Request::post("/revoke")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form(&[
                    ("token", &token),
                    ("token_type_hint", "refresh_token"),
                    ("client_id", &client_id),
                ])))
                .unwrap();
            let reply = app.oneshot(request).await.unwrap();
            assert_eq!(reply.status(), StatusCode::OK, "the racing /revoke");
        }
        Ok(found)
    }
    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: UnixTime,
    ) -> Result<Option<Consumed>, StoreError> {
        self.store.consume(kind, hash, now).await
    }
    async fn delete(&self, kind: TokenKind, hash: &TokenHash) -> Result<bool, StoreError> {
        self.store.delete(kind, hash).await
    }
    async fn revoke_grant(&self, grant: &GrantId) -> Result<u64, StoreError> {
        self.store.revoke_grant(grant).await
    }
    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.store.list_grants().await
    }
}

/// Whether a refresh token can still be rotated (is the head of a live chain).
async fn is_live(stores: &Stores, token: &str) -> bool {
    stores
        .tokens
        .get(TokenKind::RefreshToken, &TokenHash::of(token))
        .await
        .unwrap()
        .is_some()
}

/// The owner's rotation fails midway (the pair could not be kept: a store outage), so the owner is
/// told 503 and will retry. Meanwhile the thief, at another instance, presents the same token
/// within the window. Whatever order they come in, they must end on one chain.
async fn a_rotation_failing_before_it_kept_its_pair_leaves_owner_and_thief_on_one_chain(
    faulty: Faulty,
) {
    let key = Arc::new(tokio::sync::Mutex::new(SoftAuthenticator::new(true)));
    let owner = TestServer::instance(faulty.stores(), Arc::clone(&key));
    let thief = TestServer::instance(faulty.stores(), key);
    owner.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = owner.connected_client().await;
    let stolen = refresh_token(&tokens);

    faulty.fail_next_successor.store(true, Ordering::SeqCst);
    let failed = owner.refresh(&client_id, &stolen).await;
    failed.assert_oauth_error(503, "temporarily_unavailable");

    let (by_thief, by_owner) = tokio::join!(
        thief.refresh(&client_id, &stolen),
        owner.refresh(&client_id, &stolen)
    );
    assert_eq!(by_thief.status, StatusCode::OK, "{}", by_thief.text());
    assert_eq!(by_owner.status, StatusCode::OK, "{}", by_owner.text());
    let (by_thief, by_owner) = (by_thief.json(), by_owner.json());
    assert_eq!(
        refresh_token(&by_thief),
        refresh_token(&by_owner),
        "two chains from one token"
    );
    assert_eq!(access_token(&by_thief), access_token(&by_owner));
    assert!(is_live(&owner.stores, &refresh_token(&by_owner)).await);
    // The pair the failed rotation minted before it failed answers no one, and the token it
    // stored is no chain anyone holds; nothing else is live.
    assert!(!is_live(&owner.stores, &stolen).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_failing_midway_leaves_one_chain_on_memory() {
    a_rotation_failing_before_it_kept_its_pair_leaves_owner_and_thief_on_one_chain(Faulty::new())
        .await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_failing_midway_leaves_one_chain_on_sqlite() {
    use mcp_oauth::backends::sqlite::SqliteStore;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    a_rotation_failing_before_it_kept_its_pair_leaves_owner_and_thief_on_one_chain(Faulty::over(
        Stores::of(store),
    ))
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_failing_midway_leaves_one_chain_on_postgres() {
    use mcp_oauth::backends::PostgresStore;

    let Some(url) = crate::postgres_support::fresh_postgres_url().await else {
        return;
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    a_rotation_failing_before_it_kept_its_pair_leaves_owner_and_thief_on_one_chain(Faulty::over(
        Stores::of(store),
    ))
    .await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_failing_midway_leaves_one_chain_on_redis() {
    use mcp_oauth::backends::redis::RedisStore;

    let Some(url) = redis_url() else { return };
    let prefix = format!("mcp_oauth_review13_{:016x}:", rand::random::<u64>());
    let store = RedisStore::connect(&url).await.unwrap().with_prefix(prefix);
    a_rotation_failing_before_it_kept_its_pair_leaves_owner_and_thief_on_one_chain(Faulty::over(
        Stores::of(store),
    ))
    .await;
}

/// A retry within the window is being answered from the kept pair when the owner's client revokes
/// the grant (logout), right after the retry checked that the pair's refresh token is the head.
/// Nothing the retry gets may still work.
#[tokio::test]
async fn a_retry_racing_a_revocation_hands_out_nothing_that_works() {
    let faulty = Faulty::new();
    let server = TestServer::on(faulty.stores(), config(), mcp_routes());
    faulty.app.set(server.app.clone()).ok().unwrap();
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    let old = refresh_token(&tokens);
    let first = server.refresh(&client_id, &old).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let first = first.json();
    let head = refresh_token(&first);

    *faulty.revoke_after_reading.lock().unwrap() =
        Some((TokenHash::of(&head), client_id.clone(), head.clone()));
    let retry = server.refresh(&client_id, &old).await;
    assert!(
        faulty.revoke_after_reading.lock().unwrap().is_none(),
        "the revocation never ran"
    );
    if retry.status == StatusCode::OK {
        let retry = retry.json();
        assert_eq!(
            server.mcp(Some(&access_token(&retry))).await.status,
            StatusCode::UNAUTHORIZED,
            "the retry's access token outlived the revocation"
        );
        assert!(!is_live(&server.stores, &refresh_token(&retry)).await);
    } else {
        retry.assert_oauth_error(400, "invalid_grant");
    }
    assert_eq!(
        server.mcp(Some(&access_token(&first))).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(!is_live(&server.stores, &head).await);
}

/// Another client (with its own valid credentials) replays a rotated refresh token of a public
/// client within the window: it must neither get the kept pair nor revoke the owner's grant.
#[tokio::test]
async fn a_retry_by_another_client_neither_gets_the_pair_nor_revokes() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let old = refresh_token(&tokens);
    let first = server.refresh(&client_id, &old).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let first = first.json();
    let (other, _) = server.connected_client().await;
    server
        .refresh(&other, &old)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let confidential = server
        .post_form(
            "/token",
            &form(&[("grant_type", "refresh_token"), ("refresh_token", &old)]),
            &[("authorization", &basic(CLIENT_ID, CLIENT_SECRET))],
        )
        .await;
    confidential.assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        server.mcp(Some(&access_token(&first))).await.status,
        StatusCode::OK,
        "another client's replay revoked the grant"
    );
    assert!(is_live(&server.stores, &refresh_token(&first)).await);
}

#[tokio::test]
async fn concurrent_token_requests_of_a_public_metadata_document_client_are_not_refused_429() {
    use std::time::Duration;

    const REQUESTS: usize = 24;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client_id = format!("http://127.0.0.1:{port}/client");
    let document = serde_json::json!({
        "client_id": client_id,
        "client_name": "Hosted Client",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
    .to_string();
    let app = Router::new().route(
        "/client",
        axum::routing::get(move || {
            let document = document.clone();
            async move {
                // A host that takes half a second to answer, and says not to cache.
                tokio::time::sleep(Duration::from_millis(500)).await;
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    document,
                )
            }
        }),
    );
    let docs = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut config = config();
    config.cimd_allow_loopback_http_for_testing = true;
    config.cimd_allowed_ports = vec![443, port];
    let server = TestServer::with_config(config).await;
    let (verifier, _) = pkce();
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", "not-a-code"),
        ("code_verifier", &verifier),
        ("client_id", &client_id),
        ("redirect_uri", "http://127.0.0.1:5555/callback"),
    ]);
    let replies =
        futures::future::join_all((0..REQUESTS).map(|_| server.post_form("/token", &body, &[])))
            .await;
    docs.abort();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert!(
        statuses.iter().all(|&s| s != 429),
        "a public client's concurrent requests were refused 429 (no secret was guessed): {statuses:?}"
    );
}

/// A confidential web client serves many users from one server (one address): it refreshes
/// several users' grants at once, every request with its right secret. On a store with real I/O
/// (SQLite here; Redis alike) each request holds a unit of the client's failure budget while its
/// registration is read, so more than the budget of concurrent *correct* requests get 429.
async fn concurrent_correctly_authenticated_requests_of_one_client_are_not_refused_429(
    stores: Stores,
) {
    const REQUESTS: usize = 50;
    let server = Arc::new(TestServer::on(stores, config(), mcp_routes()));
    let client = server
        .register_client(serde_json::json!({
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token"],
        }))
        .await;
    let authorization = basic(
        client["client_id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap(),
    );
    let barrier = Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let (server, barrier) = (Arc::clone(&server), Arc::clone(&barrier));
            let authorization = authorization.clone();
            tokio::spawn(async move {
                // Users' refresh tokens that have lapsed: 400 invalid_grant, after authentication.
                let body = form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &format!("mcp_rt_lapsed_{i}")),
                ]);
                barrier.wait().await;
                server
                    .post_form("/token", &body, &[("authorization", &authorization)])
                    .await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert!(
        statuses.iter().all(|&s| s != 429),
        "a client sending its right secret was refused 429: {statuses:?}"
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_correct_requests_of_one_client_are_not_refused_429_on_sqlite() {
    use mcp_oauth::backends::sqlite::SqliteStore;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    let stores = Stores::of(SqliteStore::connect(&url).await.unwrap());
    concurrent_correctly_authenticated_requests_of_one_client_are_not_refused_429(stores).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_correct_requests_of_one_client_are_not_refused_429_on_postgres() {
    use mcp_oauth::backends::PostgresStore;

    let Some(url) = crate::postgres_support::fresh_postgres_url().await else {
        return;
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    concurrent_correctly_authenticated_requests_of_one_client_are_not_refused_429(Stores::of(
        store,
    ))
    .await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_correct_requests_of_one_client_are_not_refused_429_on_redis() {
    use mcp_oauth::backends::redis::RedisStore;

    let Some(url) = redis_url() else { return };
    let prefix = format!("mcp_oauth_review13_{:016x}:", rand::random::<u64>());
    let store = RedisStore::connect(&url).await.unwrap().with_prefix(prefix);
    concurrent_correctly_authenticated_requests_of_one_client_are_not_refused_429(Stores::of(
        store,
    ))
    .await;
}

/// The same for a dynamically registered *public* client (Claude Code, a hosted client behind its
/// egress): it sends no secret, so nothing it sends may spend a budget, yet concurrent requests
/// beyond the budget get 429 while the registration is read.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_of_one_registered_public_client_are_not_refused_429_on_redis() {
    use mcp_oauth::backends::redis::RedisStore;

    const REQUESTS: usize = 50;
    let Some(url) = redis_url() else { return };
    let prefix = format!("mcp_oauth_review13_{:016x}:", rand::random::<u64>());
    let store = RedisStore::connect(&url).await.unwrap().with_prefix(prefix);
    let server = Arc::new(TestServer::on(Stores::of(store), config(), mcp_routes()));
    let client_id = server.register_public_client().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let (server, barrier, client_id) =
                (Arc::clone(&server), Arc::clone(&barrier), client_id.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                server
                    .refresh(&client_id, &format!("mcp_rt_lapsed_{i}"))
                    .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap().status.as_u16());
    }
    assert!(
        statuses.iter().all(|&s| s != 429),
        "a public client's requests were refused 429: {statuses:?}"
    );
}
