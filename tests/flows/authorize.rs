//! The authorization endpoint: PKCE, redirect URIs, resource, scopes, the owner's decision.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

/// An error page: 4xx, HTML, no redirect of any kind.
#[track_caller]
fn assert_error_page(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(reply.header("location").is_none());
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(!reply.text().contains("data-request-id"));
}

/// A "return to the application" link carrying `error`, never followed automatically.
#[track_caller]
fn assert_error_link(reply: &Reply, error: &str) {
    assert_error_page(reply);
    let page = reply.text();
    assert!(
        page.contains(&format!("error={error}")),
        "no error={error} link in: {page}"
    );
    assert!(page.contains("iss=http%3A%2F%2Flocalhost%3A8080"), "{page}");
}

#[tokio::test]
async fn pkce_challenge_is_required() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let reply = server
        .get(&format!(
            "/authorize?response_type=code&client_id={client_id}&redirect_uri={}&state=st",
            enc(LOOPBACK_REDIRECT)
        ))
        .await;
    assert_error_link(&reply, "invalid_request");
}

#[tokio::test]
async fn pkce_plain_and_missing_method_are_refused() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let (_, challenge) = pkce();
    let base = format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={challenge}",
        enc(LOOPBACK_REDIRECT)
    );
    assert_error_link(
        &server
            .get(&format!("{base}&code_challenge_method=plain"))
            .await,
        "invalid_request",
    );
    assert_error_link(&server.get(&base).await, "invalid_request");
    assert_error_link(
        &server
            .get(&format!("{base}&code_challenge_method=S512"))
            .await,
        "invalid_request",
    );
}

#[tokio::test]
async fn malformed_challenge_is_refused() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    for challenge in [
        "short",
        &"a".repeat(44),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",
    ] {
        let reply = server
            .get(&format!(
                "/authorize?{}",
                authorization_query(&client_id, LOOPBACK_REDIRECT, &enc(challenge))
            ))
            .await;
        assert_error_link(&reply, "invalid_request");
    }
}

#[tokio::test]
async fn unknown_client_gets_an_error_page_never_a_redirect() {
    let server = TestServer::ready().await;
    let (_, challenge) = pkce();
    let reply = server
        .get(&format!(
            "/authorize?{}",
            authorization_query("nobody", LOOPBACK_REDIRECT, &challenge)
        ))
        .await;
    assert_error_page(&reply);
    assert!(
        !reply.text().contains("127.0.0.1:9999"),
        "must not offer a link to an unvalidated URI"
    );
    let reply = server.get("/authorize?response_type=code").await;
    assert_error_page(&reply);
}

#[tokio::test]
async fn unregistered_and_look_alike_redirect_uris_are_refused_without_redirect() {
    let server = TestServer::ready().await;
    let client_id = server
        .client_id_for(
            json!({ "redirect_uris": [CLAUDE_REDIRECT], "token_endpoint_auth_method": "none" }),
        )
        .await;
    let (_, challenge) = pkce();
    for evil in [
        "https://evil.example/api/mcp/auth_callback",
        "https://claude.ai/api/mcp/auth_callback/",
        "https://claude.ai/api/mcp/auth_callback?x=1",
        "https://CLAUDE.AI/api/mcp/auth_callback",
        "https://claude.ai./api/mcp/auth_callback",
        "https://claude.ai:443/api/mcp/auth_callback",
        "https://claude.ai@evil.example/api/mcp/auth_callback",
        "https://claude.ai/api/mcp/auth_callback#frag",
        "https://claude.ai/api/mcp/%61uth_callback",
        " https://claude.ai/api/mcp/auth_callback",
        "javascript:alert(1)",
    ] {
        let reply = server
            .get(&format!(
                "/authorize?{}",
                authorization_query(&client_id, evil, &challenge)
            ))
            .await;
        assert_error_page(&reply);
        assert!(!reply.text().contains("evil.example"), "{evil}");
    }
}

