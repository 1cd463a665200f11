//! A revocation racing the issue of new tokens: the loser of a strict refresh race, or the replay of
//! a code being redeemed, revokes the grant while the winner is still storing its new pair. The
//! revocation marker (written before the sweep, checked after every issue) must leave the winner
//! with nothing that works.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use mcp_oauth::MemoryStore;
use mcp_oauth::store::{TokenKind, TokenRecord};

use crate::common::*;

/// Slow access-token inserts: whoever issues tokens pauses between consuming its code or refresh
/// token and storing the new ones, so a racing replay runs first.
struct SlowInserts;

#[async_trait]
impl StoreHooks for SlowInserts {
    async fn before_insert(&self, record: &TokenRecord) {
        if record.kind == TokenKind::AccessToken {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn slow_issuing_server() -> TestServer {
    let memory = MemoryStore::new();
    let stores = Stores {
        tokens: Arc::new(Hooked {
            store: memory.clone(),
            hooks: SlowInserts,
        }),
        clients: Arc::new(memory.clone()),
        passkeys: Arc::new(memory),
    };
    let mut config = config();
    config.refresh_grace_secs = 0;
    let server = TestServer::on(stores, config, mcp_routes());
    server.register_passkey(SETUP_TOKEN).await;
    server
}

/// No pair handed out by any of `replies` works.
async fn assert_nothing_survives(server: &TestServer, client_id: &str, replies: &[Reply]) {
    for reply in replies.iter().filter(|r| r.status == StatusCode::OK) {
        let tokens = reply.json();
        let access = tokens["access_token"].as_str().unwrap();
        assert_eq!(
            server.mcp(Some(access)).await.status,
            StatusCode::UNAUTHORIZED,
            "a token issued in the race outlived the revocation"
        );
        server
            .refresh(client_id, tokens["refresh_token"].as_str().unwrap())
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
}

#[tokio::test]
async fn a_refresh_token_thief_racing_its_owner_keeps_nothing() {
    let server = slow_issuing_server().await;
    let (client_id, tokens) = server.connected_client().await;
    let stolen = tokens["refresh_token"].as_str().unwrap();
    let (owner, thief) = tokio::join!(
        server.refresh(&client_id, stolen),
        server.refresh(&client_id, stolen)
    );
    assert!(
        [&owner, &thief]
            .iter()
            .any(|r| r.status == StatusCode::BAD_REQUEST),
        "one of them is reuse"
    );
    assert_nothing_survives(&server, &client_id, &[owner, thief]).await;
    assert_eq!(
        server.mcp(tokens["access_token"].as_str()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(server.oauth.admin().grants().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_code_replayed_while_it_is_redeemed_leaves_no_live_token() {
    let server = slow_issuing_server().await;
    let client_id = server.register_public_client().await;
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;
    let (first, replay) = tokio::join!(
        server.exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT),
        server.exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
    );
    assert!(
        [&first, &replay]
            .iter()
            .any(|r| r.status == StatusCode::BAD_REQUEST),
        "one of them is a replay"
    );
    assert_nothing_survives(&server, &client_id, &[first, replay]).await;
}
