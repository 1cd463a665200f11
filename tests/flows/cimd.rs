//! Client ID Metadata Documents over HTTP: documents served by a local server through the testing
//! switch, the whole flow for a Claude Code-like client, every kind of bad document, caching, and
//! the SSRF refusals that happen before any connection.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::common::*;

/// A document server on 127.0.0.1 that counts the requests for each document.
struct DocumentServer {
    base: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DocumentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type DocState = (String, Arc<Mutex<HashMap<String, usize>>>);

impl DocumentServer {
    async fn start() -> Self {
        Self::start_as("127.0.0.1").await
    }

    /// A server on 127.0.0.1 whose documents name their URLs with `host` (`localhost`: another
    /// host, as far as the fetcher's per-host limits go).
    async fn start_as(host: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{host}:{}", listener.local_addr().unwrap().port());
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let app = Router::new()
            .route("/{name}", get(serve))
            .with_state((base.clone(), Arc::clone(&hits)));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, hits, task }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// `127.0.0.1:PORT`, as the consent page shows the document's host.
    fn host(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    /// Take the server down: its port refuses connections from now on.
    async fn stop(&self) {
        self.task.abort();
        while !self.task.is_finished() {
            tokio::task::yield_now().await;
        }
    }
}

/// A host that accepts connections, reads the request, and never answers: it holds every fetch
/// slot it is given until the fetcher gives up. Counts the connections it accepted.
struct StallingServer {
    base: String,
    accepted: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StallingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StallingServer {
    async fn start() -> Self {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let (accepted_tx, accepted) = tokio::sync::watch::channel(0usize);
        let task = tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                accepted_tx.send_modify(|n| *n += 1);
                tokio::spawn(async move {
                    // Read until the fetcher hangs up; answer nothing.
                    let mut buffer = [0u8; 1024];
                    while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {}
                });
            }
        });
        Self {
            base,
            accepted,
            task,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Until at least `n` connections have been accepted.
    async fn wait_for_accepted(&self, n: usize) {
        self.accepted
            .clone()
            .wait_for(|accepted| *accepted >= n)
            .await
            .unwrap();
    }

    fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }
}

/// What Claude Code publishes: loopback redirect URIs without a port, no scope, `none`.
fn claude_code(client_id: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_name": "Claude Code",
        "client_uri": "https://claude.ai",
        "redirect_uris": ["http://localhost/callback", "http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
}

fn json_response(document: &Value, content_type: &str, cache_control: Option<&str>) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, content_type.to_owned())],
        document.to_string(),
    )
        .into_response();
    if let Some(value) = cache_control {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, value.parse().unwrap());
    }
    response
}

