//! The token endpoint: code binding, single use, refresh rotation, client authentication.

use std::time::Duration;

use axum::http::StatusCode;
use mcp_oauth::ManualClock;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn code_is_single_use_and_replay_revokes_what_it_issued() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
    let first = server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let tokens = first.json();
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(server.mcp(Some(access)).await.status, StatusCode::OK);

    let replay = server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await;
    replay.assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        server.mcp(Some(access)).await.status,
        StatusCode::UNAUTHORIZED,
        "access token revoked"
    );
    let refresh = server
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await;
    refresh.assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn concurrent_redemptions_of_one_code_yield_one_token() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
    let attempts =
        (0..16).map(|_| server.exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT));
    let replies = futures::future::join_all(attempts).await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "exactly one redemption wins");
}

#[tokio::test]
async fn a_replay_by_someone_else_revokes_nothing() {
    // Revoking on replay must need the verifier and the right client, or anyone could log anyone out.
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let other = server.register_public_client().await;
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
    let tokens = server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await
        .json();
    let (_, wrong_verifier) = pkce();
    server
        .exchange(&client_id, &code, &wrong_verifier, LOOPBACK_REDIRECT)
        .await
        .assert_oauth_error(400, "invalid_grant");
    server
        .exchange(&other, &code, &verifier, LOOPBACK_REDIRECT)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(server.mcp(Some(access)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn code_is_bound_to_its_client_verifier_and_redirect_uri() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let other = server.register_public_client().await;
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
    let (_, wrong_verifier) = pkce();
    server
        .exchange(&other, &code, &verifier, LOOPBACK_REDIRECT)
        .await
        .assert_oauth_error(400, "invalid_grant");
    server
        .exchange(&client_id, &code, &wrong_verifier, LOOPBACK_REDIRECT)
        .await
        .assert_oauth_error(400, "invalid_grant");
    server
        .exchange(
            &client_id,
            &code,
            &verifier,
            "http://127.0.0.1:9998/callback",
        )
        .await
        .assert_oauth_error(400, "invalid_grant");
    // Failed attempts did not burn the code: the rightful client still redeems it.
    let ok = server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
}

#[tokio::test]
async fn verifier_syntax_is_checked() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let (code, _) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
    for verifier in [
        "a".repeat(42),
        "a".repeat(129),
        format!("{}!", "a".repeat(43)),
    ] {
        server
            .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
            .await
            .assert_oauth_error(400, "invalid_request");
    }
    let missing = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &client_id),
            ]),
            &[],
        )
        .await;
    missing.assert_oauth_error(400, "invalid_request");
}

#[tokio::test]
async fn code_expires() {
    let mut config = config();
    config.code_lifetime_secs = 60;
    let clock = ManualClock::new();
    let server = TestServer::with_clock(config, &clock);
    server.register_passkey(SETUP_TOKEN).await;
    let client_id = server.register_public_client().await;
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
    clock.advance(Duration::from_secs(60));
    server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

/// A used code that comes back after it expired is refused as any unknown code is (as a store
/// answers once the code is gone), and revokes nothing: only a replay within the code's lifetime
/// is evidence that it leaked.
#[tokio::test]
async fn a_used_code_back_after_it_expired_is_refused_as_unknown() {
    let mut config = config();
    config.code_lifetime_secs = 60;
    let clock = ManualClock::new();
    let server = TestServer::with_clock(config, &clock);
    server.register_passkey(SETUP_TOKEN).await;
    let client_id = server.register_public_client().await;
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
    let tokens = server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await
        .json();
    clock.advance(Duration::from_secs(60));
    let replay = server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await;
    replay.assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        replay.json()["error_description"],
        "the authorization code is invalid or expired"
    );
    assert_eq!(
        server.mcp(Some(&access_token(&tokens))).await.status,
        StatusCode::OK,
        "the grant stands"
    );
}

#[tokio::test]
async fn foreign_resource_at_the_token_endpoint_is_invalid_target() {
    let server = TestServer::ready().await;
    let client_id = server.register_public_client().await;
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", &client_id),
                ("resource", "https://evil.example/mcp"),
            ]),
            &[],
        )
        .await;
    reply.assert_oauth_error(400, "invalid_target");
    // Without `resource` at all, the default applies.
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", &client_id),
            ]),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[tokio::test]
