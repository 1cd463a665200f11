//! The fuzz harness: one real server (the public router on a [`MemoryStore`], the owner's software
//! passkey already registered), a single-threaded runtime created once, and the invariants every
//! target asserts on what comes back.

// The tests' software passkey, which holds discoverable credentials as the server requires.
#[path = "../../tests/flows/common/soft_key.rs"]
mod soft_key;

use std::sync::{LazyLock, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt;
use mcp_oauth::webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};
use mcp_oauth::{McpOAuth, MemoryStore, OAuthConfig};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;

use soft_key::SoftAuthenticator;

pub mod assert;
pub mod edit;

pub const SERVER_URL: &str = "http://localhost:8080";
pub const RESOURCE: &str = "http://localhost:8080/mcp";
pub const RESOURCE_METADATA: &str =
    "http://localhost:8080/.well-known/oauth-protected-resource/mcp";
pub const STATIC_CLIENT_ID: &str = "fuzz-static";
pub const STATIC_CLIENT_SECRET: &str = "static-client-secret-0123456789";
pub const SETUP_TOKEN: &str = "setup-token-for-fuzzing-0123456789";
pub const LOOPBACK_REDIRECT: &str = "http://127.0.0.1:9999/callback";
pub const HTTPS_REDIRECT: &str = "https://claude.ai/api/mcp/auth_callback";

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} with a body that is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A code the owner approved, for the public client and [`LOOPBACK_REDIRECT`].
#[derive(Debug)]
pub struct LiveCode {
    pub code: String,
    pub verifier: String,
}

/// A passkey ceremony the server has started: its id and the challenge the authenticator signs.
#[derive(Debug)]
pub struct Ceremony {
    pub ceremony_id: String,
    pub challenge: String,
}

/// The server and what the harness set up on it.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    app: Router,
    key: Mutex<SoftAuthenticator>,
    /// A dynamically registered public client whose only redirect URI is [`LOOPBACK_REDIRECT`].
    pub public_client: String,
    /// A valid access token for the public client.
    pub access_token: String,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(Harness::start);

/// The one server every run of a target talks to.
pub fn harness() -> &'static Harness {
    &HARNESS
}

/// The S256 challenge of a PKCE verifier.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `application/x-www-form-urlencoded` encoding of name/value pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

fn config() -> OAuthConfig {
    let mut config = OAuthConfig::with_defaults(
        SERVER_URL,
        STATIC_CLIENT_ID,
        STATIC_CLIENT_SECRET,
        "Fuzz Server",
        "unused-in-memory.json",
    );
    config.setup_token = Some(SETUP_TOKEN.to_owned());
    // The fuzzer sends far more requests per second than any limit allows.
    config.rate_limits.enabled = false;
    config
}

/// The MCP stand-in behind the guard: answers whoever got through.
fn mcp_routes() -> Router {
    Router::new().route("/mcp", any(|| async { "ok" }))
}

