//! Secrets at rest and in logs: only SHA-256 hashes are stored, nothing secret is logged.

use std::io::Write;
use std::sync::{Arc, Mutex};

use mcp_oauth::McpOAuth;
use mcp_oauth::store::{TokenHash, TokenKind};
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;

use crate::common::*;

#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn stores_hold_hashes_and_logs_hold_no_secret() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::ready().await;
    let client = server
        .register_client(json!({
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "client_secret_post",
            "grant_types": ["authorization_code", "refresh_token"]
        }))
        .await;
    let client_id = client["client_id"].as_str().unwrap();
    let secret = client["client_secret"].as_str().unwrap();
    let (code, verifier) = server.code_for(client_id, LOOPBACK_REDIRECT).await;
    let tokens = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", client_id),
                ("client_secret", secret),
            ]),
            &[],
        )
        .await
        .json();
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    // Provoke the warning paths too: code replay and refresh reuse.
    server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", client_id),
                ("client_secret", secret),
            ]),
            &[],
        )
        .await;
    server
        .register_passkey("wrong-setup-token-0123456789")
        .await;

    // At rest: records are found by hash, and carry no raw secret.
    let stored_client = server.stores.clients.get(client_id).await.unwrap().unwrap();
    assert_eq!(stored_client.secret_hash, Some(TokenHash::of(secret)));
    assert!(
        !serde_json::to_string(&stored_client)
            .unwrap()
            .contains(secret)
    );
    assert!(
        server
            .stores
            .tokens
            .get(TokenKind::AccessToken, &TokenHash::of(access))
            .await
            .unwrap()
            .is_none(),
        "revoked by the replay"
    );

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("code_replayed"),
        "the replay was logged: {logs}"
    );
    for secret in [
        secret,
        &code,
        &verifier,
        access,
        refresh,
        SETUP_TOKEN,
        CLIENT_SECRET,
    ] {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
}

#[tokio::test]
async fn live_tokens_are_stored_under_their_hash_only() {
    let server = TestServer::ready().await;
    let (_, tokens) = server.connected_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    let record = server
        .stores
        .tokens
        .get(TokenKind::AccessToken, &TokenHash::of(access))
        .await
        .unwrap()
        .expect("stored under its SHA-256");
    assert!(!String::from_utf8_lossy(&record.payload).contains(access));
    assert!(access.starts_with("mcp_at_"));
}

/// `{:?}` is what ends up in panics, `tracing` fields and error reports: no public type may print a
/// secret it holds, in either form.
#[tokio::test]
async fn debug_output_of_public_types_holds_no_secret() {
    const MACHINE_SECRET: &str = "machine-client-secret-0123456789";
    let mut config = config();
    config.machine_clients = vec![mcp_oauth::MachineClient::with_secret(
        "ci",
        MACHINE_SECRET,
        ["mcp"],
    )];
    let builder = Stores::memory().apply(McpOAuth::builder(config.clone()));
    let builder_output = (format!("{builder:?}"), format!("{builder:#?}"));
    let oauth = builder.build().unwrap();

    // A generated setup token, which only `setup_url` reveals.
    let mut generated = config.clone();
    generated.setup_token = None;
    let generated = Stores::memory()
        .apply(McpOAuth::builder(generated))
        .build()
        .unwrap();
    let setup_url = generated.setup_url().await.unwrap().unwrap();
    let generated_token = setup_url.split_once("#setup_token=").unwrap().1.to_owned();

    for (what, output) in [
        ("OAuthConfig", format!("{config:?}")),
        ("OAuthConfig (alternate)", format!("{config:#?}")),
        ("McpOAuthBuilder", builder_output.0),
        ("McpOAuthBuilder (alternate)", builder_output.1),
        ("McpOAuth", format!("{oauth:?}")),
        ("McpOAuth (alternate)", format!("{oauth:#?}")),
        ("McpOAuth, generated setup token", format!("{generated:#?}")),
        ("BearerLayer", format!("{:#?}", oauth.bearer_layer())),
    ] {
        for secret in [
            CLIENT_SECRET,
            SETUP_TOKEN,
            MACHINE_SECRET,
            generated_token.as_str(),
        ] {
            assert!(!output.contains(secret), "{what} prints a secret: {output}");
        }
    }
    // Still useful: the fields that are not secret are shown, the secret ones marked.
    let output = format!("{config:?}");
    assert!(output.contains(CLIENT_ID), "{output}");
    assert!(output.contains("client_secret"), "{output}");
}
