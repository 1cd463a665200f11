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

#[tokio::test]
async fn mcp_routes_are_limited_per_grant_not_per_address() {
    let mut config = config();
    config.rate_limits.mcp = RateLimit::new(1, 3);
    let server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    let (_, busy) = server.connected_client().await;
    let (_, quiet) = server.connected_client().await;
    let busy = busy["access_token"].as_str().unwrap();
    let statuses: Vec<u16> = futures::future::join_all((0..5).map(|_| server.mcp(Some(busy))))
        .await
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    let limited = server.mcp(Some(busy)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.header("retry-after").is_some());
    // Same address, another grant: unaffected (hosted clients share egress addresses).
    assert_eq!(
        server
            .mcp(Some(quiet["access_token"].as_str().unwrap()))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn guessing_a_client_secret_is_held_to_the_failure_budget() {
    let mut config = config();
    config.rate_limits.failures = mcp_oauth::FailureLimit {
        max_failures: 3,
        window_secs: 600,
    };
    let mut server = TestServer::with_config(config).await;
    let attempt = |secret: &'static str| {
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", CLIENT_ID),
            ("client_secret", secret),
        ])
    };
    for _ in 0..3 {
        server
            .post_form("/token", &attempt("wrong-guess-wrong-guess"), &[])
            .await
            .assert_oauth_error(401, "invalid_client");
    }
    // The budget is spent: even the right secret is not checked until the window ends.
    let blocked = server
        .post_form("/token", &attempt(CLIENT_SECRET), &[])
        .await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        blocked
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 500
    );
    let introspect = server
        .post_form(
            "/introspect",
            &form(&[
                ("token", "x"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ]),
            &[],
        )
        .await;
    assert_eq!(
        introspect.status,
        StatusCode::TOO_MANY_REQUESTS,
        "one budget per client, whichever endpoint checks its secret"
    );
    // Another address is not affected, and successes there cost nothing.
    server.peer = "127.0.0.9:40000".parse().unwrap();
    server
        .post_form("/token", &attempt(CLIENT_SECRET), &[])
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn guessing_the_setup_token_is_held_to_the_failure_budget() {
    let mut config = config();
    config.rate_limits.failures = mcp_oauth::FailureLimit {
        max_failures: 2,
        window_secs: 600,
    };
    let server = TestServer::with_config(config).await;
    for guess in ["guess-one-guess-one-1", "guess-two-guess-two-2"] {
        let reply = server
            .post_json("/passkey/register/start", &json!({ "setup_token": guess }))
            .await;
        reply.assert_oauth_error(403, "access_denied");
    }
    let right = server
        .post_json(
            "/passkey/register/start",
            &json!({ "setup_token": SETUP_TOKEN }),
        )
        .await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_limited_page_is_a_page() {
    // The consent page, the passkey registration page and the console: a person reads the 429.
    for page in ["/authorize", "/passkey/register", "/oauth/console"] {
        let mut config = config();
        config.rate_limits.auth = RateLimit::new(1, 2);
        config.rate_limits.registration = RateLimit::new(1, 2);
        config.rate_limits.general = RateLimit::new(1, 2);
        let server = TestServer::with_config(config).await;
        let replies = [
            server.get(page).await,
            server.get(page).await,
            server.get(page).await,
        ];
        let limited = &replies[2];
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{page}");
        assert!(
            limited
                .header("content-type")
                .unwrap()
                .starts_with("text/html"),
            "{page}: {:?}",
            limited.header("content-type")
        );
        assert!(limited.header("retry-after").is_some());
        assert!(limited.text().contains("Try again in"), "{page}");
    }
}

#[tokio::test]
async fn starting_a_ceremony_without_a_secret_is_held_to_the_auth_tier() {
    // Each start stores a passkey ceremony for minutes: the tier that guards `/authorize`, not the
    // general one that pages and metadata share.
    let mut config = config();
    config.rate_limits.auth = RateLimit::new(1, 2);
    let mut server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    for (i, path) in [
        "/oauth/console/signin/start",
        "/oauth/console/passkeys/add/start",
    ]
    .into_iter()
    .enumerate()
    {
        server.peer = format!("127.0.0.{}:40000", 10 + i).parse().unwrap();
        let mut codes = Vec::new();
        for _ in 0..3 {
            codes.push(server.post_json(path, &json!({})).await.status.as_u16());
        }
        assert_ne!(codes[0], 429, "{path}: {codes:?}");
        assert_eq!(
            codes[2], 429,
            "{path}: the auth tier's burst of 2: {codes:?}"
        );
    }
}

#[tokio::test]
async fn a_failure_window_past_a_day_fails_the_build_and_a_days_window_still_holds() {
    let mut huge = config();
    huge.rate_limits.failures.window_secs = u64::MAX;
    match mcp_oauth::McpOAuth::builder(huge)
        .stores(mcp_oauth::MemoryStore::new())
        .build()
    {
        Err(mcp_oauth::Error::InvalidConfig { field, .. }) => {
            assert_eq!(field, "rate_limits.failures.window_secs");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }

    let mut config = config();
    config.rate_limits.failures = mcp_oauth::FailureLimit {
        max_failures: 2,
        window_secs: mcp_oauth::MAX_SHORT_LIFETIME_SECS,
    };
    let server = TestServer::with_config(config).await;
    let attempt = |secret: &'static str| {
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", CLIENT_ID),
            ("client_secret", secret),
        ])
    };
    for _ in 0..2 {
        server
            .post_form("/token", &attempt("wrong-guess-wrong-guess"), &[])
            .await
            .assert_oauth_error(401, "invalid_client");
    }
    let blocked = server
        .post_form("/token", &attempt(CLIENT_SECRET), &[])
        .await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = blocked.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 86_000 && wait <= 86_400, "{wait}");
}
