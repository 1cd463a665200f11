//! Deleting a client while it is being issued tokens: a refresh or a code exchange that
//! authenticated the client before the deletion, and an approval of it, rewrite the grant record
//! just as the console lists the client's grants, so the listing misses that grant. Its tokens
//! must die with the client anyway; and a metadata-document client the owner approves again
//! after the deletion must work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::http::StatusCode;
use mcp_oauth::store::{TokenHash, TokenKind, TokenRecord, TokenStore};
use mcp_oauth::{ManualClock, McpOAuth, MemoryStore, OAuthConfig};
use tokio::sync::Notify;

use crate::common::*;

/// Holds the first grant record written after it is armed until the test lets it go: the moment
/// an issuance has minted its tokens, or an approval its code, and the grant's record is not in
/// the store (an issuance deletes it to write it again), so the console's listing cannot see it.
/// Records every access and refresh token minted.
#[derive(Default)]
struct HoldsGrantWrite {
    armed: AtomicBool,
    holding: Notify,
    release: Notify,
    minted: std::sync::Mutex<Vec<(TokenKind, TokenHash)>>,
}

#[async_trait]
impl StoreHooks for HoldsGrantWrite {
    async fn before_insert(&self, record: &TokenRecord) {
        if matches!(
            record.kind,
            TokenKind::AccessToken | TokenKind::RefreshToken
        ) {
            self.minted.lock().unwrap().push((record.kind, record.hash));
        }
        if record.kind == TokenKind::Grant && self.armed.swap(false, Ordering::SeqCst) {
            self.holding.notify_one();
            self.release.notified().await;
        }
    }
}

/// A server on a memory store whose token store holds a grant write when armed, on `clock`.
async fn hooked_server(
    config: OAuthConfig,
    clock: &ManualClock,
) -> (TestServer, MemoryStore, Arc<Hooked<HoldsGrantWrite>>) {
    let memory = MemoryStore::new();
    let tokens = Arc::new(Hooked {
        store: memory.clone(),
        hooks: HoldsGrantWrite::default(),
    });
    let oauth = Stores::of(memory.clone())
        .apply(McpOAuth::builder(config))
        .token_store(tokens.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let server = TestServer::serving(oauth, Stores::of(memory.clone()), mcp_routes());
    let registered = server.register_passkey(SETUP_TOKEN).await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.text());
    (server, memory, tokens)
}

/// Run `request` with the next grant write held, delete `client_id` through the owner's API
/// while it is held, then let the request finish. Returns the request's reply and how many
/// grants the deletion revoked.
async fn delete_during<F>(
    server: &TestServer,
    hooks: &HoldsGrantWrite,
    client_id: &str,
    request: F,
) -> (Reply, usize)
where
    F: std::future::Future<Output = Reply>,
{
    hooks.armed.store(true, Ordering::SeqCst);
    tokio::join!(request, async {
        hooks.holding.notified().await;
        let revoked = server
            .oauth
            .admin()
            .delete_client(client_id)
            .await
            .expect("the deletion succeeds");
        hooks.release.notify_one();
        revoked
    })
}

/// No access or refresh token minted in the test is still in the store.
async fn assert_no_token_lives(memory: &MemoryStore, hooks: &HoldsGrantWrite) {
    let minted = hooks.minted.lock().unwrap().clone();
    assert!(!minted.is_empty());
    for (kind, hash) in &minted {
        assert_eq!(
            TokenStore::get(memory, *kind, hash).await.unwrap(),
            None,
            "a {kind:?} of the deleted client is still live"
        );
    }
}

#[tokio::test]
async fn a_refresh_racing_the_clients_deletion_leaves_no_live_token() {
    let (server, memory, tokens) = hooked_server(config(), &ManualClock::new()).await;
    let (client_id, issued) = server.connected_client().await;
    let refresh_token = issued["refresh_token"].as_str().unwrap();

    let (reply, _) = delete_during(
        &server,
        &tokens.hooks,
        &client_id,
        server.refresh(&client_id, refresh_token),
    )
    .await;

    assert_no_token_lives(&memory, &tokens.hooks).await;
    reply.assert_oauth_error(400, "invalid_grant");
    server
        .mcp(issued["access_token"].as_str())
        .await
        .assert_oauth_error(401, "invalid_token");
    let grants = server.oauth.admin().grants().await.unwrap();
    assert!(grants.iter().all(|g| g.client_id != client_id));
}

#[tokio::test]
async fn a_code_exchange_racing_the_clients_deletion_leaves_no_live_token() {
    let (server, memory, tokens) = hooked_server(config(), &ManualClock::new()).await;
    let client_id = server.register_public_client().await;
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;

    let (reply, _) = delete_during(
        &server,
        &tokens.hooks,
        &client_id,
        server.exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT),
    )
    .await;

    assert_no_token_lives(&memory, &tokens.hooks).await;
    reply.assert_oauth_error(400, "invalid_grant");
    let grants = server.oauth.admin().grants().await.unwrap();
    assert!(grants.iter().all(|g| g.client_id != client_id));
}

