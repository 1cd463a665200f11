//! Shared by the benchmarks (`benches/oauth.rs`) and the benchmark examples (`bench_server`,
//! `bench_calls`): the layer on a chosen backend with rate limits off, a software passkey, and the
//! OAuth flow run through the real endpoints to get tokens shaped exactly as clients get them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The tests' software passkey, which holds discoverable credentials as the server requires.
#[path = "../../tests/flows/common/soft_key.rs"]
mod soft_key;

use soft_key::SoftAuthenticator;

// The tests' client keys and assertions (`private_key_jwt`).
#[path = "../../tests/flows/common/jose.rs"]
pub(crate) mod jose;

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt;
use mcp_oauth::webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};
use mcp_oauth::{McpOAuth, McpOAuthBuilder, MemoryStore, OAuthConfig};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use webauthn_authenticator_rs::WebauthnAuthenticator;

pub(crate) const SERVER_URL: &str = "http://localhost:8080";
pub(crate) const RESOURCE: &str = "http://localhost:8080/mcp";
const SETUP_TOKEN: &str = "setup-token-for-benchmarks-0123456789";
pub(crate) const REDIRECT: &str = "http://127.0.0.1:9999/callback";

/// Where tokens and clients are kept.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Memory,
    /// A SQLite file at this path (created).
    #[cfg(feature = "sqlite")]
    Sqlite(String),
    /// A Redis URL; keys get a fresh prefix.
    #[cfg(feature = "redis")]
    Redis(String),
    /// Another backend with its token store behind a `CachingStore` (5 seconds).
    #[cfg(feature = "caching")]
    Cached(Box<Backend>),
}