#[tokio::test]
async fn loopback_redirects_accept_any_port_but_not_another_host() {
    let server = TestServer::ready().await;
    let client_id = server
        .client_id_for(json!({
            "redirect_uris": ["http://localhost/callback", "http://127.0.0.1/callback"],
            "token_endpoint_auth_method": "none"
        }))
        .await;
    let (_, challenge) = pkce();
    for ok in [
        "http://localhost:33418/callback",
        "http://127.0.0.1:6274/callback",
        "http://127.0.0.1/callback",
    ] {
        assert!(
            server
                .authorize(&authorization_query(&client_id, ok, &challenge))
                .await
                .is_ok(),
            "{ok}"
        );
    }
    for bad in [
        "http://[::1]:3000/callback",
        "http://127.0.0.1:3000/other",
        "https://localhost:3000/callback",
    ] {
        let reply = server
            .get(&format!(
                "/authorize?{}",
                authorization_query(&client_id, bad, &challenge)
            ))
            .await;
        assert_error_page(&reply);
    }
}

#[tokio::test]
async fn redirect_uri_may_be_omitted_only_with_one_registered() {
    let server = TestServer::ready().await;
    let one = server
        .client_id_for(
            json!({ "redirect_uris": [CLAUDE_REDIRECT], "token_endpoint_auth_method": "none" }),
        )
        .await;
    let (_, challenge) = pkce();
    let omit = |id: &str| {
        format!(
            "response_type=code&client_id={id}&code_challenge={challenge}&code_challenge_method=S256"
        )
    };
    assert!(server.authorize(&omit(&one)).await.is_ok());
    // The pre-registered client has several.
    assert_error_page(&server.get(&format!("/authorize?{}", omit(CLIENT_ID))).await);
}

#[tokio::test]
async fn response_type_must_be_code() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let (_, challenge) = pkce();
    let q = authorization_query(&client_id, LOOPBACK_REDIRECT, &challenge)
        .replace("response_type=code", "response_type=token");
    assert_error_link(
        &server.get(&format!("/authorize?{q}")).await,
        "unsupported_response_type",
    );
    let q = authorization_query(&client_id, LOOPBACK_REDIRECT, &challenge)
        .replace("response_type=code&", "");
    assert_error_link(
        &server.get(&format!("/authorize?{q}")).await,
        "invalid_request",
    );
}

#[tokio::test]
async fn repeated_parameters_are_refused() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let (_, challenge) = pkce();
    let q = format!(
        "{}&state=again",
        authorization_query(&client_id, LOOPBACK_REDIRECT, &challenge)
    );
    assert_error_page(&server.get(&format!("/authorize?{q}")).await);
}

#[tokio::test]
async fn resource_is_tolerant_of_slash_and_absence_but_refuses_a_foreign_one() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let (_, challenge) = pkce();
    let base = authorization_query(&client_id, LOOPBACK_REDIRECT, &challenge);
    for ok in [
        "",
        "&resource=http%3A%2F%2Flocalhost%3A8080%2Fmcp",
        "&resource=http%3A%2F%2Flocalhost%3A8080%2Fmcp%2F",
    ] {
        assert!(
            server.authorize(&format!("{base}{ok}")).await.is_ok(),
            "{ok}"
        );
    }
    for foreign in [
        "https://evil.example/mcp",
        "http://localhost:8080/other",
        "http://localhost:8080/mcp#x",
    ] {
        let reply = server
            .get(&format!("/authorize?{base}&resource={}", enc(foreign)))
            .await;
        assert_error_link(&reply, "invalid_target");
    }
}

