//! Shared test harness: an in-process server, a software passkey, and the steps of the OAuth flow.
#![allow(dead_code)]

mod hooked;
pub(crate) mod jose;
mod soft_key;

// Not every test target that includes this module uses them.
#[allow(unused_imports)]
pub(crate) use hooked::{Hooked, StoreHooks};
pub(crate) use soft_key::SoftAuthenticator;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::BodyExt;
use mcp_oauth::store::{ClientStore, PasskeyStore, TokenStore};
use mcp_oauth::webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};
use mcp_oauth::{ManualClock, McpOAuth, McpOAuthBuilder, MemoryStore, OAuthConfig, TokenInfo};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tower::ServiceExt;
use webauthn_authenticator_rs::WebauthnAuthenticator;

pub(crate) const SERVER_URL: &str = "http://localhost:8080";
pub(crate) const RESOURCE: &str = "http://localhost:8080/mcp";
pub(crate) const CLIENT_ID: &str = "claude-static";
pub(crate) const CLIENT_SECRET: &str = "static-client-secret-0123456789";
pub(crate) const SETUP_TOKEN: &str = "setup-token-for-tests-0123456789";
pub(crate) const LOOPBACK_REDIRECT: &str = "http://127.0.0.1:9999/callback";
pub(crate) const CLAUDE_REDIRECT: &str = "https://claude.ai/api/mcp/auth_callback";

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The OAuth error code of a JSON error response.
    pub(crate) fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    #[track_caller]
    pub(crate) fn assert_oauth_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert_eq!(self.error(), code, "body: {}", self.text());
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert!(self.json()["error_description"].is_string());
    }
}

/// PKCE verifier and S256 challenge.
pub(crate) fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub(crate) fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// Percent-encode a query or form value.
pub(crate) fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

/// The MCP stand-in behind the guard: echoes who called.
pub(crate) fn mcp_routes() -> Router {
    Router::new().route(
        "/mcp",
        any(|caller: TokenInfo| async move {
            axum::Json(json!({
                "client_id": caller.client_id,
                "scopes": caller.scopes,
                "grant_id": caller.grant_id.0,
            }))
        }),
    )
}

pub(crate) fn config() -> OAuthConfig {
    let mut config = OAuthConfig::with_defaults(
        SERVER_URL,
        CLIENT_ID,
        CLIENT_SECRET,
        "Test Server",
        "unused-in-memory.json",
    );
    config.setup_token = Some(SETUP_TOKEN.to_owned());
    config
}

/// The three stores a server runs on.
#[derive(Clone)]
pub(crate) struct Stores {
    pub(crate) tokens: Arc<dyn TokenStore>,
    pub(crate) clients: Arc<dyn ClientStore>,
    pub(crate) passkeys: Arc<dyn PasskeyStore>,
}

impl Stores {
    /// One backend for all three.
    pub(crate) fn of<S: TokenStore + ClientStore + PasskeyStore + Clone>(store: S) -> Self {
        Self {
            tokens: Arc::new(store.clone()),
            clients: Arc::new(store.clone()),
            passkeys: Arc::new(store),
        }
    }

    pub(crate) fn memory() -> Self {
        Self::of(MemoryStore::new())
    }

    pub(crate) fn apply(&self, builder: McpOAuthBuilder) -> McpOAuthBuilder {
        builder
            .token_store(Arc::clone(&self.tokens))
            .client_store(Arc::clone(&self.clients))
            .passkey_store(Arc::clone(&self.passkeys))
    }
}

/// An in-process server with the owner's software passkey.
pub(crate) struct TestServer {
    pub(crate) app: Router,
    pub(crate) oauth: McpOAuth,
    pub(crate) stores: Stores,
    pub(crate) key: Arc<Mutex<SoftAuthenticator>>,
    pub(crate) peer: SocketAddr,
}

impl TestServer {
    /// A server with no passkey yet, on in-memory stores.
    pub(crate) async fn new() -> Self {
        Self::with_config(config()).await
    }

    pub(crate) async fn with_config(config: OAuthConfig) -> Self {
        Self::with_routes(config, mcp_routes()).await
    }

    pub(crate) async fn with_routes(config: OAuthConfig, routes: Router) -> Self {
        Self::on(Stores::memory(), config, routes)
    }

    /// A server on the given stores: several built on the same stores act as one service.
    pub(crate) fn on(stores: Stores, config: OAuthConfig, routes: Router) -> Self {
        let oauth = stores
            .apply(McpOAuth::builder(config))
            .build()
            .expect("build");
        Self::serving(oauth, stores, routes)
    }

    /// A server on in-memory stores whose time is `clock`: a test advances it instead of waiting
    /// for something to expire.
    pub(crate) fn with_clock(config: OAuthConfig, clock: &ManualClock) -> Self {
        Self::on_clock(Stores::memory(), config, mcp_routes(), clock)
    }

