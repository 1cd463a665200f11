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

/// The pre-registered client's own tokens (it is also the default resource server).
async fn pre_registered_tokens(server: &TestServer) -> serde_json::Value {
    let (code, verifier) = server.code_for(CLIENT_ID, CLAUDE_REDIRECT).await;
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("redirect_uri", CLAUDE_REDIRECT),
            ]),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

/// Anyone may register a confidential client; that must not make it a resource server.
#[tokio::test]
async fn a_self_registered_client_with_a_secret_cannot_introspect() {
    let server = TestServer::ready().await;
    let victim = pre_registered_tokens(&server).await;
    let (_, other) = server.connected_client().await;
    let attacker = server
        .register_client(json!({
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "client_secret_post",
        }))
        .await;
    let credentials = [
        ("client_id", attacker["client_id"].as_str().unwrap()),
        ("client_secret", attacker["client_secret"].as_str().unwrap()),
    ];
    for token in [
        &victim["access_token"],
        &victim["refresh_token"],
        &other["access_token"],
        &other["refresh_token"],
    ] {
        let reply = introspect(&server, token.as_str().unwrap(), &credentials).await;
        reply.assert_oauth_error(401, "invalid_client");
    }
    // Nor with Basic credentials.
    let basic_reply = server
        .post_form(
            "/introspect",
            &form(&[("token", victim["access_token"].as_str().unwrap())]),
            &[("authorization", &basic(credentials[0].1, credentials[1].1))],
        )
        .await;
    basic_reply.assert_oauth_error(401, "invalid_client");
    assert!(basic_reply.header("www-authenticate").is_some());
}

/// A refresh token is for the token endpoint only: a resource server asking about another
/// client's refresh token learns nothing, so it cannot take one for an access token.
#[tokio::test]
async fn a_resource_server_sees_another_clients_refresh_token_as_inactive() {
    let server = TestServer::ready().await;
    let (_, tokens) = server.connected_client().await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    for hint in [None, Some("refresh_token"), Some("access_token")] {
        let mut credentials = RESOURCE_SERVER.to_vec();
        credentials.extend(hint.map(|hint| ("token_type_hint", hint)));
        assert_eq!(
            introspect(&server, refresh, &credentials).await.json(),
            json!({ "active": false }),
            "hint {hint:?}"
        );
    }
}

/// Every active answer says what the token is; a client's own refresh token is described to it,
/// marked as a refresh token, never as `Bearer`.
#[tokio::test]
async fn every_active_answer_has_a_token_type_and_own_refresh_tokens_are_marked() {
    let server = TestServer::ready().await;
    let own = pre_registered_tokens(&server).await;

    let access = introspect(
        &server,
        own["access_token"].as_str().unwrap(),
        &RESOURCE_SERVER,
    )
    .await
    .json();
    assert_eq!(access["active"], true);
    assert_eq!(access["token_type"], "Bearer");

    let refresh = introspect(
        &server,
        own["refresh_token"].as_str().unwrap(),
        &RESOURCE_SERVER,
    )
    .await
    .json();
    assert_eq!(refresh["active"], true, "{refresh}");
    assert_eq!(refresh["client_id"], CLIENT_ID);
    assert_eq!(
        refresh["token_type"], "urn:ietf:params:oauth:token-type:refresh_token",
        "{refresh}"
    );
}

/// `introspection_clients` names the resource servers; the pre-registered client is one only
/// while it is named.
#[tokio::test]
async fn the_configured_resource_servers_and_only_they_may_introspect() {
    let first = TestServer::ready().await;
    let resource_server = first
        .register_client(json!({
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .await;
    let id = resource_server["client_id"].as_str().unwrap();
    let secret = resource_server["client_secret"].as_str().unwrap();
    let (_, tokens) = first.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();

    let mut config = config();
    config.introspection_clients = vec![id.to_owned()];
    let server = TestServer::on(first.stores.clone(), config, mcp_routes());
    let reply = introspect(
        &server,
        access,
        &[("client_id", id), ("client_secret", secret)],
    )
    .await;
    assert_eq!(reply.json()["active"], true);
    introspect(&server, access, &RESOURCE_SERVER)
        .await
        .assert_oauth_error(401, "invalid_client");
}

#[tokio::test]
async fn advertised_in_metadata_while_some_client_may_introspect() {
    let server = TestServer::new().await;
    let doc = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(
        doc["introspection_endpoint"],
        "http://localhost:8080/introspect"
    );
    assert_eq!(
        doc["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_post", "client_secret_basic"])
    );

    let mut config = config();
    config.introspection_clients.clear();
    let server = TestServer::with_config(config).await;
    let doc = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert!(doc.get("introspection_endpoint").is_none(), "{doc}");
    assert!(
        doc.get("introspection_endpoint_auth_methods_supported")
            .is_none()
    );
    introspect(&server, "mcp_at_anything", &RESOURCE_SERVER)
        .await
        .assert_oauth_error(401, "invalid_client");
}