#[cfg(feature = "cimd")]
mod metadata_document_clients {
    use axum::Router;
    use axum::http::header;
    use axum::routing::get;
    use serde_json::json;

    use super::*;

    /// Serves one Claude Code-like client metadata document on loopback.
    struct DocumentHost {
        client_id: String,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for DocumentHost {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl DocumentHost {
        async fn start() -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let client_id = format!("http://127.0.0.1:{port}/app");
            let document = json!({
                "client_id": client_id,
                "client_name": "Document Client",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            })
            .to_string();
            let app = Router::new().route(
                "/app",
                get(
                    move || async move { ([(header::CONTENT_TYPE, "application/json")], document) },
                ),
            );
            let task = tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Self { client_id, task }
        }
    }

    const REDIRECT: &str = "http://127.0.0.1:54321/callback";

    /// A server that fetches metadata documents from `docs` (plain http on loopback, its port).
    async fn server(
        docs: &DocumentHost,
        clock: &ManualClock,
    ) -> (TestServer, MemoryStore, Arc<Hooked<HoldsGrantWrite>>) {
        let mut config = config();
        config.cimd_allow_loopback_http_for_testing = true;
        let port = url::Url::parse(&docs.client_id)
            .ok()
            .and_then(|url| url.port())
            .expect("the document host's port");
        config.cimd_allowed_ports = vec![443, port];
        hooked_server(config, clock).await
    }

    /// Authorize, approve and exchange: the token response.
    async fn connect(server: &TestServer, client_id: &str) -> serde_json::Value {
        let (code, verifier) = server.code_for(client_id, REDIRECT).await;
        let reply = server.exchange(client_id, &code, &verifier, REDIRECT).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json()
    }

    #[tokio::test]
    async fn a_code_approved_as_its_client_is_deleted_is_refused() {
        let docs = DocumentHost::start().await;
        let (server, memory, tokens) = server(&docs, &ManualClock::new()).await;
        let client_id = &docs.client_id;
        let first = connect(&server, client_id).await;

        // The owner approves a second request while deleting the client: the approval has issued
        // its code, and the listing runs before its grant record is written.
        let (verifier, challenge) = pkce();
        let request_id = server
            .authorize(&format!(
                "{}&scope=mcp&resource={}",
                authorization_query(client_id, REDIRECT, &challenge),
                enc(RESOURCE)
            ))
            .await
            .unwrap_or_else(|r| panic!("authorize: {}", r.text()));
        tokens.hooks.armed.store(true, Ordering::SeqCst);
        let (redirect, revoked) = tokio::join!(server.approve(&request_id), async {
            tokens.hooks.holding.notified().await;
            let revoked = server.oauth.admin().delete_client(client_id).await;
            tokens.hooks.release.notify_one();
            revoked
        });
        assert_eq!(revoked.unwrap(), 1, "the first grant was listed");
        let code = query_param(&redirect, "code").unwrap();
        server
            .exchange(client_id, &code, &verifier, REDIRECT)
            .await
            .assert_oauth_error(400, "invalid_grant");
        assert_no_token_lives(&memory, &tokens.hooks).await;
        server
            .refresh(client_id, first["refresh_token"].as_str().unwrap())
            .await
            .assert_oauth_error(400, "invalid_grant");
        assert!(server.oauth.admin().grants().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_deleted_metadata_document_client_approved_again_works_until_deleted_again() {
        let docs = DocumentHost::start().await;
        let clock = ManualClock::new();
        let (server, memory, tokens) = server(&docs, &clock).await;
        let client_id = &docs.client_id;
        connect(&server, client_id).await;
        assert_eq!(
            server.oauth.admin().delete_client(client_id).await.unwrap(),
            1
        );

        // Approved again after the deletion, in a later second (one in the deletion's own second
        // counts as before it): a new grant, and it works.
        clock.advance(std::time::Duration::from_secs(1));
        let again = connect(&server, client_id).await;
        let call = server.mcp(again["access_token"].as_str()).await;
        assert_eq!(call.status, StatusCode::OK, "{}", call.text());
        let refreshed = server
            .refresh(client_id, again["refresh_token"].as_str().unwrap())
            .await;
        assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
        let grants = server.oauth.admin().grants().await.unwrap();
        assert_eq!(grants.len(), 1);

        // Deleted again while it refreshes: the listing misses its one grant, and the new
        // deletion's marker (not the first one's, older than this grant) revokes it.
        let refresh_token = refreshed.json()["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let (reply, revoked) = delete_during(
            &server,
            &tokens.hooks,
            client_id,
            server.refresh(client_id, &refresh_token),
        )
        .await;
        assert_eq!(revoked, 0, "the listing missed the grant");
        assert_no_token_lives(&memory, &tokens.hooks).await;
        reply.assert_oauth_error(400, "invalid_grant");
    }
}
