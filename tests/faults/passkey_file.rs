//! The passkey file through the whole layer: a corrupt file stops start-up and is left untouched; a
//! path that cannot be written makes registration fail cleanly, losing nothing already stored.

use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use mcp_oauth::store::PasskeyStore;
use mcp_oauth::{McpOAuth, PasskeyFileStore};
use serde_json::json;
use tokio::sync::Mutex;

use crate::common::*;

/// A server keeping its passkeys in the file at `path`.
fn on_file(path: &Path) -> TestServer {
    let memory = Stores::memory();
    let stores = Stores {
        passkeys: Arc::new(PasskeyFileStore::open(path).unwrap()),
        ..memory
    };
    TestServer::on(stores, config(), mcp_routes())
}

/// Put a plain file where the passkey file's directory was: nothing can be created in it.
fn break_directory(dir: &Path) -> std::path::PathBuf {
    let aside = dir.with_extension("aside");
    std::fs::rename(dir, &aside).unwrap();
    std::fs::write(dir, b"not a directory").unwrap();
    aside
}

fn repair_directory(dir: &Path, aside: &Path) {
    std::fs::remove_file(dir).unwrap();
    std::fs::rename(aside, dir).unwrap();
}

#[tokio::test]
async fn a_corrupt_passkey_file_stops_start_up_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkeys.json");
    let corrupt = b"{\"version\": 1, \"passkeys\": [{\"credential_id\": \"trunc";
    std::fs::write(&path, corrupt).unwrap();
    let mut config = config();
    config.passkey_store_path = path.clone();
    // Memory for tokens and clients by default; the passkeys in the configured file.
    let error = McpOAuth::builder(config)
        .build()
        .expect_err("a corrupt passkey file is a start-up error");
    let message = format!("{error}: {:?}", std::error::Error::source(&error));
    assert!(
        message.contains("passkeys.json"),
        "names the file: {message}"
    );
    assert!(
        message.contains("untouched"),
        "says it was left alone: {message}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), corrupt, "byte for byte");
}

#[tokio::test]
async fn a_passkey_path_under_a_plain_file_is_a_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("state");
    std::fs::write(&blocker, b"a file, not a directory").unwrap();
    let mut config = config();
    config.passkey_store_path = blocker.join("passkeys.json");
    // Memory for tokens and clients by default; the passkeys in the configured file.
    let error = McpOAuth::builder(config)
        .build()
        .expect_err("an unwritable passkey path is a start-up error");
    let message = format!("{error}: {:?}", std::error::Error::source(&error));
    assert!(message.contains("passkeys.json"), "{message}");
    assert_eq!(std::fs::read(&blocker).unwrap(), b"a file, not a directory");
}

#[tokio::test]
async fn an_unwritable_directory_fails_registration_cleanly_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    let path = dir.join("passkeys.json");
    let server = on_file(&path);

    // The first registration, with the directory gone: a clean 503, and the setup token survives.
    let aside = break_directory(&dir);
    let failed = server.register_passkey(SETUP_TOKEN).await;
    failed.assert_oauth_error(503, "temporarily_unavailable");
    repair_directory(&dir, &aside);
    let first = server.register_passkey(SETUP_TOKEN).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let saved = std::fs::read(&path).unwrap();

    // A second passkey, approved by the first, with the directory gone again.
    let aside = break_directory(&dir);
    let approval = server
        .post_json("/passkey/register/approval", &json!({}))
        .await
        .json();
    let assertion = server.assert_with(&server.key, &approval).await;
    let start = server
        .post_json(
            "/passkey/register/start",
            &json!({ "approval": { "ceremony_id": approval["ceremony_id"], "credential": assertion }, "label": "phone" }),
        )
        .await;
    let reply = match start.status {
        StatusCode::OK => {
            let phone = Mutex::new(SoftAuthenticator::new(true));
            let options = serde_json::from_value(start.json()["options"].clone()).unwrap();
            let credential = webauthn_authenticator_rs::WebauthnAuthenticator::do_registration(
                &mut *phone.lock().await,
                url::Url::parse(SERVER_URL).unwrap(),
                options,
            )
            .unwrap();
            server
                .post_json(
                    "/passkey/register/finish",
                    &json!({ "ceremony_id": start.json()["ceremony_id"], "credential": credential }),
                )
                .await
        }
        _ => start,
    };
    reply.assert_oauth_error(503, "temporarily_unavailable");
    assert_eq!(server.stores.passkeys.list().await.unwrap().len(), 1);
    repair_directory(&dir, &aside);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        saved,
        "the file is as it was"
    );

    // The owner's passkey still approves, and the file reopens with it.
    let (client_id, tokens) = server.connected_client().await;
    assert!(!client_id.is_empty() && tokens["access_token"].is_string());
    let reopened = PasskeyFileStore::open(&path).unwrap();
    assert_eq!(reopened.list().await.unwrap().len(), 1);
}