impl Backend {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => "sqlite",
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
            #[cfg(feature = "caching")]
            Self::Cached(_) => "cached",
        }
    }

    /// The builder with this backend's stores (passkeys too).
    async fn apply(&self, builder: McpOAuthBuilder) -> McpOAuthBuilder {
        match self {
            // Room for every token a long load run mints: its refresh runs share this store with
            // the guard runs, whose access token must not be pushed out.
            Self::Memory => builder.stores(MemoryStore::with_capacity(8_000_000, 100_000)),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(path) => builder.stores(open_sqlite(path).await),
            #[cfg(feature = "redis")]
            Self::Redis(url) => builder.stores(open_redis(url).await),
            #[cfg(feature = "caching")]
            Self::Cached(inner) => match &**inner {
                #[cfg(feature = "sqlite")]
                Self::Sqlite(path) => {
                    let store = open_sqlite(path).await;
                    cached(builder.stores(store.clone()), store)
                }
                #[cfg(feature = "redis")]
                Self::Redis(url) => {
                    let store = open_redis(url).await;
                    cached(builder.stores(store.clone()), store)
                }
                other => panic!("the benchmarks cache SQLite and Redis, not {other:?}"),
            },
        }
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(path: &str) -> mcp_oauth::SqliteStore {
    let store = mcp_oauth::SqliteStore::connect(&format!("sqlite://{path}?mode=rwc"))
        .await
        .expect("open SQLite");
    store.migrate().await.expect("migrate");
    store
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str) -> mcp_oauth::RedisStore {
    let prefix = format!("bench{:08x}:", rand::random::<u32>());
    mcp_oauth::RedisStore::connect(url)
        .await
        .expect("connect to Redis")
        .with_prefix(prefix)
}

/// The builder with `store`'s access tokens remembered for 5 seconds in front of it.
#[cfg(feature = "caching")]
fn cached(builder: McpOAuthBuilder, store: impl mcp_oauth::TokenStore) -> McpOAuthBuilder {
    builder.token_store(std::sync::Arc::new(mcp_oauth::CachingStore::new(
        std::sync::Arc::new(store),
        std::time::Duration::from_secs(5),
    )))
}

/// The MCP stand-in: the same handler with or without the guard.
pub(crate) fn mcp_route() -> Router {
    Router::new().route(
        "/mcp",
        any(|| async { ([(header::CONTENT_TYPE, "application/json")], "{}") }),
    )
}

/// A router as `axum::serve` runs it: `with_state` turns every handler into its service once,
/// where a router called directly would do it again on every request.
pub(crate) fn served(router: Router) -> Router {
    router.with_state(())
}

/// The layer on one backend, its owner's passkey, and one registered public client.
pub(crate) struct Bench {
    pub(crate) oauth: McpOAuth,
    /// The full router: OAuth endpoints and `/mcp` behind the guard.
    pub(crate) full: Router,
    /// `/mcp` behind the bearer guard alone.
    pub(crate) guarded: Router,
    pub(crate) client_id: String,
    key: SoftAuthenticator,
}

/// One client's tokens.
#[derive(Clone, Debug)]
pub(crate) struct Tokens {
    pub(crate) access: String,
    pub(crate) refresh: String,
}

/// The configured confidential client, which signs client assertions in the `private_key_jwt`
/// benchmark.
pub(crate) const STATIC_CLIENT: &str = "bench-static";

impl Bench {
    pub(crate) async fn start(backend: &Backend) -> Self {
        Self::start_with(backend, None).await
    }

    /// The configured client authenticating with assertions signed by `key` (its public key set
    /// configured inline), instead of a registered public client.
    pub(crate) async fn start_signing(backend: &Backend, key: &jose::TestKey) -> Self {
        let mut bench = Self::start_with(backend, Some(key.jwks().to_string())).await;
        bench.client_id = STATIC_CLIENT.to_owned();
        bench
    }

    async fn start_with(backend: &Backend, client_jwks: Option<String>) -> Self {
        let mut config = OAuthConfig::with_defaults(
            SERVER_URL,
            STATIC_CLIENT,
            "static-client-secret-0123456789",
            "Bench Server",
            "unused-in-memory.json",
        );
        config.setup_token = Some(SETUP_TOKEN.to_owned());
        config.rate_limits.enabled = false;
        config.client_jwks = client_jwks;
        // One approval per token pair in the load runs: no refresh is a reuse.
        let oauth = backend
            .apply(McpOAuth::builder(config))
            .await
            .build()
            .expect("build");
        let full = served(oauth.router(mcp_route()));
        let guarded = served(mcp_route().layer(oauth.bearer_layer()));
        let mut bench = Self {
            oauth,
            full,
            guarded,
            client_id: String::new(),
            key: SoftAuthenticator::new(true),
        };
        bench.register_passkey().await;
        bench.client_id = bench.register_client().await;
        bench
    }

    async fn register_passkey(&mut self) {
        let start = post_json(
            &self.full,
            "/passkey/register/start",
            &json!({ "setup_token": SETUP_TOKEN, "label": "soft key" }),
        )
        .await;
        let options: CreationChallengeResponse =
            serde_json::from_value(start["options"].clone()).unwrap();
        let credential = self
            .key
            .do_registration(Url::parse(SERVER_URL).unwrap(), options)
            .expect("soft passkey registration");
        post_json(
            &self.full,
            "/passkey/register/finish",
            &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
        )
        .await;
    }

    /// Register a public client dynamically; returns its id.
    pub(crate) async fn register_client(&self) -> String {
        let (status, body) = send(&self.full, register_request()).await;
        assert_eq!(status, StatusCode::CREATED);
        string_field(&body, "client_id")
    }

    /// Authorize and approve with the passkey; returns (code, verifier).
    pub(crate) async fn code(&mut self) -> (String, String) {
        let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let query = format!(
            "response_type=code&client_id={}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=st&scope=mcp&resource={}",
            enc(&self.client_id),
            enc(REDIRECT),
            enc(RESOURCE)
        );
        let (status, page) = send(
            &self.full,
            Request::get(format!("/authorize?{query}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let page = String::from_utf8_lossy(&page);
        let marker = "data-request-id=\"";
        let at = page.find(marker).unwrap() + marker.len();
        let request_id = page[at..at + page[at..].find('"').unwrap()].to_owned();
        let challenge = post_json(
            &self.full,
            "/authorize/challenge",
            &json!({ "request_id": request_id }),
        )
        .await;
        let options: RequestChallengeResponse =
            serde_json::from_value(challenge["options"].clone()).unwrap();
        let credential = self
            .key
            .do_authentication(Url::parse(SERVER_URL).unwrap(), options)
            .expect("soft passkey assertion");
        let approved = post_json(
            &self.full,
            "/authorize/approve",
            &json!({ "request_id": request_id, "ceremony_id": challenge["ceremony_id"], "credential": credential }),
        )
        .await;
        let redirect = Url::parse(approved["redirect_to"].as_str().unwrap()).unwrap();
        let code = redirect
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        (code, verifier)
    }

    /// `POST /token` exchanging a code.
    pub(crate) fn exchange_request(&self, code: &str, verifier: &str) -> Request<Body> {
        form_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
            ("client_id", &self.client_id),
            ("redirect_uri", REDIRECT),
            ("resource", RESOURCE),
        ])
    }

    /// A fresh grant: the whole flow through the endpoints.
    pub(crate) async fn connect(&mut self) -> Tokens {
        let (code, verifier) = self.code().await;
        let (status, body) = send(&self.full, self.exchange_request(&code, &verifier)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        Tokens {
            access: string_field(&body, "access_token"),
            refresh: string_field(&body, "refresh_token"),
        }
    }

    /// `POST /token` with the refresh grant.
    pub(crate) fn refresh_request(&self, refresh_token: &str) -> Request<Body> {
        refresh_request(&self.client_id, refresh_token)
    }

    /// A fresh grant for the configured client, its code exchanged with an assertion.
    pub(crate) async fn connect_signed(&mut self, key: &jose::TestKey) -> Tokens {
        let (code, verifier) = self.code().await;
        let assertion = key.sign(&jose::claims(&self.client_id, jose::now()));
        let request = form_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("client_id", &self.client_id),
            ("redirect_uri", REDIRECT),
            ("resource", RESOURCE),
            ("client_assertion_type", jose::JWT_BEARER),
            ("client_assertion", &assertion),
        ]);
        let (status, body) = send(&self.full, request).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        Tokens {
            access: string_field(&body, "access_token"),
            refresh: string_field(&body, "refresh_token"),
        }
    }

    /// One refresh authenticated by `assertion`; returns the rotated pair.
    pub(crate) async fn refresh_signed(&self, refresh_token: &str, assertion: &str) -> Tokens {
        let request = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "grant_type=refresh_token&refresh_token={refresh_token}&client_id={}\
                 &client_assertion_type={}&client_assertion={assertion}",
                self.client_id,
                enc(jose::JWT_BEARER)
            )))
            .unwrap();
        let (status, body) = send(&self.full, request).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        Tokens {
            access: string_field(&body, "access_token"),
            refresh: string_field(&body, "refresh_token"),
        }
    }

    /// One refresh; returns the rotated pair.
    pub(crate) async fn refresh(&self, refresh_token: &str) -> Tokens {
        let (status, body) = send(&self.full, self.refresh_request(refresh_token)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        Tokens {
            access: string_field(&body, "access_token"),
            refresh: string_field(&body, "refresh_token"),
        }
    }
}

