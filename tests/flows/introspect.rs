//! RFC 7662 introspection, for resource servers outside this layer.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

async fn introspect(server: &TestServer, token: &str, credentials: &[(&str, &str)]) -> Reply {
    let mut pairs = vec![("token", token)];
    pairs.extend_from_slice(credentials);
    server.post_form("/introspect", &form(&pairs), &[]).await
}

const RESOURCE_SERVER: [(&str, &str); 2] =
    [("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)];

#[tokio::test]
async fn active_tokens_are_described_and_everything_else_is_just_inactive() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();

    let reply = introspect(&server, access, &RESOURCE_SERVER).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], client_id.as_str());
    assert_eq!(body["scope"], "mcp");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["aud"], RESOURCE);
    assert_eq!(body["iss"], SERVER_URL);
    assert!(body["exp"].as_u64().unwrap() > 0);

    let refresh = introspect(
        &server,
        tokens["refresh_token"].as_str().unwrap(),
        &RESOURCE_SERVER,
    )
    .await
    .json();
    assert_eq!(refresh["active"], true);
    assert!(refresh.get("token_type").is_none());

    for inactive in ["mcp_at_unknown", "garbage"] {
        assert_eq!(
            introspect(&server, inactive, &RESOURCE_SERVER).await.json(),
            json!({ "active": false })
        );
    }
    // Revoked: inactive, and nothing more is said.
    server
        .post_form(
            "/revoke",
            &form(&[("token", access), ("client_id", &client_id)]),
            &[],
        )
        .await;
    assert_eq!(
        introspect(&server, access, &RESOURCE_SERVER).await.json(),
        json!({ "active": false })
    );
}

#[tokio::test]
async fn only_authenticated_confidential_clients_may_introspect() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    // The token's own public client, an anonymous caller, a wrong secret.
    introspect(&server, access, &[("client_id", &client_id)])
        .await
        .assert_oauth_error(401, "invalid_client");
    introspect(&server, access, &[])
        .await
        .assert_oauth_error(401, "invalid_client");
    introspect(
        &server,
        access,
        &[
            ("client_id", CLIENT_ID),
            ("client_secret", "wrong-secret-wrong-secret"),
        ],
    )
    .await
    .assert_oauth_error(401, "invalid_client");
    let basic_reply = server
        .post_form(
            "/introspect",
            &form(&[("token", access)]),
            &[("authorization", &basic(CLIENT_ID, CLIENT_SECRET))],
        )
        .await;
    assert_eq!(basic_reply.json()["active"], true);
    introspect(&server, "", &RESOURCE_SERVER)
        .await
        .assert_oauth_error(400, "invalid_request");
}

#[tokio::test]
async fn advertised_in_metadata() {
    let server = TestServer::new().await;
    let doc = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(
        doc["introspection_endpoint"],
        "http://localhost:8080/introspect"
    );
}
