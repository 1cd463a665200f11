//! A live server on a loopback port: the OAuth layer in front of a real rmcp MCP server, the
//! owner's software passkey, a record of every request the server saw, and the browser's part of
//! the flow (consent page, passkey approval).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};

use crate::soft_key::SoftAuthenticator;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use mcp_oauth::webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};
use mcp_oauth::{McpOAuth, MemoryStore, OAuthConfig, TokenInfo};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;

pub(crate) const CLIENT_ID: &str = "pre-registered";
pub(crate) const CLIENT_SECRET: &str = "pre-registered-secret-0123456789";
pub(crate) const SERVER_NAME: &str = "live-whoami";

/// The MCP server behind the layer: one tool that reports the caller's token.
#[derive(Clone)]
struct Whoami {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Whoami {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "The OAuth client the access token was issued to, its scopes and expiry, and whether the owner approved it, as JSON."
    )]
    async fn whoami(&self, Extension(parts): Extension<Parts>) -> Result<String, ErrorData> {
        let info = parts
            .extensions
            .get::<TokenInfo>()
            .ok_or_else(|| ErrorData::internal_error("no token info: is /mcp guarded?", None))?;
        Ok(json!({
            "client_id": info.client_id,
            "scopes": info.scopes,
            "expires_at": info.expires_at.0,
            "approved_by_owner": info.is_approved_by_owner(),
        })
        .to_string())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Whoami {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(SERVER_NAME, "0.0.0"))
    }
}

/// One request as the server saw it, with the status it answered.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    pub(crate) path: String,
    /// Query pairs (the authorization request).
    pub(crate) query: Vec<(String, String)>,
    /// Form pairs of a form body (`/token`, `/revoke`).
    pub(crate) form: Vec<(String, String)>,
    /// The JSON body of `POST /register`.
    pub(crate) registration: Option<Value>,
    /// The JSON-RPC method of an MCP POST.
    pub(crate) rpc_method: Option<String>,
    /// The `Authorization` scheme sent, if any (`Bearer`, `Basic`).
    pub(crate) auth_scheme: Option<String>,
    pub(crate) status: StatusCode,
}

impl Seen {
    pub(crate) fn form(&self, name: &str) -> Option<&str> {
        pair(&self.form, name)
    }

    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        pair(&self.query, name)
    }

    pub(crate) fn is_token_grant(&self, grant_type: &str) -> bool {
        self.method == Method::POST
            && self.path == "/token"
            && self.form("grant_type") == Some(grant_type)
    }

    /// `METHOD /path STATUS`, for asserting sequences.
    pub(crate) fn line(&self) -> String {
        format!("{} {} {}", self.method, self.path, self.status.as_u16())
    }
}

fn pair<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn pairs(input: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(input)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

type Log = Arc<StdMutex<Vec<Seen>>>;

/// Records every request (its body is buffered and passed on unchanged) and the answer's status.
async fn record(State(log): State<Log>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query = parts
        .uri
        .query()
        .map(|q| pairs(q.as_bytes()))
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let form = if content_type.starts_with("application/x-www-form-urlencoded") {
        pairs(&bytes)
    } else {
        Vec::new()
    };
    let json: Option<Value> = if content_type.starts_with("application/json") {
        serde_json::from_slice(&bytes).ok()
    } else {
        None
    };
    let registration = json.clone().filter(|_| path == "/register");
    let rpc_method = json
        .filter(|_| path.starts_with("/mcp"))
        .and_then(|v| v.get("method").and_then(Value::as_str).map(str::to_owned));
    let auth_scheme = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next())
        .map(str::to_owned);
    let method = parts.method.clone();
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    log.lock().unwrap().push(Seen {
        method,
        path,
        query,
        form,
        registration,
        rpc_method,
        auth_scheme,
        status: response.status(),
    });
    response
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.body))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    pub(crate) fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        self
    }
}