async fn serve(State((base, hits)): State<DocState>, Path(name): Path<String>) -> Response {
    *hits.lock().unwrap().entry(name.clone()).or_default() += 1;
    let id = format!("{base}/{name}");
    let json = "application/json";
    match name.as_str() {
        "claude-code" => json_response(&claude_code(&id), json, Some("public, max-age=300")),
        "no-store" => json_response(&claude_code(&id), json, Some("no-store")),
        "plus-json" => json_response(
            &claude_code(&id),
            "application/oauth-client-metadata+json; charset=utf-8",
            None,
        ),
        "chatgpt" => json_response(
            &json!({
                "client_id": id,
                "client_name": "ChatGPT",
                "redirect_uris": ["https://chatgpt.com/connector/oauth/cb123"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "private_key_jwt",
                "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
                "jwks_uri": "https://chatgpt.com/oauth/jwks.json",
            }),
            json,
            None,
        ),
        // `private_key_jwt` alone, and no keys to check an assertion with.
        "private-key-jwt-only" => {
            let mut document = claude_code(&id);
            document["token_endpoint_auth_method"] = json!("private_key_jwt");
            json_response(&document, json, None)
        }
        "mismatch" => json_response(&claude_code(&format!("{base}/other")), json, None),
        "text-plain" => json_response(&claude_code(&id), "text/plain", None),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><title>Just a moment...</title>",
        )
            .into_response(),
        "redirect" => (
            StatusCode::FOUND,
            [(header::LOCATION, format!("{base}/claude-code"))],
        )
            .into_response(),
        "oversize" => {
            let mut document = claude_code(&id);
            document["padding"] = json!("x".repeat(6 * 1024));
            json_response(&document, json, None)
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            json_response(&claude_code(&id), json, None)
        }
        "secret" => {
            let mut document = claude_code(&id);
            document["client_secret"] = json!("a-shared-secret");
            json_response(&document, json, None)
        }
        "symmetric" => {
            let mut document = claude_code(&id);
            document["token_endpoint_auth_method"] = json!("client_secret_post");
            json_response(&document, json, None)
        }
        "not-an-object" => json_response(&json!(["client_id", id]), json, None),
        "long-name" => {
            let mut document = claude_code(&id);
            document["client_name"] = json!("n".repeat(201));
            json_response(&document, json, None)
        }
        // `uris-{count}-{length}`: listing `count` distinct loopback redirect URIs of `length`
        // bytes each (`redirect_uris_of`).
        spec if spec.starts_with("uris-") => {
            let mut numbers = spec["uris-".len()..]
                .split('-')
                .map(|n| n.parse::<usize>().unwrap());
            let (count, length) = (numbers.next().unwrap(), numbers.next().unwrap());
            let mut document = claude_code(&id);
            document["redirect_uris"] = json!(redirect_uris_of(count, length));
            json_response(&document, json, None)
        }
        // `name-{chars}`: a `client_name` of `chars` CJK characters (three bytes each), and one
        // redirect URI of 40 bytes.
        spec if spec.starts_with("name-") => {
            let chars: usize = spec["name-".len()..].parse().unwrap();
            let mut document = claude_code(&id);
            document["client_name"] = json!("名".repeat(chars));
            document["redirect_uris"] = json!(redirect_uris_of(1, 40));
            json_response(&document, json, None)
        }
        "not-json" => (
            [(header::CONTENT_TYPE, json)],
            "{\"client_id\": \"cut short",
        )
            .into_response(),
        "broken" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "overloaded" => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "rate-limited" => StatusCode::TOO_MANY_REQUESTS.into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A server with the owner's passkey, fetching documents from loopback through the testing switch,
/// on 443 and the given ports only: the switch is held to the port rule like any URL.
async fn server(ports: &[u16]) -> TestServer {
    let mut config = config();
    config.cimd_allow_loopback_http_for_testing = true;
    config.cimd_allowed_ports = [443].iter().chain(ports).copied().collect();
    let server = TestServer::with_config(config).await;
    let registered = server.register_passkey(SETUP_TOKEN).await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.text());
    server
}

/// Undo the HTML escaping of the few characters our messages contain.
fn unescape(html: &str) -> String {
    html.replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#47;", "/")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

fn request_id_of(page: &str) -> String {
    let marker = "data-request-id=\"";
    let start = page.find(marker).expect("consent page has data-request-id") + marker.len();
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_owned()
}

/// `GET /authorize` for a client id; the reply, whatever it is.
async fn authorize(server: &TestServer, client_id: &str, redirect_uri: &str) -> Reply {
    let (_, challenge) = pkce();
    server
        .get(&format!(
            "/authorize?{}&scope=mcp&resource={}",
            authorization_query(client_id, redirect_uri, &challenge),
            enc(RESOURCE)
        ))
        .await
}

/// The error page for a refused client: 400, no redirect, the message in plain words.
#[track_caller]
fn assert_error_page(reply: &Reply, needles: &[&str]) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(reply.header("location").is_none());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    );
    let page = unescape(&reply.text());
    assert!(!page.contains("data-request-id"), "no consent page");
    for needle in needles {
        assert!(page.contains(needle), "missing {needle:?} in {page}");
    }
}

/// `/token` for a client id with a made-up code: the client is judged before the code is.
async fn token_with_bogus_code(server: &TestServer, client_id: &str) -> Reply {
    let (verifier, _) = pkce();
    server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", "not-a-code"),
                ("code_verifier", &verifier),
                ("client_id", client_id),
                ("redirect_uri", "http://127.0.0.1:5555/callback"),
            ]),
            &[],
        )
        .await
}

