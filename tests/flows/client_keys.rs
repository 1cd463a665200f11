//! The pre-registered client with configured public keys (`client_jwks`): it may sign client
//! assertions (`private_key_jwt`) at every endpoint that authenticates clients, beside its secret.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::jose::{self, JWT_BEARER, TestKey, claims};
use crate::common::*;

const REDIRECT: &str = "http://127.0.0.1:4321/callback";

async fn server_with_keys(key: &TestKey) -> TestServer {
    let mut config = config();
    config.client_jwks = Some(key.jwks().to_string());
    let server = TestServer::with_config(config).await;
    server.register_passkey(SETUP_TOKEN).await;
    server
}

fn signed<'a>(assertion: &'a str, fields: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = fields.to_vec();
    pairs.push(("client_assertion_type", JWT_BEARER));
    pairs.push(("client_assertion", assertion));
    pairs
}

#[tokio::test]
async fn the_pre_registered_client_signs_at_token_introspect_and_revoke_or_sends_its_secret() {
    let key = TestKey::ec("ops-2026");
    let server = server_with_keys(&key).await;
    let metadata = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert!(
        metadata["introspection_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );
    assert!(
        metadata["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );

    let (code, verifier) = server.code_for(CLIENT_ID, REDIRECT).await;
    let assertion = key.sign(&claims(CLIENT_ID, jose::now()));
    let tokens = server
        .post_form(
            "/token",
            &form(&signed(
                &assertion,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("code_verifier", &verifier),
                    ("redirect_uri", REDIRECT),
                    ("resource", RESOURCE),
                ],
            )),
            &[],
        )
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let tokens = tokens.json();

    // Its secret still works beside the keys.
    let refreshed = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token(&tokens)),
            ]),
            &[("authorization", &basic(CLIENT_ID, CLIENT_SECRET))],
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    let access = access_token(&refreshed.json());

    let assertion = key.sign(&claims(CLIENT_ID, jose::now()));
    let introspected = server
        .post_form(
            "/introspect",
            &form(&signed(&assertion, &[("token", &access)])),
            &[],
        )
        .await;
    assert_eq!(
        introspected.status,
        StatusCode::OK,
        "{}",
        introspected.text()
    );
    assert_eq!(introspected.json()["active"], true);
    // The same assertion again, at another endpoint: spent.
    let replayed = server
        .post_form(
            "/revoke",
            &form(&signed(&assertion, &[("token", &access)])),
            &[],
        )
        .await;
    replayed.assert_oauth_error(401, "invalid_client");

    let forged = TestKey::ec("ops-2026").sign(&claims(CLIENT_ID, jose::now()));
    server
        .post_form(
            "/introspect",
            &form(&signed(&forged, &[("token", &access)])),
            &[],
        )
        .await
        .assert_oauth_error(401, "invalid_client");

    let assertion = key.sign(&claims(CLIENT_ID, jose::now()));
    let revoked = server
        .post_form(
            "/revoke",
            &form(&signed(&assertion, &[("token", &access)])),
            &[],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    assert_eq!(
        server.mcp(Some(&access)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn without_configured_keys_the_pre_registered_client_cannot_sign() {
    let server = TestServer::ready().await;
    let assertion = TestKey::rsa("k").sign(&claims(CLIENT_ID, jose::now()));
    let reply = server
        .post_form(
            "/introspect",
            &form(&signed(&assertion, &[("token", "x")])),
            &[],
        )
        .await;
    reply.assert_oauth_error(401, "invalid_client");
    let description = reply.json()["error_description"].to_string();
    assert!(
        description.contains("not registered for private_key_jwt"),
        "{description}"
    );
}

#[test]
fn configured_keys_must_be_public_signing_keys() {
    let mut private = TestKey::rsa("k").jwks();
    private["keys"][0]["d"] = json!("c2VjcmV0");
    for (jwks, reason) in [
        (private.to_string(), "private key material"),
        (
            json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] }).to_string(),
            "symmetric",
        ),
        ("not json".to_owned(), "not valid JSON"),
        (
            json!({ "keys": [] }).to_string(),
            "no usable public signing key",
        ),
    ] {
        let mut config = config();
        config.client_jwks = Some(jwks);
        let error = mcp_oauth::McpOAuth::builder(config)
            .build()
            .expect_err("refused");
        let text = error.to_string();
        assert!(
            text.contains("client_jwks") && text.contains(reason),
            "{text}"
        );
    }
}