/// The layer and the MCP server, listening on `127.0.0.1:{port}`, known as `http://localhost:{port}`.
pub(crate) struct LiveServer {
    /// `http://localhost:{port}`: the issuer and the passkey origin.
    pub(crate) url: String,
    /// `{url}/mcp`.
    pub(crate) mcp_url: String,
    pub(crate) oauth: McpOAuth,
    key: Mutex<SoftAuthenticator>,
    log: Log,
    /// A browser-like client: no redirects followed, no proxy.
    http: reqwest::Client,
    task: JoinHandle<()>,
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LiveServer {
    /// Start a server (configured by `configure`) and register the owner's passkey with the setup
    /// token from [`McpOAuth::setup_url`].
    pub(crate) async fn start(configure: impl FnOnce(&mut OAuthConfig)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // A passkey relying party is a host name, never an IP address.
        let url = format!("http://localhost:{port}");
        let mut config = OAuthConfig::with_defaults(
            url.clone(),
            CLIENT_ID,
            CLIENT_SECRET,
            "Live Test Server",
            "unused-with-memory-store.json",
        );
        configure(&mut config);
        let oauth = McpOAuth::builder(config)
            .stores(MemoryStore::new())
            .build()
            .expect("build the layer");

        // As the demo serves it: stateless, JSON responses (MCP 2026-07-28).
        let mcp_service = StreamableHttpService::new(
            || Ok(Whoami::new()),
            Arc::new(NeverSessionManager::default()),
            StreamableHttpServerConfig::default()
                .with_allowed_hosts(["localhost", "127.0.0.1"])
                .with_legacy_session_mode(false)
                .with_json_response(true),
        );
        let log: Log = Arc::default();
        let app = oauth
            .router(Router::new().nest_service("/mcp", mcp_service))
            .layer(axum::middleware::from_fn_with_state(log.clone(), record));
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });

