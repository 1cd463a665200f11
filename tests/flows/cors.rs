//! CORS: browser-based clients can discover, register, get tokens and call MCP; the authorization
//! endpoint and the pages stay same-origin.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};

use crate::common::*;

const ORIGIN: &str = "http://localhost:6274";

fn preflight(path: &str, method: &str, headers: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header("origin", ORIGIN)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn oauth_endpoints_answer_preflights() {
    let server = TestServer::new().await;
    for (path, method) in [
        ("/.well-known/oauth-authorization-server", "GET"),
        ("/.well-known/oauth-protected-resource/mcp", "GET"),
        ("/register", "POST"),
        ("/token", "POST"),
        ("/revoke", "POST"),
    ] {
        let reply = server
            .send(preflight(path, method, "content-type,mcp-protocol-version"))
            .await;
        assert!(reply.status.is_success(), "{path}: {}", reply.status);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        let methods = reply
            .header("access-control-allow-methods")
            .unwrap()
            .to_ascii_uppercase();
        assert!(methods.contains(method), "{path}: {methods}");
        let headers = reply
            .header("access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            headers.contains("mcp-protocol-version") && headers.contains("content-type"),
            "{path}: {headers}"
        );
        assert!(reply.header("access-control-allow-credentials").is_none());
    }
    // The actual responses carry the header too, errors included.
    let reply = server
        .send(
            Request::get("/.well-known/oauth-authorization-server")
                .header("origin", ORIGIN)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let reply = server
        .send(
            Request::post("/token")
                .header("origin", ORIGIN)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("grant_type=x"))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn mcp_routes_answer_preflights_without_a_token_and_expose_the_challenge() {
    let server = TestServer::ready().await;
    let reply = server
        .send(preflight(
            "/mcp",
            "POST",
            "authorization,content-type,mcp-protocol-version,mcp-session-id",
        ))
        .await;
    assert!(reply.status.is_success(), "{}", reply.status);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let headers = reply
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for needed in [
        "authorization",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    ] {
        assert!(headers.contains(needed), "{needed}: {headers}");
    }
    let unauthorized = server
        .send(
            Request::post("/mcp")
                .header("origin", ORIGIN)
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        unauthorized.header("access-control-allow-origin"),
        Some("*")
    );
    let exposed = unauthorized
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("www-authenticate") && exposed.contains("mcp-session-id"),
        "{exposed}"
    );
}

#[tokio::test]
async fn the_authorization_endpoint_and_pages_get_no_cors() {
    let server = TestServer::ready().await;
    for (path, method) in [
        ("/authorize", "GET"),
        ("/authorize/approve", "POST"),
        ("/passkey/register", "GET"),
        ("/passkey/register/start", "POST"),
    ] {
        let reply = server.send(preflight(path, method, "content-type")).await;
        assert!(
            reply.header("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
    let page = server
        .send(
            Request::get("/passkey/register")
                .header("origin", ORIGIN)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(page.header("access-control-allow-origin").is_none());
}
