//! A fallback of the MCP routes is part of the MCP surface (an MCP service mounted as a fallback
//! answers every path): it is behind the guard like the routes, and captures none of the OAuth
//! routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::routing::post;
use mcp_oauth::TokenInfo;
use serde_json::json;

use crate::common::*;

/// MCP routes whose fallback echoes the caller, counting its calls; with `/mcp` as a route too, or
/// the fallback alone.
fn routes_with_fallback(with_route: bool) -> (Router, Arc<AtomicUsize>) {
    let routes = if with_route {
        Router::new().route(
            "/mcp",
            post(|caller: TokenInfo| async move { caller.client_id }),
        )
    } else {
        Router::new()
    };
    with_echo_fallback(routes)
}

/// `routes` with a fallback that echoes the path and the caller, counting its calls.
fn with_echo_fallback(routes: Router) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let routes = routes.fallback(move |request: Request| {
        counter.fetch_add(1, Ordering::SeqCst);
        let caller = request
            .extensions()
            .get::<TokenInfo>()
            .map(|info| info.client_id.clone());
        async move { axum::Json(json!({ "path": request.uri().path(), "caller": caller })) }
    });
    (routes, calls)
}

fn get(uri: &str, token: Option<&str>) -> axum::http::Request<Body> {
    let mut request = axum::http::Request::get(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_fallback_of_the_mcp_routes_is_behind_the_guard() {
    for with_route in [false, true] {
        let (routes, calls) = routes_with_fallback(with_route);
        let server = TestServer::with_routes(config(), routes).await;
        server.register_passkey(SETUP_TOKEN).await;

        // Without a token: the challenge, and the fallback never runs.
        for path in ["/anything", "/mcp/sub", "/"] {
            let reply = server.send(get(path, None)).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{path} (with a route: {with_route}): the fallback ran without a token: {}",
                reply.text()
            );
            assert_eq!(
                reply.header("www-authenticate"),
                Some(
                    "Bearer resource_metadata=\"http://localhost:8080/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
                )
            );
        }
        let reply = server.send(get("/anything", Some("mcp_at_forged"))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        // The OAuth routes are not captured by it: the whole flow works, and a wrong method on an
        // OAuth route is that route's answer.
        let (client_id, tokens) = server.connected_client().await;
        assert_eq!(
            server
                .get("/.well-known/oauth-protected-resource/mcp")
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            server.get("/token").await.status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        // With a token: the fallback runs and knows the caller.
        let access = tokens["access_token"].as_str().unwrap();
        let reply = server.send(get("/anything", Some(access))).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(
            reply.json(),
            json!({ "path": "/anything", "caller": client_id })
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        if with_route {
            assert_eq!(server.mcp(None).await.status, StatusCode::UNAUTHORIZED);
            assert_eq!(server.mcp(Some(access)).await.text(), client_id);
        }

        // Browser clients can reach it: the CORS layer answers its preflights.
        let preflight = axum::http::Request::builder()
            .method(Method::OPTIONS)
            .uri("/anything")
            .header("origin", "http://localhost:6274")
            .header("access-control-request-method", "POST")
            .body(Body::empty())
            .unwrap();
        let reply = server.send(preflight).await;
        assert!(reply.status.is_success(), "{}", reply.status);
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn without_a_fallback_unknown_paths_are_404_with_or_without_a_token() {
    let server = TestServer::ready().await;
    let (_, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    for token in [None, Some(access)] {
        let reply = server.send(get("/no-such-path", token)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "token: {token:?}");
    }
}

#[tokio::test]
async fn the_fallback_of_a_nested_router_is_behind_the_guard() {
    let (tools, calls) = with_echo_fallback(Router::new().route("/list", post(|| async { "[]" })));
    let server = TestServer::with_routes(config(), Router::new().nest("/tools", tools)).await;
    server.register_passkey(SETUP_TOKEN).await;
    let reply = server.send(get("/tools/anything", None)).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "the nested fallback ran without a token: {}",
        reply.text()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let (client_id, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    let reply = server.send(get("/tools/anything", Some(access))).await;
    // (`nest` strips its prefix from the path the nested router sees.)
    assert_eq!(
        reply.json(),
        json!({ "path": "/anything", "caller": client_id })
    );
    // Outside the nested router, unknown paths are still a plain 404.
    assert_eq!(
        server.send(get("/elsewhere", None)).await.status,
        StatusCode::NOT_FOUND
    );
}