#[tokio::test]
async fn claude_code_like_client_connects_end_to_end() {
    let docs = DocumentServer::start().await;
    let server = server(&[docs.port()]).await;
    let client_id = docs.url("claude-code");

    let metadata = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(metadata["client_id_metadata_document_supported"], true);
    assert!(
        metadata["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("none"))
    );

    // The document lists http://127.0.0.1/callback without a port; Claude Code picks one.
    let redirect_uri = "http://127.0.0.1:54321/callback";
    let (verifier, challenge) = pkce();
    let reply = server
        .get(&format!(
            "/authorize?{}&scope=mcp&resource={}",
            authorization_query(&client_id, redirect_uri, &challenge),
            enc(RESOURCE)
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let page = unescape(&reply.text());
    assert!(
        page.contains(&format!("Verified: <bdi>{}</bdi>", docs.host())),
        "{page}"
    );
    assert!(page.contains("id=\"verified-host\""));
    assert!(page.contains("Claude Code"));
    assert!(page.contains("http://127.0.0.1:54321"));
    assert!(page.contains("id=\"approve\"") && page.contains("id=\"deny\""));
    assert!(!page.contains("Registered itself"));

    let redirect = server.approve(&request_id_of(&page)).await;
    assert!(redirect.as_str().starts_with(redirect_uri));
    assert_eq!(query_param(&redirect, "state").as_deref(), Some("st"));
    let code = query_param(&redirect, "code").unwrap();

    // A public client: `none` and PKCE.
    let tokens = server
        .exchange(&client_id, &code, &verifier, redirect_uri)
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let tokens = tokens.json();
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("the document lists refresh_token");

    let call = server.mcp(Some(access)).await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.text());
    assert_eq!(call.json()["client_id"], client_id.as_str());

    let refreshed = server.refresh(&client_id, refresh).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());

    // A metadata document client has no secret to present.
    let with_secret = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    refreshed.json()["refresh_token"].as_str().unwrap(),
                ),
                ("client_id", &client_id),
                ("client_secret", "made-up"),
            ]),
            &[],
        )
        .await;
    with_secret.assert_oauth_error(401, "invalid_client");

    let revoked = server
        .post_form(
            "/revoke",
            &form(&[("token", access), ("client_id", &client_id)]),
            &[],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    assert_eq!(
        server.mcp(Some(access)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Introspection is for confidential clients only.
    let introspect = server
        .post_form(
            "/introspect",
            &form(&[("token", access), ("client_id", &client_id)]),
            &[],
        )
        .await;
    introspect.assert_oauth_error(401, "invalid_client");

    // Authorize, token, refresh and revoke all used the one cached copy.
    assert_eq!(docs.hits("claude-code"), 1);
}

#[tokio::test]
async fn redirect_uris_are_matched_against_the_document() {
    let docs = DocumentServer::start().await;
    let server = server(&[docs.port()]).await;
    let client_id = docs.url("claude-code");
    for ok in [
        "http://localhost:3000/callback",
        "http://127.0.0.1:1/callback",
        "http://127.0.0.1/callback",
    ] {
        let reply = authorize(&server, &client_id, ok).await;
        assert_eq!(reply.status, StatusCode::OK, "{ok}: {}", reply.text());
    }
    for bad in [
        "http://127.0.0.1:3000/other",
        "https://127.0.0.1:3000/callback",
        "http://[::1]:3000/callback",
        "https://evil.example/callback",
    ] {
        let reply = authorize(&server, &client_id, bad).await;
        assert_error_page(&reply, &["not one this application registered"]);
    }
}

#[tokio::test]
async fn chatgpt_like_private_key_jwt_with_none_is_a_public_client() {
    let docs = DocumentServer::start().await;
    let server = server(&[docs.port()]).await;
    let reply = authorize(
        &server,
        &docs.url("chatgpt"),
        "https://chatgpt.com/connector/oauth/cb123",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(unescape(&reply.text()).contains("ChatGPT"));

    let reply = authorize(
        &server,
        &docs.url("plus-json"),
        "http://localhost:8080/callback",
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "application/…+json: {}",
        reply.text()
    );
}

#[tokio::test]
async fn bad_documents_get_the_error_page_and_invalid_client() {
    let docs = DocumentServer::start().await;
    let server = server(&[docs.port()]).await;
    for (name, reason) in [
        (
            "mismatch",
            "is not valid: its client_id differs from the URL",
        ),
        (
            "text-plain",
            "could not be fetched: it was served as text/plain",
        ),
        ("html", "could not be fetched: it was served as text/html"),
        (
            "redirect",
            "redirect (HTTP 302), and redirects are not followed",
        ),
        ("oversize", "could not be fetched: it is larger than 5 KiB"),
        (
            "missing",
            "could not be fetched: it answered HTTP 404 Not Found",
        ),
        ("secret", "is not valid: it contains a client secret"),
        ("symmetric", "client_secret_post, a shared-secret method"),
        (
            "private-key-jwt-only",
            "it declares private_key_jwt but publishes no keys",
        ),
        ("not-an-object", "is not valid: it is not a JSON object"),
        (
            "long-name",
            "is not valid: its client_name is longer than 200 characters",
        ),
    ] {
        let client_id = docs.url(name);
        let reply = authorize(&server, &client_id, "http://127.0.0.1:5555/callback").await;
        // The page and the client hear that there is no usable document; the owner hears why.
        assert_error_page(
            &reply,
            &["The client's metadata document could not be fetched or is invalid"],
        );
        assert!(!unescape(&reply.text()).contains(reason), "{name}");

        let token = token_with_bogus_code(&server, &client_id).await;
        token.assert_oauth_error(401, "invalid_client");
        let description = token.json()["error_description"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            description,
            "the client's metadata document could not be fetched or is invalid"
        );
        let notes = doctor_notes(&server, &client_id);
        assert!(notes.contains(reason), "{name}: {notes}");
    }
    // The redirect was not followed; failures were not cached (authorize and token each fetched).
    assert_eq!(docs.hits("claude-code"), 0);
    assert_eq!(docs.hits("redirect"), 2);
    assert_eq!(docs.hits("mismatch"), 2);
}

/// `count` distinct loopback redirect URIs of `length` bytes each.
fn redirect_uris_of(count: usize, length: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let base = format!("http://127.0.0.1/callback/{i}/");
            format!("{base}{}", "u".repeat(length - base.len()))
        })
        .collect()
}

/// Registration and metadata documents describe a client in one format, parsed once: the limits
/// (how many redirect URIs, how many bytes in all, how long a name) are the same on both paths, so
/// a client refused on one is refused on the other, and one accepted on one is accepted on the
/// other.
#[tokio::test]
async fn registration_and_metadata_documents_share_their_limits() {
    // README "Limits", restated so that a change is a visible choice.
    const MAX_REDIRECT_URIS: usize = 20;
    const MAX_REDIRECT_URIS_TOTAL_BYTES: usize = 4096;
    const MAX_CLIENT_NAME_CHARS: usize = 200;
    let docs = DocumentServer::start().await;
    let server = server(&[docs.port()]).await;
    let (short, third) = (40, MAX_REDIRECT_URIS_TOTAL_BYTES / 3);
    let name = |chars: usize| "名".repeat(chars);
    // (document path, what registration sends, the refusal: code and member, or `None`)
    let cases = [
        (
            format!("uris-{MAX_REDIRECT_URIS}-{short}"),
            json!({ "redirect_uris": redirect_uris_of(MAX_REDIRECT_URIS, short) }),
            None,
        ),
        (
            format!("uris-{}-{short}", MAX_REDIRECT_URIS + 1),
            json!({ "redirect_uris": redirect_uris_of(MAX_REDIRECT_URIS + 1, short) }),
            Some(("invalid_redirect_uri", "redirect_uris")),
        ),
        (
            format!("uris-3-{third}"),
            json!({ "redirect_uris": redirect_uris_of(3, third) }),
            None,
        ),
        (
            format!("uris-3-{}", third + 1),
            json!({ "redirect_uris": redirect_uris_of(3, third + 1) }),
            Some(("invalid_redirect_uri", "redirect_uris")),
        ),
        (
            format!("name-{MAX_CLIENT_NAME_CHARS}"),
            json!({ "client_name": name(MAX_CLIENT_NAME_CHARS) }),
            None,
        ),
        (
            format!("name-{}", MAX_CLIENT_NAME_CHARS + 1),
            json!({ "client_name": name(MAX_CLIENT_NAME_CHARS + 1) }),
            Some(("invalid_client_metadata", "client_name")),
        ),
    ];
    for (path, sent, refused) in cases {
        let mut registration = json!({
            "redirect_uris": redirect_uris_of(1, short),
            "token_endpoint_auth_method": "none",
        });
        for (key, value) in sent.as_object().unwrap() {
            registration[key] = value.clone();
        }
        let redirect_uri = registration["redirect_uris"][0]
            .as_str()
            .unwrap()
            .to_owned();

        let registered = server.post_json("/register", &registration).await;
        match refused {
            None => assert_eq!(
                registered.status,
                StatusCode::CREATED,
                "{path}: {}",
                registered.text()
            ),
            Some((code, _)) => registered.assert_oauth_error(400, code),
        }

        let client_id = docs.url(&path);
        let reply = authorize(&server, &client_id, &redirect_uri).await;
        match refused {
            None => assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text()),
            Some((_, member)) => {
                assert_error_page(
                    &reply,
                    &["The client's metadata document could not be fetched or is invalid"],
                );
                let notes = doctor_notes(&server, &client_id);
                assert!(
                    notes.contains(&format!("is not valid: its {member}")),
                    "{path}: {notes}"
                );
            }
        }
    }
}

