//! RFC 7591 dynamic client registration.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn public_client_gets_no_secret() {
    let server = TestServer::new().await;
    let reply = server
        .post_json(
            "/register",
            &json!({ "redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "none" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    assert!(body["client_id"].is_string());
    assert!(body.get("client_secret").is_none());
    assert!(body.get("client_secret_expires_at").is_none());
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(body["redirect_uris"], json!([LOOPBACK_REDIRECT]));
    assert_eq!(body["grant_types"], json!(["authorization_code"]));
}

#[tokio::test]
async fn confidential_clients_get_a_secret_and_the_method_they_asked_for() {
    let server = TestServer::new().await;
    for method in ["client_secret_post", "client_secret_basic"] {
        let body = server
            .register_client(
                json!({ "redirect_uris": [CLAUDE_REDIRECT], "token_endpoint_auth_method": method }),
            )
            .await;
        assert_eq!(body["token_endpoint_auth_method"], method);
        assert!(body["client_secret"].as_str().unwrap().len() >= 32);
        assert!(body["client_secret_expires_at"].is_u64());
    }
    // RFC 7591 §2: an omitted method means client_secret_basic.
    let body = server
        .register_client(json!({ "redirect_uris": [CLAUDE_REDIRECT] }))
        .await;
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert!(body["client_secret"].is_string());
}

#[tokio::test]
async fn unknown_metadata_is_ignored_and_unsupported_grants_dropped() {
    let server = TestServer::new().await;
    let body = server
        .register_client(json!({
            "redirect_uris": [CLAUDE_REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "software_id": "x", "logo_uri": "https://example.com/l.png", "application_type": "native",
            "contacts": ["a@example.com"]
        }))
        .await;
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(body["application_type"], "native");
}

#[tokio::test]
async fn redirect_uris_must_be_https_or_loopback_without_fragment() {
    let server = TestServer::new().await;
    for bad in [
        json!(["http://example.com/cb"]),
        json!(["https://example.com/cb#x"]),
        json!(["javascript:alert(1)"]),
        json!(["data:text/html,x"]),
        json!(["file:///etc/passwd"]),
        json!(["custom-scheme://cb"]),
        json!(["https://user:pw@example.com/cb"]),
        json!(["relative/cb"]),
        json!([]),
        json!("https://example.com/cb"),
        json!([42]),
        json!(["https://ok.example.com/cb", "http://evil.example.com/cb"]),
    ] {
        let reply = server
            .post_json(
                "/register",
                &json!({ "redirect_uris": bad, "token_endpoint_auth_method": "none" }),
            )
            .await;
        reply.assert_oauth_error(400, "invalid_redirect_uri");
    }
    let reply = server
        .post_json(
            "/register",
            &json!({ "token_endpoint_auth_method": "none" }),
        )
        .await;
    reply.assert_oauth_error(400, "invalid_redirect_uri");
    // Cursor's private-use URI is allowed by exact match.
    let body = server
        .register_client(json!({ "redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback"], "token_endpoint_auth_method": "none" }))
        .await;
    assert!(body["client_id"].is_string());
}

#[tokio::test]
async fn bad_metadata_is_invalid_client_metadata() {
    let server = TestServer::new().await;
    for bad in [
        json!({ "redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "private_key_jwt" }),
        json!({ "redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": 3 }),
        json!({ "redirect_uris": [LOOPBACK_REDIRECT], "grant_types": ["client_credentials"] }),
        json!({ "redirect_uris": [LOOPBACK_REDIRECT], "grant_types": "authorization_code" }),
        json!({ "redirect_uris": [LOOPBACK_REDIRECT], "response_types": ["token"] }),
        json!({ "redirect_uris": [LOOPBACK_REDIRECT], "application_type": "desktop" }),
        json!({ "redirect_uris": [LOOPBACK_REDIRECT], "client_name": ["x"] }),
        json!([1, 2]),
    ] {
        let reply = server.post_json("/register", &bad).await;
        reply.assert_oauth_error(400, "invalid_client_metadata");
    }
}