impl Harness {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Bounded, so a run that registers clients all day does not grow without end.
        let store = std::sync::Arc::new(MemoryStore::with_capacity(20_000, 20_000));
        let oauth = McpOAuth::builder(config())
            .token_store(store.clone())
            .client_store(store.clone())
            .passkey_store(store)
            .build()
            .expect("build the server");
        let mut harness = Self {
            runtime,
            app: oauth.router(mcp_routes()),
            key: Mutex::new(SoftAuthenticator::new(true)),
            public_client: String::new(),
            access_token: String::new(),
        };
        harness.register_passkey();
        let client = harness.post_json(
            "/register",
            json!({
                "redirect_uris": [LOOPBACK_REDIRECT],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "client_name": "Fuzz client",
            })
            .to_string()
            .into_bytes(),
        );
        assert_eq!(client.status, StatusCode::CREATED, "{}", client.text());
        harness.public_client = client.json()["client_id"]
            .as_str()
            .expect("client_id")
            .to_owned();
        harness.access_token = harness.live_tokens().0;
        harness
    }

    /// Send one request through the router, as if from 127.0.0.1.
    pub fn send(&self, mut request: Request<Body>) -> Reply {
        request
            .extensions_mut()
            .insert(ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                40000,
            ))));
        self.runtime.block_on(async {
            let response = self.app.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
                .to_vec();
            Reply {
                status,
                headers,
                body,
            }
        })
    }

    pub fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).expect("request"))
    }

    pub fn post_form(&self, path: &str, body: Vec<u8>) -> Reply {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        self.send(request)
    }

    /// A JSON POST as the server's own pages send it (same origin).
    pub fn post_json(&self, path: &str, body: Vec<u8>) -> Reply {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ORIGIN, SERVER_URL)
            .body(Body::from(body))
            .expect("request");
        self.send(request)
    }

    fn ok_json(&self, path: &str, body: Value) -> Value {
        let reply = self.post_json(path, body.to_string().into_bytes());
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        reply.json()
    }

    fn register_passkey(&self) {
        let start = self.ok_json(
            "/passkey/register/start",
            json!({ "setup_token": SETUP_TOKEN, "label": "soft key" }),
        );
        let options: CreationChallengeResponse =
            serde_json::from_value(start["options"].clone()).expect("creation options");
        let credential = self
            .key
            .lock()
            .expect("key")
            .do_registration(Url::parse(SERVER_URL).expect("url"), options)
            .expect("soft passkey registration");
        self.ok_json(
            "/passkey/register/finish",
            json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
        );
    }

    /// Sign an assertion challenge (`{ceremony_id, options}`) with the owner's passkey.
    fn sign(&self, challenge: &Value) -> Value {
        let options: RequestChallengeResponse =
            serde_json::from_value(challenge["options"].clone()).expect("request options");
        let credential = self
            .key
            .lock()
            .expect("key")
            .do_authentication(Url::parse(SERVER_URL).expect("url"), options)
            .expect("soft passkey assertion");
        serde_json::to_value(credential).expect("credential JSON")
    }

    /// A pending authorization request of the public client with this PKCE challenge.
    pub fn pending_request(&self, challenge: &str) -> String {
        let query = form(&[
            ("response_type", "code"),
            ("client_id", &self.public_client),
            ("redirect_uri", LOOPBACK_REDIRECT),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", "st"),
            ("resource", RESOURCE),
        ]);
        let page = self.get(&format!("/authorize?{query}"));
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        request_id_of(&page.text()).expect("consent page has a request id")
    }

    /// An approval ceremony started for a pending request.
    pub fn approval_ceremony(&self, request_id: &str) -> (Ceremony, Value) {
        let challenge = self.ok_json("/authorize/challenge", json!({ "request_id": request_id }));
        (ceremony_of(&challenge), challenge)
    }

    /// A fresh code, approved by the owner's passkey.
    pub fn live_code(&self) -> LiveCode {
        let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let request_id = self.pending_request(&s256(&verifier));
        let (_, challenge) = self.approval_ceremony(&request_id);
        let credential = self.sign(&challenge);
        let decision = self.ok_json(
            "/authorize/approve",
            json!({ "request_id": request_id, "ceremony_id": challenge["ceremony_id"], "credential": credential }),
        );
        let redirect = Url::parse(decision["redirect_to"].as_str().expect("redirect_to"))
            .expect("redirect URL");
        let code = redirect
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("code in the redirect");
        LiveCode { code, verifier }
    }

    /// A fresh (access, refresh) pair for the public client.
    pub fn live_tokens(&self) -> (String, String) {
        let live = self.live_code();
        let reply = self.post_form(
            "/token",
            form(&[
                ("grant_type", "authorization_code"),
                ("code", &live.code),
                ("code_verifier", &live.verifier),
                ("client_id", &self.public_client),
                ("redirect_uri", LOOPBACK_REDIRECT),
                ("resource", RESOURCE),
            ])
            .into_bytes(),
        );
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let tokens = reply.json();
        let field = |name: &str| tokens[name].as_str().expect("token field").to_owned();
        (field("access_token"), field("refresh_token"))
    }

    /// An assertion ceremony started to approve enrolling another passkey (nothing signed yet).
    pub fn approval_for_enrolment(&self) -> Ceremony {
        ceremony_of(&self.ok_json("/passkey/register/approval", json!({})))
    }

    /// A pending request, an approval ceremony for it, and the owner's real signed assertion:
    /// (request id, ceremony id, credential JSON).
    pub fn signed_approval(&self) -> (String, String, Value) {
        let request_id =
            self.pending_request(&s256("a-verifier-for-signed-approvals-0123456789abcdef"));
        let (ceremony, challenge) = self.approval_ceremony(&request_id);
        let credential = self.sign(&challenge);
        (request_id, ceremony.ceremony_id, credential)
    }

    /// A registration ceremony for another passkey and a real authenticator's answer to it, from a
    /// fresh software key: (ceremony, credential JSON).
    pub fn signed_enrolment(&self) -> (Ceremony, Value) {
        let start = self.start_enrolment();
        let options: CreationChallengeResponse =
            serde_json::from_value(start["options"].clone()).expect("creation options");
        let created = SoftAuthenticator::new(true)
            .do_registration(Url::parse(SERVER_URL).expect("url"), options)
            .expect("soft passkey registration");
        (
            ceremony_of(&start),
            serde_json::to_value(created).expect("credential JSON"),
        )
    }

    /// A registration ceremony for a second passkey, approved by the owner's passkey.
    pub fn enrolment_ceremony(&self) -> Ceremony {
        ceremony_of(&self.start_enrolment())
    }

    /// `/passkey/register/start`, approved by the owner's passkey: `{ceremony_id, options}`.
    fn start_enrolment(&self) -> Value {
        let approval = self.ok_json("/passkey/register/approval", json!({}));
        let credential = self.sign(&approval);
        self.ok_json(
            "/passkey/register/start",
            json!({ "approval": { "ceremony_id": approval["ceremony_id"], "credential": credential }, "label": "second" }),
        )
    }
}

fn ceremony_of(started: &Value) -> Ceremony {
    Ceremony {
        ceremony_id: started["ceremony_id"]
            .as_str()
            .expect("ceremony_id")
            .to_owned(),
        challenge: started["options"]["publicKey"]["challenge"]
            .as_str()
            .expect("challenge")
            .to_owned(),
    }
}

/// The pending request id on a consent page.
pub fn request_id_of(page: &str) -> Option<String> {
    let marker = "data-request-id=\"";
    let start = page.find(marker)? + marker.len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_owned())
}