/// The error page for a document that cannot be had right now: 503 with `Retry-After`, saying
/// so and to try again; no redirect.
#[track_caller]
fn assert_try_again_page(reply: &Reply, needles: &[&str]) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert!(reply.header("location").is_none());
    assert!(reply.header("retry-after").is_some());
    let page = unescape(&reply.text());
    assert!(!page.contains("data-request-id"), "no consent page");
    for needle in [
        "could not be fetched right now",
        "try again",
        "Temporarily unavailable",
    ]
    .iter()
    .chain(needles)
    {
        assert!(page.contains(needle), "missing {needle:?} in {page}");
    }
}

/// A refusal at the token endpoints that tells the client to come back, not to drop its tokens.
#[track_caller]
fn assert_try_again_later(reply: &Reply) {
    reply.assert_oauth_error(503, "temporarily_unavailable");
    assert!(reply.header("retry-after").is_some());
    let description = reply.json()["error_description"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        description.contains("could not be fetched right now"),
        "{description}"
    );
}

#[tokio::test]
async fn a_slow_document_times_out_within_the_cap() {
    let docs = DocumentServer::start().await;
    let server = server(&[docs.port()]).await;
    let client_id = docs.url("slow");
    let started = Instant::now();
    let (page, token) = tokio::join!(
        authorize(&server, &client_id, "http://127.0.0.1:5555/callback"),
        token_with_bogus_code(&server, &client_id),
    );
    let elapsed = started.elapsed();
    // Not the document's fault, as far as anyone can tell: try again, not "invalid client".
    assert_try_again_page(&page, &[]);
    assert_try_again_later(&token);
    let notes = doctor_notes(&server, &client_id);
    assert!(notes.contains("timed out after 5 seconds"), "{notes}");
    assert!(
        elapsed < Duration::from_secs(8),
        "the error came after {elapsed:?}"
    );
}