        let server = Self {
            mcp_url: format!("{url}/mcp"),
            url,
            oauth,
            key: Mutex::new(SoftAuthenticator::new(true)),
            log,
            http: http_client(),
            task,
        };
        server.register_owner_passkey().await;
        server
    }

    /// The owner registers a passkey through the registration page's JSON endpoints.
    async fn register_owner_passkey(&self) {
        let setup_url = self
            .oauth
            .setup_url()
            .await
            .unwrap()
            .expect("a setup token while no passkey exists");
        let setup_token = setup_url
            .split_once("#setup_token=")
            .expect("the setup URL carries the token in its fragment")
            .1;
        let start = self
            .page_api(
                "/passkey/register/start",
                &json!({ "setup_token": setup_token, "label": "soft key" }),
            )
            .await
            .expect(200)
            .json();
        let options: CreationChallengeResponse =
            serde_json::from_value(start["options"].clone()).unwrap();
        let credential = self
            .key
            .lock()
            .await
            .do_registration(self.origin(), options)
            .expect("soft passkey registration");
        let finish = self
            .page_api(
                "/passkey/register/finish",
                &json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
            )
            .await
            .expect(200);
        assert_eq!(finish.json()["status"], "registered");
        assert!(self.oauth.setup_url().await.unwrap().is_none());
        self.log.lock().unwrap().clear();
    }

    fn origin(&self) -> Url {
        Url::parse(&self.url).unwrap()
    }

    /// Every request seen so far, in the order the answers went out.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// `METHOD /path STATUS` of every request seen, for failure messages.
    pub(crate) fn trace(&self) -> String {
        self.seen()
            .iter()
            .map(Seen::line)
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    /// `GET` an absolute URL, with extra headers.
    pub(crate) async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.http.get(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request).await
    }

    /// `POST` a form to an absolute URL, with extra headers.
    pub(crate) async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in form {
            serializer.append_pair(k, v);
        }
        let mut request = self
            .http
            .post(url)
            .header(
                header::CONTENT_TYPE.as_str(),
                "application/x-www-form-urlencoded",
            )
            .body(serializer.finish());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request).await
    }

    /// `POST` JSON to an absolute URL, with extra headers.
    pub(crate) async fn post_json(
        &self,
        url: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .http
            .post(url)
            .header(header::CONTENT_TYPE.as_str(), "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request).await
    }

    /// A call the consent or registration page's script makes: same origin, JSON.
    async fn page_api(&self, path: &str, body: &Value) -> Reply {
        self.post_json(&self.url(path), body, &[("origin", &self.url)])
            .await
    }

    /// The browser's part: open the authorization URL, read the consent page, approve with the
    /// owner's passkey. Returns where the page would send the browser (code, state, iss).
    pub(crate) async fn approve_in_browser(&self, authorization_url: &str) -> Url {
        let page = self.get(authorization_url, &[]).await;
        assert_eq!(page.status, StatusCode::OK, "consent page: {}", page.body);
        assert!(
            page.header("content-type")
                .is_some_and(|v| v.starts_with("text/html")),
            "{:?}",
            page.headers
        );
        let marker = "data-request-id=\"";
        let start = page
            .body
            .find(marker)
            .expect("consent page has data-request-id")
            + marker.len();
        let end = start + page.body[start..].find('"').unwrap();
        let request_id = &page.body[start..end];

        let challenge = self
            .page_api("/authorize/challenge", &json!({ "request_id": request_id }))
            .await
            .expect(200)
            .json();
        let options: RequestChallengeResponse =
            serde_json::from_value(challenge["options"].clone()).unwrap();
        let credential = self
            .key
            .lock()
            .await
            .do_authentication(self.origin(), options)
            .expect("soft passkey assertion");
        let approved = self
            .page_api(
                "/authorize/approve",
                &json!({
                    "request_id": request_id,
                    "ceremony_id": challenge["ceremony_id"],
                    "credential": credential,
                }),
            )
            .await
            .expect(200)
            .json();
        Url::parse(approved["redirect_to"].as_str().expect("redirect_to")).unwrap()
    }

    /// A whole MCP session over plain HTTP with a bearer token, the way non-SDK clients speak it:
    /// `initialize`, `notifications/initialized`, `tools/call whoami`. Returns whoami's answer.
    /// The `MCP-Protocol-Version` header goes with every request after 2025-03-26, which had none.
    pub(crate) async fn whoami(&self, token: &str, protocol_version: &str) -> Value {
        let bearer = format!("Bearer {token}");
        let mut headers = vec![
            ("authorization", bearer.as_str()),
            ("accept", "application/json, text/event-stream"),
        ];
        if protocol_version != "2025-03-26" {
            headers.push(("mcp-protocol-version", protocol_version));
        }
        let init = self
            .post_json(
                &self.mcp_url,
                &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": protocol_version, "capabilities": {},
                    "clientInfo": {"name": "replay", "version": "0"}}}),
                &headers,
            )
            .await
            .expect(200);
        assert_eq!(
            rpc_message(&init.body)["result"]["serverInfo"]["name"],
            SERVER_NAME
        );
        // A stateless server (as this one, and the demo) issues no session; a client of any
        // revision sends one only when it was given one.
        let session = init.header("mcp-session-id").map(str::to_owned);
        if let Some(session) = &session {
            headers.push(("mcp-session-id", session.as_str()));
        }
        let initialized = self
            .post_json(
                &self.mcp_url,
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                &headers,
            )
            .await;
        assert!(initialized.status.is_success(), "{}", initialized.body);
        let call = self
            .post_json(
                &self.mcp_url,
                &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                        "params": {"name": "whoami", "arguments": {}}}),
                &headers,
            )
            .await
            .expect(200);
        let message = rpc_message(&call.body);
        let text = message["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no text content: {message}"));
        serde_json::from_str(text).unwrap()
    }
}

/// A plain HTTP client for loopback: no redirects followed, no proxy.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// The JSON-RPC message in an SSE or JSON response body.
pub(crate) fn rpc_message(body: &str) -> Value {
    let json = body
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .find(|data| data.starts_with('{'))
        .unwrap_or(body.trim());
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A query parameter of a URL.
pub(crate) fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A PKCE verifier and its S256 challenge.
pub(crate) fn pkce() -> (String, String) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::Digest;
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The value of one parameter of a `WWW-Authenticate: Bearer k="v", ...` challenge.
pub(crate) fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let start = challenge.find(&needle)? + needle.len();
    let end = start + challenge[start..].find('"')?;
    Some(challenge[start..end].to_owned())
}