    /// A server on the given stores whose time is `clock`; instances sharing stores share it too.
    pub(crate) fn on_clock(
        stores: Stores,
        config: OAuthConfig,
        routes: Router,
        clock: &ManualClock,
    ) -> Self {
        let oauth = stores
            .apply(McpOAuth::builder(config))
            .clock(clock.clone())
            .build()
            .expect("build");
        Self::serving(oauth, stores, routes)
    }

    /// A server for an already built layer over `stores`.
    pub(crate) fn serving(oauth: McpOAuth, stores: Stores, routes: Router) -> Self {
        Self {
            app: oauth.router(routes),
            oauth,
            stores,
            key: Arc::new(Mutex::new(SoftAuthenticator::new(true))),
            peer: "127.0.0.1:40000".parse().unwrap(),
        }
    }

    /// Another instance of the same service: same stores and configuration, the same owner's key.
    pub(crate) fn instance(stores: Stores, key: Arc<Mutex<SoftAuthenticator>>) -> Self {
        Self {
            key,
            ..Self::on(stores, config(), mcp_routes())
        }
    }

    /// A server whose owner has registered a passkey.
    pub(crate) async fn ready() -> Self {
        let server = Self::new().await;
        server.register_passkey(SETUP_TOKEN).await;
        server
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> Reply {
        self.send_from(self.peer, request).await
    }

    /// `request` from the client address `peer` (rate limits and failure budgets are per
    /// address).
    pub(crate) async fn send_from(&self, peer: SocketAddr, mut request: Request<Body>) -> Reply {
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub(crate) async fn post_form(&self, uri: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request =
            Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    pub(crate) async fn post_json(&self, uri: &str, body: &Value) -> Reply {
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ORIGIN, SERVER_URL)
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    pub(crate) async fn mcp(&self, token: Option<&str>) -> Reply {
        let mut request = Request::builder().method(Method::POST).uri("/mcp");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request.body(Body::from("{}")).unwrap()).await
    }

    /// Register a passkey with the setup token, through the page's JSON endpoints.
    pub(crate) async fn register_passkey(&self, setup_token: &str) -> Reply {
        let start = self
            .post_json(
                "/passkey/register/start",
                &json!({ "setup_token": setup_token, "label": "soft key" }),
            )
            .await;
        if start.status != StatusCode::OK {
            return start;
        }
        self.finish_registration(start.json()).await
    }

    pub(crate) async fn finish_registration(&self, start: Value) -> Reply {
        let options: CreationChallengeResponse =
            serde_json::from_value(start["options"].clone()).unwrap();
        let credential = self
            .key
            .lock()
            .await
            .do_registration(Url::parse(SERVER_URL).unwrap(), options)
            .expect("soft passkey registration");
        self.post_json(
            "/passkey/register/finish",
            &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
        )
        .await
    }

    /// Sign a challenge with the owner's passkey.
    pub(crate) async fn assert_with(
        &self,
        key: &Mutex<SoftAuthenticator>,
        challenge: &Value,
    ) -> Value {
        let options: RequestChallengeResponse =
            serde_json::from_value(challenge["options"].clone()).unwrap();
        let credential = key
            .lock()
            .await
            .do_authentication(Url::parse(SERVER_URL).unwrap(), options)
            .expect("soft passkey assertion");
        serde_json::to_value(credential).unwrap()
    }

    /// Register a client dynamically; returns the registration response.
    pub(crate) async fn register_client(&self, metadata: Value) -> Value {
        let reply = self.post_json("/register", &metadata).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        reply.json()
    }

    /// Register a client dynamically; returns its id.
    pub(crate) async fn client_id_for(&self, metadata: Value) -> String {
        self.register_client(metadata).await["client_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A request awaiting the owner's decision, for a client and redirect URI, with a fresh PKCE
    /// challenge; returns the request id.
    pub(crate) async fn pending_request(&self, client_id: &str, redirect_uri: &str) -> String {
        let (_, challenge) = pkce();
        self.authorize(&authorization_query(client_id, redirect_uri, &challenge))
            .await
            .unwrap_or_else(|r| panic!("authorize: {}", r.text()))
    }

    pub(crate) async fn register_public_client(&self) -> String {
        self.register_client(json!({
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "client_name": "Test Client",
        }))
        .await["client_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `GET /authorize`; on success returns the pending request id from the consent page.
    pub(crate) async fn authorize(&self, query: &str) -> Result<String, Reply> {
        let reply = self.get(&format!("/authorize?{query}")).await;
        if reply.status != StatusCode::OK {
            return Err(reply);
        }
        let page = reply.text();
        let marker = "data-request-id=\"";
        let start = page.find(marker).expect("consent page has data-request-id") + marker.len();
        let end = page[start..].find('"').unwrap() + start;
        Ok(page[start..end].to_owned())
    }

    /// Approve a pending request with the owner's passkey; returns the redirect URL.
    pub(crate) async fn approve(&self, request_id: &str) -> Url {
        let challenge = self
            .post_json("/authorize/challenge", &json!({ "request_id": request_id }))
            .await;
        assert_eq!(challenge.status, StatusCode::OK, "{}", challenge.text());
        let challenge = challenge.json();
        let credential = self.assert_with(&self.key, &challenge).await;
        let reply = self
            .post_json(
                "/authorize/approve",
                &json!({ "request_id": request_id, "ceremony_id": challenge["ceremony_id"], "credential": credential }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        Url::parse(reply.json()["redirect_to"].as_str().unwrap()).unwrap()
    }

    /// Authorize and approve a public client; returns (code, verifier).
    pub(crate) async fn code_for(&self, client_id: &str, redirect_uri: &str) -> (String, String) {
        let (verifier, challenge) = pkce();
        let query = format!(
            "response_type=code&client_id={}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=st&scope=mcp&resource={}",
            enc(client_id),
            enc(redirect_uri),
            enc(RESOURCE)
        );
        let request_id = self
            .authorize(&query)
            .await
            .unwrap_or_else(|r| panic!("authorize: {}", r.text()));
        let redirect = self.approve(&request_id).await;
        (query_param(&redirect, "code").expect("code"), verifier)
    }

    /// Exchange a public client's code.
    pub(crate) async fn exchange(
        &self,
        client_id: &str,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Reply {
        self.post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("client_id", client_id),
                ("redirect_uri", redirect_uri),
                ("resource", RESOURCE),
            ]),
            &[],
        )
        .await
    }

    /// A public client with tokens: (client_id, token response).
    pub(crate) async fn connected_client(&self) -> (String, Value) {
        let client_id = self.register_public_client().await;
        let (code, verifier) = self.code_for(&client_id, LOOPBACK_REDIRECT).await;
        let reply = self
            .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        (client_id, reply.json())
    }

    pub(crate) async fn refresh(&self, client_id: &str, refresh_token: &str) -> Reply {
        self.post_form(
            "/token",
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", client_id),
            ]),
            &[],
        )
        .await
    }
}

pub(crate) fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The test Redis, from `MCP_OAUTH_TEST_REDIS_URL`. Without it the caller skips, with one line on
/// stderr, unless `MCP_OAUTH_REQUIRE_REDIS=1` (CI), where a missing server is a failure.
pub(crate) fn redis_url() -> Option<String> {
    match std::env::var("MCP_OAUTH_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("MCP_OAUTH_REQUIRE_REDIS").as_deref() == Ok("1") => {
            panic!("MCP_OAUTH_REQUIRE_REDIS=1 but MCP_OAUTH_TEST_REDIS_URL is not set")
        }
        _ => {
            eprintln!(
                "skipping a Redis test: set MCP_OAUTH_TEST_REDIS_URL=redis://127.0.0.1:6379/ to run it"
            );
            None
        }
    }
}

/// The query of an authorization request: code flow, S256, `state=st`.
pub(crate) fn authorization_query(client_id: &str, redirect_uri: &str, challenge: &str) -> String {
    format!(
        "response_type=code&client_id={}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=st",
        enc(client_id),
        enc(redirect_uri)
    )
}

/// A real MCP server (rmcp's Streamable HTTP service) at `/mcp`.
pub(crate) fn rmcp_routes<S>(make: fn() -> S) -> Router
where
    S: rmcp::ServerHandler + Send + 'static,
{
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };

    let service = StreamableHttpService::new(
        move || Ok(make()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    Router::new().nest_service("/mcp", service)
}

impl TestServer {
    /// A JSON-RPC request to `/mcp` as a 2025-06-18 client sends it.
    pub(crate) async fn rpc(&self, token: &str, session: Option<&str>, body: Value) -> Reply {
        let mut request = Request::post("/mcp")
            .header("host", "localhost:8080")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        self.send(request.body(Body::from(body.to_string())).unwrap())
            .await
    }
}

/// The JSON-RPC message in an SSE or JSON response body.
pub(crate) fn jsonrpc_message(reply: &Reply) -> Value {
    let text = reply.text();
    let json = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .find(|data| data.starts_with('{'))
        .unwrap_or(text.trim());
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The refresh token of a token response.
pub(crate) fn refresh_token(tokens: &Value) -> String {
    tokens["refresh_token"].as_str().unwrap().to_owned()
}

/// The access token of a token response.
pub(crate) fn access_token(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// A `/token` request with the form `body` from the client address `peer`, `"ip:port"`.
pub(crate) async fn token_from(server: &TestServer, peer: &str, body: &str) -> Reply {
    let request = Request::post("/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap();
    server.send_from(peer.parse().unwrap(), request).await
}

/// A refresh with a made-up refresh token, authenticated by `assertion`: a client that passes
/// authentication gets `invalid_grant` (400), one that fails it `invalid_client` (401).
pub(crate) fn refresh_body(assertion: &str) -> String {
    form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", "not-a-refresh-token"),
        ("client_assertion_type", jose::JWT_BEARER),
        ("client_assertion", assertion),
    ])
}