/// A 401 makes a client throw its tokens away; a document host that is down, overloaded or
/// rate-limiting must not cost every user of that client their connection.
#[tokio::test]
async fn a_client_whose_document_host_is_down_gets_503_never_401() {
    let docs = DocumentServer::start().await;
    let busy = DocumentServer::start().await;
    let server = server(&[docs.port(), busy.port()]).await;
    // `no-store`: nothing cached to fall back on, as after the cached copy has run out.
    let client_id = docs.url("no-store");
    let redirect_uri = "http://127.0.0.1:5555/callback";
    let (code, verifier) = server.code_for(&client_id, redirect_uri).await;
    let tokens = server
        .exchange(&client_id, &code, &verifier, redirect_uri)
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let tokens = tokens.json();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    docs.stop().await;
    assert_try_again_later(&server.refresh(&client_id, refresh).await);
    assert_try_again_later(
        &server
            .post_form(
                "/revoke",
                &form(&[("token", refresh), ("client_id", &client_id)]),
                &[],
            )
            .await,
    );
    assert_try_again_page(&authorize(&server, &client_id, redirect_uri).await, &[]);
    // Still good once the host is back: nothing was revoked or forgotten.
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(server.mcp(Some(access)).await.status, StatusCode::OK);

    // A host that answers 503 or 429 is busy, not saying the client does not exist.
    for name in ["overloaded", "rate-limited"] {
        let client_id = busy.url(name);
        assert_try_again_later(&token_with_bogus_code(&server, &client_id).await);
        assert_try_again_page(&authorize(&server, &client_id, redirect_uri).await, &[]);
        let notes = doctor_notes(&server, &client_id);
        assert!(notes.contains("it answered HTTP"), "{notes}");
    }
}

/// A host that accepts connections and never answers holds a few fetch slots only, so other
/// clients' documents are still fetched meanwhile; its own clients are told to try again.
#[tokio::test]
async fn a_stalling_host_cannot_starve_the_fetches_of_other_hosts() {
    const STALLED: usize = 20;
    let stalling = StallingServer::start().await;
    let docs = DocumentServer::start_as("localhost").await;
    let server = server(&[stalling.port(), docs.port()]).await;
    let redirect_uri = "http://127.0.0.1:5555/callback";

    let stalled_ids: Vec<String> = (0..STALLED)
        .map(|i| stalling.url(&format!("c{i}")))
        .collect();
    let stalled = futures::future::join_all(
        stalled_ids
            .iter()
            .map(|client_id| authorize(&server, client_id, redirect_uri)),
    );
    let meanwhile = async {
        stalling.wait_for_accepted(4).await;
        authorize(
            &server,
            &docs.url("claude-code"),
            "http://127.0.0.1:5555/callback",
        )
        .await
    };
    let (stalled, meanwhile) = tokio::join!(stalled, meanwhile);

    assert_eq!(meanwhile.status, StatusCode::OK, "{}", meanwhile.text());
    assert!(
        meanwhile.text().contains("data-request-id"),
        "the consent page"
    );
    for reply in &stalled {
        assert_try_again_page(reply, &[]);
    }
    // Four at a time: the first four stalled for the whole time limit while the rest waited; by
    // then the wait was over for most, so at most a second four got through. Not sixteen at once.
    assert!(
        stalling.accepted() <= 8,
        "the stalling host got {} connections",
        stalling.accepted()
    );
}