#[tokio::test]
async fn odd_scope_strings_are_tolerated_and_only_configured_scopes_granted() {
    let mut config = config();
    config.scopes = vec!["mcp".into(), "admin".into()];
    let server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    let client_id = server.register_public_client().await;
    for (requested, granted) in [
        ("%20offline_access", "mcp"),
        ("claudeai", "mcp"),
        ("", "mcp"),
        ("admin%20%20unknown", "admin"),
        ("mcp+admin+superuser", "mcp admin"),
    ] {
        let (verifier, challenge) = pkce();
        let request_id = server
            .authorize(&format!(
                "{}&scope={requested}",
                authorization_query(&client_id, LOOPBACK_REDIRECT, &challenge)
            ))
            .await
            .unwrap_or_else(|r| panic!("{requested}: {}", r.text()));
        let redirect = server.approve(&request_id).await;
        let code = query_param(&redirect, "code").unwrap();
        let tokens = server
            .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
            .await
            .json();
        assert_eq!(tokens["scope"], granted, "{requested}");
    }
}

#[tokio::test]
async fn consent_page_shows_the_client_and_escapes_what_it_says() {
    let server = TestServer::ready().await;
    let client_id = server
        .client_id_for(json!({
            "redirect_uris": ["https://app.example.com/cb"],
            "token_endpoint_auth_method": "none",
            "client_name": "<script>alert('x')</script> & \"friends\""
        }))
        .await;
    let (_, challenge) = pkce();
    let reply = server
        .get(&format!(
            "/authorize?{}&scope=mcp",
            authorization_query(&client_id, "https://app.example.com/cb", &challenge)
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let page = reply.text();
    assert!(
        !page.contains("<script>alert"),
        "client name must be escaped"
    );
    assert!(
        page.contains("&lt;script&gt;") || page.contains("&#60;script&#62;"),
        "{page}"
    );
    assert!(
        page.contains("https://app.example.com"),
        "redirect origin shown"
    );
    assert!(page.contains("Test Server"), "app name shown");
    assert!(page.contains("id=\"approve\"") && page.contains("id=\"deny\""));
    assert!(
        page.contains(">mcp<") || page.contains("mcp"),
        "scopes shown"
    );
    let csp = reply.header("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn deny_returns_access_denied_with_state_and_iss() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
    let reply = server
        .post_json("/authorize/deny", &json!({ "request_id": request_id }))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let url = url::Url::parse(reply.json()["redirect_to"].as_str().unwrap()).unwrap();
    assert!(url.as_str().starts_with(LOOPBACK_REDIRECT));
    assert_eq!(query_param(&url, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&url, "state").as_deref(), Some("st"));
    assert_eq!(query_param(&url, "iss").as_deref(), Some(SERVER_URL));
    // A decided request cannot be approved afterwards.
    let again = server
        .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_pending_request_is_approved_once() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
    server.approve(&request_id).await;
    let again = server
        .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
        .await;
    again.assert_oauth_error(400, "invalid_request");
}

#[tokio::test]
async fn existing_query_on_the_redirect_uri_is_kept() {
    let server = TestServer::ready().await;
    let redirect = "https://app.example.com/cb?tenant=7";
    let client_id = server
        .client_id_for(json!({ "redirect_uris": [redirect], "token_endpoint_auth_method": "none" }))
        .await;
    let request_id = server.pending_request(&client_id, redirect).await;
    let url = server.approve(&request_id).await;
    assert_eq!(query_param(&url, "tenant").as_deref(), Some("7"));
    assert!(query_param(&url, "code").is_some());
}

#[tokio::test]
async fn approval_endpoints_refuse_cross_site_requests() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let request = axum::http::Request::post("/authorize/deny")
            .header("content-type", "application/json")
            .header(name, value)
            .body(axum::body::Body::from(
                json!({ "request_id": request_id }).to_string(),
            ))
            .unwrap();
        let reply = server.send(request).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{name}");
    }
    // Still pending: the cross-site attempts changed nothing.
    let reply = server
        .post_json("/authorize/deny", &json!({ "request_id": request_id }))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn consent_without_any_passkey_cannot_be_approved() {
    let server = TestServer::new().await;
    let client_id = server.register_public_client().await;
    let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
    let reply = server
        .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
        .await;
    reply.assert_oauth_error(403, "access_denied");
}