async fn unknown_client_is_401_invalid_client_and_is_not_created() {
    let server = TestServer::ready().await;
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_id", "ghost"),
            ]),
            &[],
        )
        .await;
    reply.assert_oauth_error(401, "invalid_client");
    let basic_reply = server
        .post_form(
            "/token",
            &form(&[("grant_type", "refresh_token"), ("refresh_token", "x")]),
            &[("authorization", &basic("ghost", "pw"))],
        )
        .await;
    basic_reply.assert_oauth_error(401, "invalid_client");
    assert!(
        basic_reply
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic")
    );
    // Never auto-created: the authorization endpoint does not know it either.
    let (_, challenge) = pkce();
    let page = server
        .get(&format!(
            "/authorize?response_type=code&client_id=ghost&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256",
            enc(LOOPBACK_REDIRECT)
        ))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn client_authentication_is_enforced() {
    let server = TestServer::ready().await;
    let form_for = |extra: &[(&str, &str)]| {
        let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", "x")];
        pairs.extend_from_slice(extra);
        form(&pairs)
    };
    // Wrong secret, no secret, secret for a public client, two methods at once.
    server
        .post_form(
            "/token",
            &form_for(&[
                ("client_id", CLIENT_ID),
                ("client_secret", "wrong-secret-wrong-secret"),
            ]),
            &[],
        )
        .await
        .assert_oauth_error(401, "invalid_client");
    server
        .post_form("/token", &form_for(&[("client_id", CLIENT_ID)]), &[])
        .await
        .assert_oauth_error(401, "invalid_client");
    let public = server.register_public_client().await;
    server
        .post_form(
            "/token",
            &form_for(&[("client_id", &public), ("client_secret", "made-up")]),
            &[],
        )
        .await
        .assert_oauth_error(401, "invalid_client");
    server
        .post_form(
            "/token",
            &form_for(&[("client_secret", CLIENT_SECRET)]),
            &[("authorization", &basic(CLIENT_ID, CLIENT_SECRET))],
        )
        .await
        .assert_oauth_error(400, "invalid_request");
    // The right secret either way gets past authentication (to the bad refresh token).
    server
        .post_form(
            "/token",
            &form_for(&[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]),
            &[],
        )
        .await
        .assert_oauth_error(400, "invalid_grant");
    server
        .post_form(
            "/token",
            &form_for(&[]),
            &[("authorization", &basic(CLIENT_ID, CLIENT_SECRET))],
        )
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn unsupported_grant_types_are_refused() {
    let server = TestServer::ready().await;
    for grant in ["password", "client_credentials", "implicit"] {
        server
            .post_form(
                "/token",
                &form(&[
                    ("grant_type", grant),
                    ("client_id", CLIENT_ID),
                    ("client_secret", CLIENT_SECRET),
                ]),
                &[],
            )
            .await
            .assert_oauth_error(400, "unsupported_grant_type");
    }
}

#[tokio::test]
async fn refresh_rotates_and_a_retry_within_the_grace_window_still_works() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let old = refresh_token(&tokens);
    let first = server.refresh(&client_id, &old).await;
    assert_eq!(first.status, StatusCode::OK);
    let first = first.json();
    assert_ne!(refresh_token(&first), old, "rotated");
    // The same old token again (a second egress node, or a retried lost response): still works,
    // with the same pair, which works.
    let retry = server.refresh(&client_id, &old).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
    let retry = retry.json();
    assert_eq!(refresh_token(&retry), refresh_token(&first));
    assert_eq!(retry["access_token"], first["access_token"]);
    assert_eq!(
        server
            .mcp(Some(retry["access_token"].as_str().unwrap()))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        server
            .refresh(&client_id, &refresh_token(&retry))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn concurrent_refreshes_within_grace_all_succeed_with_one_pair() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let old = refresh_token(&tokens);
    let replies = futures::future::join_all((0..8).map(|_| server.refresh(&client_id, &old))).await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(
            refresh_token(&reply.json()),
            refresh_token(&replies[0].json()),
            "one chain"
        );
        assert_eq!(
            server
                .mcp(Some(reply.json()["access_token"].as_str().unwrap()))
                .await
                .status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_grant() {
    let mut config = config();
    config.refresh_grace_secs = 0;
    let server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    let old = refresh_token(&tokens);
    let rotated = server.refresh(&client_id, &old).await.json();
    let new_access = rotated["access_token"].as_str().unwrap();
    assert_eq!(server.mcp(Some(new_access)).await.status, StatusCode::OK);

    server
        .refresh(&client_id, &old)
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        server.mcp(Some(new_access)).await.status,
        StatusCode::UNAUTHORIZED,
        "grant revoked"
    );
    server
        .refresh(&client_id, &refresh_token(&rotated))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn reuse_with_a_longer_grace_expires_too() {
    let mut config = config();
    config.refresh_grace_secs = 1;
    let clock = ManualClock::new();
    let server = TestServer::with_clock(config, &clock);
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    let old = refresh_token(&tokens);
    let rotated = server.refresh(&client_id, &old).await.json();
    clock.advance(Duration::from_secs(2));
    server
        .refresh(&client_id, &old)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let access = rotated["access_token"].as_str().unwrap();
    assert_eq!(
        server.mcp(Some(access)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn strict_concurrent_refresh_has_one_winner_and_then_revokes() {
    let mut config = config();
    config.refresh_grace_secs = 0;
    let server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    let old = refresh_token(&tokens);
    let replies = futures::future::join_all((0..8).map(|_| server.refresh(&client_id, &old))).await;
    assert_eq!(
        replies
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count(),
        1
    );
}

#[tokio::test]
async fn refresh_token_is_bound_to_its_client_and_can_only_narrow_scope() {
    let mut config = config();
    config.scopes = vec!["mcp".into(), "admin".into()];
    let server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    let other = server.register_public_client().await;
    let rt = refresh_token(&tokens);
    server
        .refresh(&other, &rt)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let widen = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("client_id", &client_id),
                ("scope", "mcp admin"),
            ]),
            &[],
        )
        .await;
    widen.assert_oauth_error(400, "invalid_scope");
    // Neither failure used the token up.
    let ok = server.refresh(&client_id, &rt).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.json()["scope"], "mcp");
}

#[tokio::test]
async fn clients_registered_without_refresh_get_no_refresh_token() {
    let server = TestServer::ready().await;
    let client_id = server
        .client_id_for(
            json!({ "redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "none" }),
        )
        .await;
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
    let tokens = server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await
        .json();
    assert!(tokens.get("refresh_token").is_none());
    assert!(tokens["access_token"].is_string());
}