#[tokio::test]
async fn documents_are_cached_per_cache_control() {
    let docs = DocumentServer::start().await;
    let server = server(&[docs.port()]).await;
    let redirect_uri = "http://127.0.0.1:5555/callback";

    // max-age=300: the second authorization uses the cached copy.
    for _ in 0..2 {
        let reply = authorize(&server, &docs.url("claude-code"), redirect_uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert_eq!(docs.hits("claude-code"), 1);

    // no-store: fetched every time.
    for _ in 0..2 {
        let reply = authorize(&server, &docs.url("no-store"), redirect_uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert_eq!(docs.hits("no-store"), 2);

    // Failures are never cached.
    for _ in 0..2 {
        let reply = authorize(&server, &docs.url("missing"), redirect_uri).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(docs.hits("missing"), 2);
}

#[tokio::test]
async fn switched_off_url_client_ids_are_unknown_clients() {
    let docs = DocumentServer::start().await;
    let mut config = config();
    config.cimd_allow_loopback_http_for_testing = true;
    config.client_id_metadata_documents = false;
    let server = TestServer::with_config(config).await;

    let metadata = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert!(
        metadata
            .get("client_id_metadata_document_supported")
            .is_none()
    );

    let client_id = docs.url("claude-code");
    let reply = authorize(&server, &client_id, "http://127.0.0.1:5555/callback").await;
    assert_error_page(&reply, &["not registered with the server"]);
    token_with_bogus_code(&server, &client_id)
        .await
        .assert_oauth_error(401, "invalid_client");
    assert_eq!(docs.hits("claude-code"), 0);
}

#[tokio::test]
async fn non_public_and_non_https_client_ids_are_refused_before_any_connection() {
    // A document server is listening, so a connection attempt would be counted.
    let docs = DocumentServer::start().await;
    let port = docs.port();
    let server = TestServer::ready().await; // no testing switch

    let metadata = server
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(metadata["client_id_metadata_document_supported"], true);

    let refused = [
        ("https://127.0.0.1/x".to_owned(), "non-public address"),
        (
            format!("https://127.0.0.1:{port}/claude-code"),
            "non-public address",
        ),
        ("https://localhost/x".to_owned(), "localhost"),
        (format!("https://localhost:{port}/claude-code"), "localhost"),
        ("https://10.0.0.1/x".to_owned(), "non-public address"),
        (
            "https://169.254.169.254/latest".to_owned(),
            "non-public address",
        ),
        ("https://[::1]/x".to_owned(), "non-public address"),
        (
            "https://[::ffff:127.0.0.1]/x".to_owned(),
            "non-public address",
        ),
        ("http://example.com/x".to_owned(), "must use https"),
        // Only the testing switch admits these.
        (docs.url("claude-code"), "must use https"),
        (
            format!("http://localhost:{port}/claude-code"),
            "must use https",
        ),
        ("https://example.com/".to_owned(), "must have a path"),
        ("https://example.com/a/../x".to_owned(), "segments"),
        ("https://user@example.com/x".to_owned(), "user name"),
        ("https://example.com/x#f".to_owned(), "fragment"),
    ];
    for (client_id, reason) in &refused {
        let started = Instant::now();
        let reply = authorize(&server, client_id, "http://127.0.0.1:5555/callback").await;
        assert_error_page(
            &reply,
            &["is not an acceptable client metadata document URL", reason],
        );
        assert!(started.elapsed() < Duration::from_secs(1), "{client_id}");
        token_with_bogus_code(&server, client_id)
            .await
            .assert_oauth_error(401, "invalid_client");
    }
    assert_eq!(docs.hits("claude-code"), 0, "nothing was fetched");
}

#[tokio::test]
async fn the_testing_switch_opens_loopback_http_only() {
    let server = server(&[]).await;
    for (client_id, reason) in [
        ("https://10.0.0.1/x", "non-public address"),
        ("https://192.168.1.10/x", "non-public address"),
        ("https://169.254.169.254/latest", "non-public address"),
        ("https://127.0.0.1/x", "non-public address"),
        ("http://example.com/x", "must use https"),
        ("http://10.0.0.1:8080/x", "must use https"),
    ] {
        let reply = authorize(&server, client_id, "http://127.0.0.1:5555/callback").await;
        assert_error_page(&reply, &[reason]);
    }
}

/// The message of an error page, unescaped.
fn lead_of(reply: &Reply) -> String {
    let page = unescape(&reply.text());
    let start =
        page.find("<p class=\"lead\">").expect("an error page") + "<p class=\"lead\">".len();
    let end = page[start..].find("</p>").unwrap() + start;
    page[start..end].to_owned()
}

/// What the doctor recorded for a client id: every failed step's description, joined.
fn doctor_notes(server: &TestServer, client_id: &str) -> String {
    server
        .oauth
        .admin()
        .connection_traces()
        .iter()
        .filter(|t| t.client_id.as_deref() == Some(client_id))
        .flat_map(|t| t.steps.iter())
        .filter_map(|s| s.error.as_ref().map(|(_, description)| description.clone()))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// An anonymous user probing through the fetcher learns a category, never what the network said:
/// every kind of failure gives the same words on the page and at `/token`, while the owner's
/// connection doctor keeps the detail.
#[tokio::test]
async fn every_fetch_failure_says_only_its_category_and_the_doctor_keeps_the_detail() {
    const TRY_AGAIN: &str =
        "the client's metadata document could not be fetched right now; try again later";
    const NO_DOCUMENT: &str = "the client's metadata document could not be fetched or is invalid";
    // What the network said, in the words the fetcher logs it; none may reach the public.
    const DETAILS: [&str; 16] = [
        "refused",
        "timed out",
        "could not connect",
        "HTTP",
        "404",
        "500",
        "503",
        "text/html",
        "line",
        "column",
        "TLS",
        "redirect",
        "KiB",
        "JSON",
        "differs",
        "127.0.0.1",
    ];
    let docs = DocumentServer::start().await;
    let down = DocumentServer::start().await;
    down.stop().await;
    let server = server(&[docs.port(), down.port()]).await;
    let redirect_uri = "http://127.0.0.1:5555/callback";

    let kinds = [
        (down.url("claude-code"), TRY_AGAIN, "could not connect"),
        (docs.url("broken"), TRY_AGAIN, "HTTP 500"),
        (docs.url("overloaded"), TRY_AGAIN, "HTTP 503"),
        (docs.url("missing"), NO_DOCUMENT, "HTTP 404"),
        (docs.url("html"), NO_DOCUMENT, "text/html"),
        (docs.url("redirect"), NO_DOCUMENT, "redirect"),
        (docs.url("oversize"), NO_DOCUMENT, "larger than 5 KiB"),
        (
            docs.url("not-json"),
            NO_DOCUMENT,
            "not valid JSON (line 1, column",
        ),
        (
            docs.url("mismatch"),
            NO_DOCUMENT,
            "its client_id differs from the URL",
        ),
    ];
    let check = |client_id: String, category: &'static str, detail: &'static str| {
        let server = &server;
        async move {
            let (page, token) = tokio::join!(
                authorize(server, &client_id, redirect_uri),
                token_with_bogus_code(server, &client_id)
            );
            let lead = lead_of(&page);
            let description = token.json()["error_description"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                lead.to_lowercase().starts_with(category),
                "{client_id}: the page says {lead:?}"
            );
            assert_eq!(description, category, "{client_id} at /token");
            for said in [&lead, &description] {
                for secret in DETAILS {
                    assert!(
                        !said.contains(secret),
                        "{client_id}: {secret:?} reached the public in {said:?}"
                    );
                }
            }
            if category == TRY_AGAIN {
                assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{client_id}");
                token.assert_oauth_error(503, "temporarily_unavailable");
            } else {
                assert_eq!(page.status, StatusCode::BAD_REQUEST, "{client_id}");
                token.assert_oauth_error(401, "invalid_client");
            }
            let notes = doctor_notes(server, &client_id);
            assert!(
                notes.contains(detail),
                "{client_id}: the doctor has {notes:?}, not {detail:?}"
            );
        }
    };
    // The slow one holds its fetches for the whole time limit; the others go meanwhile.
    tokio::join!(
        check(docs.url("slow"), TRY_AGAIN, "timed out after 5 seconds"),
        async {
            for (client_id, category, detail) in kinds {
                check(client_id, category, detail).await;
            }
        }
    );

    // The owner sees the detail on the console too; no one else does.
    let stranger = unescape(&crate::console::console_page(&server, None).await);
    assert!(!stranger.contains("HTTP 404"));
    let session = crate::console::sign_in(&server).await;
    let console = unescape(&crate::console::console_page(&server, Some(&session.cookie)).await);
    assert!(console.contains("HTTP 404"), "{console}");
    assert!(console.contains("text/html"));
}

/// The fetcher is no port scanner: a client id naming any port but 443 is refused from its text,
/// before any connection, unless the operator opted in to that port.
#[tokio::test]
async fn client_ids_naming_a_port_other_than_443_are_refused_before_any_connection() {
    // Through the testing switch a loopback port is the one place a connection could be counted.
    let listener = StallingServer::start().await;
    // The testing switch is on; the listener's port is not among the allowed.
    let server = server(&[]).await;
    let refused = [
        listener.url("claude-code"),
        "https://client.example.com:8443/meta".to_owned(),
        "https://client.example.com:22/meta".to_owned(),
        "https://client.example.com:80/meta".to_owned(),
        "https://93.184.215.14:8443/client.json".to_owned(),
    ];
    for client_id in &refused {
        let reply = authorize(&server, client_id, "http://127.0.0.1:5555/callback").await;
        assert_error_page(
            &reply,
            &[
                "is not an acceptable client metadata document URL",
                "only port 443",
            ],
        );
        let token = token_with_bogus_code(&server, client_id).await;
        token.assert_oauth_error(401, "invalid_client");
        let description = token.json()["error_description"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(description.contains("only port 443"), "{description}");
    }
    assert_eq!(listener.accepted(), 0, "a connection was made");
}

/// Fetching its own host would have the server ask itself (or the services beside it, which may
/// trust its address) on an attacker's behalf.
#[tokio::test]
async fn the_servers_own_host_is_never_fetched() {
    let mut config = config();
    config.server_url = "https://mcp.example.com".into();
    let server = TestServer::with_config(config).await;
    for client_id in [
        "https://mcp.example.com/.well-known/oauth-authorization-server",
        "https://mcp.example.com/oauth/client.json",
        "https://mcp.example.com:8443/oauth/client.json",
        "https://mcp.example.com./oauth/client.json",
    ] {
        let reply = authorize(&server, client_id, "http://127.0.0.1:5555/callback").await;
        assert_error_page(
            &reply,
            &[
                "is not an acceptable client metadata document URL",
                "this server's own host",
            ],
        );
        token_with_bogus_code(&server, client_id)
            .await
            .assert_oauth_error(401, "invalid_client");
    }
}

/// A host for the flood: `/victim` is an approved client's document (cached for a day), or, once
/// [`FloodHost::take_down`] was called, the HTML page a bot-protection outage serves instead;
/// any other name is a valid document of the attacker's.
struct FloodHost {
    base: String,
    down: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FloodHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FloodHost {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let down = Arc::new(AtomicBool::new(false));
        let app = Router::new()
            .route("/{name}", get(serve_flood))
            .with_state((base.clone(), Arc::clone(&down)));
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, down, task }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn take_down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }
}

async fn serve_flood(
    State((base, down)): State<(String, Arc<AtomicBool>)>,
    Path(name): Path<String>,
) -> Response {
    if name == "victim" && down.load(Ordering::SeqCst) {
        return (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><title>Just a moment...</title>",
        )
            .into_response();
    }
    let mut document = claude_code(&format!("{base}/{name}"));
    document["client_name"] = json!(name);
    json_response(&document, "application/json", Some("public, max-age=86400"))
}

/// `/token` with a made-up code for `client_id`, sent from `peer` (the attacker spreads its
/// requests over its /48 to stay within the per-address rate limits).
async fn bogus_code_from(server: &TestServer, peer: IpAddr, client_id: &str) -> StatusCode {
    let (verifier, _) = pkce();
    let mut request = Request::post("/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form(&[
            ("grant_type", "authorization_code"),
            ("code", "not-a-code"),
            ("code_verifier", &verifier),
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1:5555/callback"),
        ])))
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(peer, 40_000)));
    tower::ServiceExt::oneshot(server.app.clone(), request)
        .await
        .unwrap()
        .status()
}

/// The `n`th /64 of an attacker's IPv6 /48 (a rate-limit key of its own).
fn attacker_address(n: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x77, n, 0, 0, 0, 1))
}