pub(crate) fn refresh_request(client_id: &str, refresh_token: &str) -> Request<Body> {
    // Tokens and client ids are base64url: nothing to percent-encode, so the client side stays a
    // small part of the instructions counted per refresh.
    Request::post("/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "grant_type=refresh_token&refresh_token={refresh_token}&client_id={client_id}"
        )))
        .unwrap()
}

/// Send a request as if from `127.0.0.1:40000`; returns the status and the whole body.
pub(crate) async fn send(app: &Router, mut request: Request<Body>) -> (StatusCode, Bytes) {
    let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// `POST /mcp`, with a bearer token or without.
pub(crate) fn mcp_request(token: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/mcp").header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::from("{}")).unwrap()
}

/// `POST /register` for a public client, as Claude Code sends it.
pub(crate) fn register_request() -> Request<Body> {
    json_request(
        "/register",
        &json!({
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "Bench Client",
        }),
    )
}

/// A string field of a flat JSON object whose values need no escapes (tokens, ids): a search
/// rather than a parse, so the client side adds little to the server's instruction counts.
pub(crate) fn string_field(body: &[u8], name: &str) -> String {
    let body = std::str::from_utf8(body).unwrap();
    let start = body
        .find(&format!("\"{name}\":\""))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        + name.len()
        + 4;
    let end = start + body[start..].find('"').unwrap();
    body[start..end].to_owned()
}

fn form_request(pairs: &[(&str, &str)]) -> Request<Body> {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    Request::post("/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(serializer.finish()))
        .unwrap()
}

fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn json_request(uri: &str, body: &Value) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, SERVER_URL)
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn post_json(app: &Router, uri: &str, body: &Value) -> Value {
    let (status, bytes) = send(app, json_request(uri, body)).await;
    assert!(
        status.is_success(),
        "{uri}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap()
}
