//! The server under test: the layer on one backend, served over TCP on 127.0.0.1, with the owner's
//! software passkey registered.

use std::net::SocketAddr;

use crate::soft_key::SoftAuthenticator;
use axum::routing::post;
use axum::{Json, Router};
use mcp_oauth::webauthn_rs::prelude::{CreationChallengeResponse, Url};
use mcp_oauth::{McpOAuth, MemoryStore, OAuthConfig, RedisStore, SqliteStore, TokenInfo};
use serde_json::json;
use tokio::sync::Mutex;
use webauthn_authenticator_rs::WebauthnAuthenticator;

use crate::client::Client;
use crate::redis_process::RedisProcess;
use crate::tally::Tally;

const SETUP_TOKEN: &str = "soak-setup-token-0123456789abcdef";

#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Memory,
    Sqlite,
    Redis,
}

impl Backend {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "memory" => Some(Self::Memory),
            "sqlite" => Some(Self::Sqlite),
            "redis" => Some(Self::Redis),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Redis => "redis",
        }
    }
}

pub(crate) struct Running {
    pub(crate) client: Client,
    pub(crate) key: Mutex<SoftAuthenticator>,
    serving: tokio::task::JoinHandle<()>,
    // Kept for as long as the server runs.
    _redis: Option<RedisProcess>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// The MCP stand-in behind the guard: answers with who called.
fn mcp_routes() -> Router {
    Router::new().route(
        "/mcp",
        post(|caller: TokenInfo| async move {
            Json(json!({ "jsonrpc": "2.0", "id": 1, "result": { "client": caller.client_id } }))
        }),
    )
}

impl Running {
    /// `None` when the backend cannot run here (no `redis-server`).
    pub(crate) async fn start(backend: Backend) -> Option<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let mut config = OAuthConfig::with_defaults(
            format!("http://localhost:{port}"),
            "soak-static",
            "soak-static-client-secret-0123456789",
            "Soak",
            dir.path().join("passkeys.json"),
        );
        config.setup_token = Some(SETUP_TOKEN.to_owned());
        // All clients come from one address: per-address limits would measure the limiter.
        config.rate_limits.enabled = false;
        // Strict rotation, so that reusing a rotated-out refresh token is refused at once.
        config.refresh_grace_secs = 0;
        let builder = McpOAuth::builder(config);
        let mut redis = None;
        let builder = match backend {
            // Room for every token of a long run: at the default capacity (100 000 tokens) the
            // store evicts, by design, and the check at the end would find evicted tokens
            // refused. (Approved clients are never evicted; unapproved ones are capped.)
            Backend::Memory => builder.stores(MemoryStore::with_capacity(4_000_000, 400_000)),
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("soak.db").display());
                builder.stores(SqliteStore::connect(&url).await.unwrap())
            }
            Backend::Redis => {
                let process = RedisProcess::start().await?;
                let store = RedisStore::connect(&process.url()).await.unwrap();
                redis = Some(process);
                builder.stores(store)
            }
        };
        let oauth = builder.build().unwrap();
        let app = oauth
            .router(mcp_routes())
            .into_make_service_with_connect_info::<SocketAddr>();
        let serving = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let running = Self {
            client: Client::new(port),
            key: Mutex::new(SoftAuthenticator::new(true)),
            serving,
            _redis: redis,
            _dir: dir,
        };
        running.register_passkey().await;
        Some(running)
    }

    async fn register_passkey(&self) {
        let tally = Tally::default();
        let start = self
            .client
            .post_json(
                "/passkey/register/start",
                &json!({ "setup_token": SETUP_TOKEN, "label": "soak" }),
                &tally,
            )
            .await;
        assert_eq!(start.status, 200, "{}", start.text());
        let start = start.json();
        let options: CreationChallengeResponse =
            serde_json::from_value(start["options"].clone()).unwrap();
        let credential = self
            .key
            .lock()
            .await
            .do_registration(Url::parse(&self.client.origin).unwrap(), options)
            .unwrap();
        let finish = self
            .client
            .post_json(
                "/passkey/register/finish",
                &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
                &tally,
            )
            .await;
        assert_eq!(finish.status, 200, "{}", finish.text());
    }
}