/// The cache of documents is bounded (1,000) and shared by every URL client id anyone sends. A
/// stranger sends 3,000 URL client ids of its own (valid documents, each a few times, within the
/// default rate limits): the approved client's last good document must still be there as the
/// fallback during its host's outage, or its refresh gets 401 and it throws its tokens away.
#[tokio::test]
async fn a_flood_of_url_client_ids_does_not_evict_an_approved_clients_document() {
    let docs = FloodHost::start().await;
    let server = server(&[docs.port()]).await;

    let victim = docs.url("victim");
    let redirect_uri = "http://127.0.0.1:5555/callback";
    let (code, verifier) = server.code_for(&victim, redirect_uri).await;
    let tokens = server
        .exchange(&victim, &code, &verifier, redirect_uri)
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let mut refresh_token = tokens.json()["refresh_token"].as_str().unwrap().to_owned();

    // The host's outage begins; the cached copy carries the client through it.
    docs.take_down();
    let refreshed = server.refresh(&victim, &refresh_token).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    refresh_token = refreshed.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The flood: 3,000 URL client ids, each sent 4 times, 50 requests per /64.
    let mut sent = 0u32;
    for n in 0..3000u32 {
        let client_id = docs.url(&format!("f{n}"));
        for _ in 0..4 {
            let peer = attacker_address(2000 + u16::try_from(sent / 50).unwrap());
            let status = bogus_code_from(&server, peer, &client_id).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "the flood got a bad code");
            sent += 1;
        }
    }

    let refreshed = server.refresh(&victim, &refresh_token).await;
    assert_eq!(
        refreshed.status,
        StatusCode::OK,
        "after a flood of {sent} requests naming other URL client ids, the approved client's \
         refresh during its host's outage got: {}",
        refreshed.text()
    );
}
