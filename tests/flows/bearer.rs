//! The bearer guard on the MCP routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::any;
use mcp_oauth::store::{
    Consumed, GrantId, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime,
};
use mcp_oauth::{ManualClock, McpOAuth, MemoryStore, TokenInfo};

use crate::common::*;

#[tokio::test]
async fn missing_token_is_a_plain_401_challenge() {
    let server = TestServer::ready().await;
    let reply = server.mcp(None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let challenge = reply.header("www-authenticate").unwrap();
    assert_eq!(
        challenge,
        "Bearer resource_metadata=\"http://localhost:8080/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
    );
    assert!(
        !challenge.contains("error="),
        "no error code without credentials (RFC 6750 §3.1)"
    );
}

#[tokio::test]
async fn bad_tokens_are_401_invalid_token_with_the_metadata_url() {
    let server = TestServer::ready().await;
    for token in ["mcp_at_doesnotexist", "x", "a.b.c"] {
        let reply = server.mcp(Some(token)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(challenge.contains(
            "resource_metadata=\"http://localhost:8080/.well-known/oauth-protected-resource/mcp\""
        ));
    }
}

#[tokio::test]
async fn tokens_only_in_the_header_and_only_one_header() {
    let server = TestServer::ready().await;
    let (_, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    let in_query = server
        .send(
            Request::post(format!("/mcp?access_token={access}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(in_query.status, StatusCode::BAD_REQUEST);
    let two = server
        .send(
            Request::post("/mcp")
                .header("authorization", format!("Bearer {access}"))
                .header("authorization", format!("Bearer {access}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(two.status, StatusCode::BAD_REQUEST);
    let basic = server
        .send(
            Request::post("/mcp")
                .header("authorization", basic(CLIENT_ID, CLIENT_SECRET))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(basic.status, StatusCode::BAD_REQUEST);
    let lower = server
        .send(
            Request::post("/mcp")
                .header("authorization", format!("bearer {access}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        lower.status,
        StatusCode::OK,
        "the scheme is case-insensitive"
    );
}

/// A route answering every method, counting the calls that reach it.
fn counting_route(path: &str) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let routes = Router::new().route(
        path,
        any(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "the handler ran" }
        }),
    );
    (routes, calls)
}

fn options(path: &str, preflight: bool) -> Request<Body> {
    let request = Request::builder().method(Method::OPTIONS).uri(path);
    let request = if preflight {
        request
            .header("origin", "http://localhost:6274")
            .header("access-control-request-method", "POST")
    } else {
        request
    };
    request.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_plain_options_needs_a_token_and_only_a_preflight_passes() {
    let server = TestServer::ready().await;
    // The guard alone, on a route that answers every method.
    let (routes, calls) = counting_route("/admin");
    let app = routes.layer(server.oauth.bearer_layer());
    let reply = tower::ServiceExt::oneshot(app.clone(), options("/admin", false))
        .await
        .unwrap();
    assert_eq!(
        reply.status(),
        StatusCode::UNAUTHORIZED,
        "a plain OPTIONS ran the handler without a token"
    );
    assert!(reply.headers().contains_key("www-authenticate"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // `Origin` alone, or the request method alone, is no preflight.
    for (name, value) in [
        ("origin", "http://localhost:6274"),
        ("access-control-request-method", "POST"),
    ] {
        let request = Request::builder()
            .method(Method::OPTIONS)
            .uri("/admin")
            .header(name, value)
            .body(Body::empty())
            .unwrap();
        let reply = tower::ServiceExt::oneshot(app.clone(), request)
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED, "{name}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // A real preflight passes the guard, to the CORS layer behind it.
    let (routes, calls) = counting_route("/admin");
    let app = routes
        .layer(tower_http::cors::CorsLayer::permissive())
        .layer(server.oauth.bearer_layer());
    let reply = tower::ServiceExt::oneshot(app, options("/admin", true))
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(reply.headers().contains_key("access-control-allow-origin"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // The MCP routes: the CORS layer in front of the guard answers any OPTIONS itself, so no
    // OPTIONS reaches the handler without a token.
    let (routes, calls) = counting_route("/mcp");
    let server = TestServer::serving(server.oauth.clone(), server.stores.clone(), routes);
    for preflight in [false, true] {
        let reply = server.send(options("/mcp", preflight)).await;
        assert!(reply.status.is_success(), "{}", reply.status);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let mut config = config();
    config.token_lifetime_secs = 60;
    let clock = ManualClock::new();
    let server = TestServer::with_clock(config, &clock);
    server.register_passkey(SETUP_TOKEN).await;
    let (_, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    clock.advance(std::time::Duration::from_secs(30));
    assert_eq!(server.mcp(Some(access)).await.status, StatusCode::OK);
    clock.advance(std::time::Duration::from_secs(30));
    assert_eq!(
        server.mcp(Some(access)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_token_for_another_resource_is_refused() {
    // Two servers sharing one store: tokens are bound to the resource they were issued for.
    let server = TestServer::ready().await;
    let (_, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    let mut other_config = config();
    other_config.resource_path = "/other-mcp".into();
    let other = server
        .stores
        .apply(McpOAuth::builder(other_config))
        .build()
        .unwrap();
    let routes = Router::new().route("/other-mcp", any(|_: TokenInfo| async { "ok" }));
    let app = other.router(routes);
    let reply = tower::ServiceExt::oneshot(
        app,
        Request::post("/other-mcp")
            .header("authorization", format!("Bearer {access}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn insufficient_scope_is_403_naming_every_needed_scope() {
    let mut config = config();
    config.scopes = vec!["mcp".into(), "admin".into(), "billing".into()];
    let server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    let (_, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    let oauth = server.oauth.clone();
    let routes = Router::new()
        .route("/mcp/admin", any(|| async { "admin" }))
        .route_layer(oauth.bearer_layer().require_scopes(["admin", "billing"]));
    let reply = tower::ServiceExt::oneshot(
        oauth.router(routes),
        Request::post("/mcp/admin")
            .header("authorization", format!("Bearer {access}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), StatusCode::FORBIDDEN);
    let challenge = reply.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    // Every needed scope, plus the one the token already holds (clients before 2026-07-28 ask
    // for exactly the challenged scopes).
    assert_eq!(
        challenge,
        "Bearer resource_metadata=\"http://localhost:8080/.well-known/oauth-protected-resource/mcp\", error=\"insufficient_scope\", scope=\"mcp admin billing\""
    );
}

/// A token store whose backend is down.
pub(crate) struct DownStore;

fn down() -> StoreError {
    StoreError::backend("down", std::io::Error::other("connection refused"))
}

#[async_trait]
impl TokenStore for DownStore {
    async fn insert(&self, _: TokenRecord) -> Result<(), StoreError> {
        Err(down())
    }
    async fn get(&self, _: TokenKind, _: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        Err(down())
    }
    async fn consume(
        &self,
        _: TokenKind,
        _: &TokenHash,
        _: UnixTime,
    ) -> Result<Option<Consumed>, StoreError> {
        Err(down())
    }
    async fn delete(&self, _: TokenKind, _: &TokenHash) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn revoke_grant(&self, _: &GrantId) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Err(down())
    }
}

#[tokio::test]
async fn a_store_outage_is_503_never_401() {
    let store = MemoryStore::new();
    let oauth = McpOAuth::builder(config())
        .stores(store.clone())
        .token_store(Arc::new(DownStore))
        .build()
        .unwrap();
    let app = oauth.router(Router::new().route("/mcp", any(|| async { "ok" })));
    let send = |request: Request<Body>| tower::ServiceExt::oneshot(app.clone(), request);
    let reply = send(
        Request::post("/mcp")
            .header("authorization", "Bearer mcp_at_something")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.headers().contains_key("retry-after"));
    let reply = send(
        Request::post("/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ])))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
}
