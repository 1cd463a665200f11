//! Audit events reach the application's callback, cover what matters, and carry no secret.

use std::sync::{Arc, Mutex};

use mcp_oauth::{AuditEvent, ManualClock, McpOAuth};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn every_security_event_is_reported_without_secrets() {
    let events: Arc<Mutex<Vec<AuditEvent>>> = Arc::default();
    let sink = Arc::clone(&events);
    let mut config = config();
    config.refresh_grace_secs = 1;
    let stores = Stores::memory();
    let clock = ManualClock::new();
    let oauth = stores
        .apply(McpOAuth::builder(config))
        .on_audit(move |event| sink.lock().unwrap().push(event.clone()))
        .clock(clock.clone())
        .build()
        .unwrap();
    let server = TestServer::serving(oauth, stores, mcp_routes());

    server.register_passkey("not-the-setup-token-at-all").await;
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let rotated = server.refresh(&client_id, refresh).await.json();
    server.refresh(&client_id, refresh).await; // within grace: the same pair again
    // A second grant: its token comes back within grace after the chain moved on, which revokes.
    let (second_client, stale) = server.connected_client().await;
    let stale = stale["refresh_token"].as_str().unwrap();
    let moved_on = server.refresh(&second_client, stale).await.json();
    server
        .refresh(&second_client, moved_on["refresh_token"].as_str().unwrap())
        .await;
    server.refresh(&second_client, stale).await;
    clock.advance(std::time::Duration::from_secs(2));
    server.refresh(&client_id, refresh).await; // after grace: revokes
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
    server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await;
    server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await; // replay
    let request_id = server.pending_request(&client_id, LOOPBACK_REDIRECT).await;
    server
        .post_json("/authorize/deny", &json!({ "request_id": request_id }))
        .await;
    let (other, tokens) = server.connected_client().await;
    server
        .post_form(
            "/revoke",
            &form(&[
                ("token", tokens["access_token"].as_str().unwrap()),
                ("client_id", &other),
            ]),
            &[],
        )
        .await;

    let events = events.lock().unwrap().clone();
    let names: Vec<&str> = events.iter().map(AuditEvent::name).collect();
    for expected in [
        "setup_token_refused",
        "passkey_registered",
        "client_registered",
        "authorization_approved",
        "code_redeemed",
        "refresh_rotated",
        "refresh_redelivered",
        "refresh_stale_retry_revoked",
        "refresh_reuse_revoked",
        "code_replayed",
        "authorization_denied",
        "token_revoked",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(events.contains(&AuditEvent::AuthorizationDenied {
        client_id: client_id.clone()
    }));
    let printed = format!("{events:?}");
    for secret in [
        refresh,
        rotated["refresh_token"].as_str().unwrap(),
        &code,
        &verifier,
        SETUP_TOKEN,
        CLIENT_SECRET,
    ] {
        assert!(!printed.contains(secret), "an audit event carried a secret");
    }
}
