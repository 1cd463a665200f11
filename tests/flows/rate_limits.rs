//! Rate limits: normal use passes, floods get 429 with Retry-After, per client address.

use axum::http::StatusCode;
use mcp_oauth::RateLimit;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn connecting_several_clients_in_a_minute_is_never_limited() {
    let server = TestServer::ready().await;
    for _ in 0..8 {
        let (client_id, tokens) = server.connected_client().await;
        for _ in 0..3 {
            assert_eq!(
                server
                    .mcp(Some(tokens["access_token"].as_str().unwrap()))
                    .await
                    .status,
                StatusCode::OK
            );
        }
        assert_eq!(
            server
                .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
                .await
                .status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_flood_gets_429_with_retry_after_then_other_addresses_still_pass() {
    let mut config = config();
    config.rate_limits.registration = RateLimit::new(2, 3);
    let mut server = TestServer::with_config(config).await;
    let body =
        json!({ "redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "none" });
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(server.post_json("/register", &body).await);
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(codes, [201, 201, 201, 429, 429]);
    let limited = &statuses[3];
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(limited.error(), "temporarily_unavailable");
    // Other tiers are separate buckets.
    assert_eq!(
        server
            .get("/.well-known/oauth-authorization-server")
            .await
            .status,
        StatusCode::OK
    );
    // Another address has its own bucket.
    server.peer = "127.0.0.2:40000".parse().unwrap();
    assert_eq!(
        server.post_json("/register", &body).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_proxy_is_trusted() {
    let mut config = config();
    config.rate_limits.registration = RateLimit::new(1, 1);
    let server = TestServer::with_config(config.clone()).await;
    async fn register(server: &TestServer, forwarded: &str) -> Reply {
        let request = axum::http::Request::post("/register")
            .header("content-type", "application/json")
            .header("x-forwarded-for", forwarded)
            .body(axum::body::Body::from(
                json!({ "redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "none" }).to_string(),
            ))
            .unwrap();
        server.send(request).await
    }
    // Untrusted peer: spoofing X-Forwarded-For buys nothing.
    assert_eq!(
        register(&server, "1.1.1.1").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        register(&server, "2.2.2.2").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Behind a trusted proxy, each forwarded client has its own bucket.
    config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let server = TestServer::with_config(config).await;
    assert_eq!(
        register(&server, "1.1.1.1").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        register(&server, "2.2.2.2").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        register(&server, "1.1.1.1").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn limits_can_be_switched_off() {
    let mut config = config();
    config.rate_limits.enabled = false;
    config.rate_limits.registration = RateLimit::new(1, 1);
    let server = TestServer::with_config(config).await;
    for _ in 0..5 {
        let reply = server
            .post_json("/register", &json!({ "redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "none" }))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
}
