//! RFC 7009 revocation.

use axum::http::StatusCode;

use crate::common::*;

async fn revoke(server: &TestServer, client_id: &str, token: &str, hint: Option<&str>) -> Reply {
    let mut pairs = vec![("token", token), ("client_id", client_id)];
    if let Some(hint) = hint {
        pairs.push(("token_type_hint", hint));
    }
    server.post_form("/revoke", &form(&pairs), &[]).await
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_grant() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let reply = revoke(&server, &client_id, refresh, Some("refresh_token")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        server.mcp(Some(access)).await.status,
        StatusCode::UNAUTHORIZED
    );
    server
        .refresh(&client_id, refresh)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn revoking_an_access_token_keeps_the_refresh_token() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    // A wrong hint is only a hint.
    assert_eq!(
        revoke(&server, &client_id, access, Some("refresh_token"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        server.mcp(Some(access)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let refreshed = server
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_tokens_and_other_clients_tokens_get_200_and_nothing_happens() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let other = server.register_public_client().await;
    assert_eq!(
        revoke(&server, &client_id, "mcp_at_unknown", None)
            .await
            .status,
        StatusCode::OK
    );
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        revoke(&server, &other, access, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        server.mcp(Some(access)).await.status,
        StatusCode::OK,
        "not revoked by a stranger"
    );
}

#[tokio::test]
async fn revocation_needs_client_authentication() {
    let server = TestServer::ready().await;
    revoke(&server, "ghost", "x", None)
        .await
        .assert_oauth_error(401, "invalid_client");
    let missing = server
        .post_form(
            "/revoke",
            &form(&[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]),
            &[],
        )
        .await;
    missing.assert_oauth_error(400, "invalid_request");
}
