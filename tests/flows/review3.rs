//! Third outside review of `client_credentials` and `private_key_jwt` (issue 21): reproductions.
//! Each test asserts a guarantee as README.md / SECURITY.md state it. A test ignored with a break
//! number reproduces a break still open; the others attack something not tested before and hold.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use mcp_oauth::{MachineClient, OAuthConfig, TokenInfo, TokenSubject};
use serde_json::{Value, json};

use crate::common::*;

const MACHINE_ID: &str = "nightly-report";
const MACHINE_SECRET: &str = "machine-secret-0123456789abcdef";
const NEW_SECRET: &str = "rotated-machine-secret-after-leak";

fn routes() -> Router {
    Router::new().route(
        "/mcp",
        any(|caller: TokenInfo| async move {
            axum::Json(json!({
                "client_id": caller.client_id,
                "scopes": caller.scopes,
                "grant_id": caller.grant_id.0,
                "machine": caller.subject == TokenSubject::Machine,
            }))
        }),
    )
}

fn machine_config_with(secret: &str, scopes: &[&str], cap: u32) -> OAuthConfig {
    let mut config = config();
    config.scopes = vec!["mcp".into(), "reports:read".into(), "admin".into()];
    config.rate_limits.enabled = false;
    let mut machine = MachineClient::with_secret(MACHINE_ID, secret, scopes.iter().copied());
    machine.max_live_tokens = cap;
    config.machine_clients = vec![machine];
    config
}

async fn machine_token(server: &TestServer, secret: &str) -> Reply {
    server
        .post_form(
            "/token",
            &form(&[("grant_type", "client_credentials")]),
            &[("authorization", &basic(MACHINE_ID, secret))],
        )
        .await
}

async fn live_machine_tokens_listed(server: &TestServer) -> usize {
    server
        .oauth
        .admin()
        .grants()
        .await
        .unwrap()
        .into_iter()
        .filter(|g| g.client_id == MACHINE_ID)
        .count()
}

async fn introspect(server: &TestServer, token: &str) -> Value {
    let reply = server
        .post_form(
            "/introspect",
            &form(&[
                ("token", token),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ]),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

/// SECURITY.md: "Each `client_credentials` request takes one of the machine's places in the token
/// store until its token expires or is revoked". A machine that revokes its own tokens at
/// `/revoke` (RFC 7009, as an SDK does when a job ends) holds no live token and gets new ones.
/// (Break 1, fixed: revoking a machine's token now ends its grant, place and console row too.)
#[tokio::test]
async fn a_machine_that_revokes_its_own_tokens_gets_new_ones() {
    let server = TestServer::on(
        Stores::memory(),
        machine_config_with(MACHINE_SECRET, &["mcp"], 2),
        routes(),
    );
    for round in 0..3 {
        let reply = machine_token(&server, MACHINE_SECRET).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "round {round}: a machine holding no live token is refused: {}",
            reply.text()
        );
        let token = access_token(&reply.json());
        let revoked = server
            .post_form(
                "/revoke",
                &form(&[("token", &token)]),
                &[("authorization", &basic(MACHINE_ID, MACHINE_SECRET))],
            )
            .await;
        assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
        assert_eq!(
            server.mcp(Some(&token)).await.status,
            StatusCode::UNAUTHORIZED,
            "revoked"
        );
    }
}

/// README: the console lists "each [machine] token as a row"; a token the machine revoked at
/// `/revoke` is no live token, and the console no longer lists it. (Break 1, fixed.)
#[tokio::test]
async fn the_console_does_not_list_a_token_the_machine_revoked() {
    let server = TestServer::on(
        Stores::memory(),
        machine_config_with(MACHINE_SECRET, &["mcp"], 5),
        routes(),
    );
    let token = access_token(&machine_token(&server, MACHINE_SECRET).await.json());
    assert_eq!(live_machine_tokens_listed(&server).await, 1);
    server
        .post_form(
            "/revoke",
            &form(&[("token", &token)]),
            &[("authorization", &basic(MACHINE_ID, MACHINE_SECRET))],
        )
        .await;
    assert_eq!(
        server.mcp(Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        live_machine_tokens_listed(&server).await,
        0,
        "the console lists a revoked machine token as live"
    );
}

/// SECURITY.md: a thief of a machine's credentials "can use up the machine's places until its
/// tokens expire. Keep machine credentials like any secret; rotate them, which ends every token
/// minted with the old ones, if they leak." After the rotation those tokens are dead (guard and
/// introspection refuse them), and the places they hold are the old credentials' set: the machine,
/// with its new secret, has all of its own. (Break 2, fixed: places are keyed by the credentials'
/// fingerprint.)
#[tokio::test]
async fn rotating_a_leaked_machine_secret_gives_the_machine_its_places_back() {
    let stores = Stores::memory();
    let leaked = TestServer::on(
        stores.clone(),
        machine_config_with(MACHINE_SECRET, &["mcp"], 3),
        routes(),
    );
    // The thief fills every place with the leaked secret.
    let mut stolen = Vec::new();
    loop {
        let reply = machine_token(&leaked, MACHINE_SECRET).await;
        if reply.status != StatusCode::OK {
            reply.assert_oauth_error(400, "invalid_request");
            break;
        }
        stolen.push(access_token(&reply.json()));
    }
    assert_eq!(stolen.len(), 3);

    // The owner rotates the secret and restarts.
    let rotated = TestServer::on(
        stores,
        machine_config_with(NEW_SECRET, &["mcp"], 3),
        routes(),
    );
    for token in &stolen {
        assert_eq!(
            rotated.mcp(Some(token)).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            introspect(&rotated, token).await,
            json!({ "active": false })
        );
    }
    let reply = machine_token(&rotated, NEW_SECRET).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the machine, with its new secret and no live token, is refused: {}",
        reply.text()
    );
}

/// README: "a machine holds at most `max_live_tokens` live tokens". The owner lowers the cap and
/// restarts: only the tokens in places below the new cap stay live. (Break 3, fixed: a token
/// carries its place, and the guard refuses one at or above the cap.)
#[tokio::test]
async fn lowering_a_machines_cap_across_a_restart_leaves_it_within_the_new_cap() {
    let stores = Stores::memory();
    let before = TestServer::on(
        stores.clone(),
        machine_config_with(MACHINE_SECRET, &["mcp"], 6),
        routes(),
    );
    let mut tokens = Vec::new();
    for _ in 0..6 {
        let reply = machine_token(&before, MACHINE_SECRET).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        tokens.push(access_token(&reply.json()));
    }
    let after = TestServer::on(
        stores,
        machine_config_with(MACHINE_SECRET, &["mcp"], 2),
        routes(),
    );
    let mut live = 0;
    for token in &tokens {
        if after.mcp(Some(token)).await.status == StatusCode::OK {
            live += 1;
        }
    }
    assert!(live <= 2, "{live} live tokens for a cap of 2");
}

/// A client's host on 127.0.0.1 serving metadata documents (and JWK sets) at `/{name}`, counting
/// the requests for each.
#[cfg(feature = "cimd")]
struct DocumentHost {
    base: String,
    state: std::sync::Arc<HostState>,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "cimd")]
#[derive(Default)]
struct HostState {
    documents: std::sync::Mutex<std::collections::HashMap<String, Value>>,
    hits: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

#[cfg(feature = "cimd")]
impl Drop for DocumentHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(feature = "cimd")]
impl DocumentHost {
    async fn start() -> Self {
        use axum::extract::{Path, State};
        use axum::response::IntoResponse;
        type Shared = std::sync::Arc<HostState>;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Shared::default();
        let app = Router::new()
            .route(
                "/{name}",
                axum::routing::get(
                    |State(state): State<Shared>, Path(name): Path<String>| async move {
                        *state.hits.lock().unwrap().entry(name.clone()).or_default() += 1;
                        // A host across the internet: a few hundred milliseconds away.
                        if name.starts_with("slow-") {
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        }
                        let found = state.documents.lock().unwrap().get(&name).cloned();
                        match found {
                            Some(document) => (
                                [(axum::http::header::CONTENT_TYPE, "application/json")],
                                document.to_string(),
                            )
                                .into_response(),
                            None => StatusCode::NOT_FOUND.into_response(),
                        }
                    },
                ),
            )
            .with_state(state.clone());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, state, task }
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    /// Serve `value` at `/{name}` as it is.
    fn serve(&self, name: &str, value: Value) {
        self.state
            .documents
            .lock()
            .unwrap()
            .insert(name.to_owned(), value);
    }

    /// Serve `document` at `/{name}` with its `client_id` set to that URL; the client id.
    fn publish(&self, name: &str, mut document: Value) -> String {
        let id = self.url(name);
        document["client_id"] = json!(id);
        self.serve(name, document);
        id
    }

    fn hits(&self, name: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(feature = "cimd")]
const DOC_REDIRECT: &str = "https://client.example/callback";

/// SECURITY.md: "A document declaring `private_key_jwt` alone must sign (no downgrade to
/// `none`)". A document whose only declared method is `private_key_jwt`, listed in
/// `token_endpoint_auth_methods_supported` (the list ChatGPT's documents carry) without a
/// `token_endpoint_auth_method`, must sign too: a thief of its refresh token cannot refresh it
/// with no assertion. (Break 4, fixed: an absent method used to read as `none` whatever the list
/// said.)
#[cfg(feature = "cimd")]
#[tokio::test]
async fn a_document_listing_only_private_key_jwt_must_sign() {
    use crate::common::jose::{self, JWT_BEARER, TestKey, claims};

    let key = TestKey::ec("k1");
    let host = DocumentHost::start().await;
    let client_id = host.publish(
        "client.json",
        json!({
            "client_name": "Signs only",
            "redirect_uris": [DOC_REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "jwks": key.jwks(),
        }),
    );
    let mut config = config();
    config.cimd_allow_loopback_http_for_testing = true;
    config.cimd_allowed_ports = vec![443, host.port()];
    let server = TestServer::on(Stores::memory(), config, routes());
    server.register_passkey(SETUP_TOKEN).await;
    let (code, verifier) = server.code_for(&client_id, DOC_REDIRECT).await;
    let tokens = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", DOC_REDIRECT),
                ("client_assertion_type", JWT_BEARER),
                (
                    "client_assertion",
                    &key.sign(&claims(&client_id, jose::now())),
                ),
            ]),
            &[],
        )
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());

    // The thief has the refresh token, not the key.
    let stolen = refresh_token(&tokens.json());
    let reply = server.refresh(&client_id, &stolen).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "a client that declared private_key_jwt alone refreshed with no assertion: {}",
        reply.text()
    );
}

/// SECURITY.md: "So a machine, or a thief of its credentials, cannot fill the store and evict the
/// owner's tokens". With the `MemoryLimits` of README's own example (20,000 tokens, 16 MiB), one
/// machine at 10,000 (three records a token: place, token, console row) would evict the owner's
/// live access token: the layer refuses to build so. At the largest cap it accepts, a flood past
/// the cap leaves the owner's token. (Break 5, fixed: the caps are checked against the store's
/// room at build.)
#[tokio::test]
async fn one_machine_at_the_largest_allowed_cap_cannot_evict_the_owners_token_from_readmes_store() {
    let readmes_limits = || {
        mcp_oauth::MemoryLimits::default()
            .tokens(20_000)
            .token_bytes(16 << 20)
    };
    let refused =
        mcp_oauth::McpOAuth::builder(machine_config_with(MACHINE_SECRET, &["mcp"], 10_000))
            .token_store(std::sync::Arc::new(mcp_oauth::MemoryStore::with_limits(
                readmes_limits(),
            )))
            .build();
    match refused {
        Err(mcp_oauth::Error::InvalidConfig { field, reason }) => {
            assert_eq!(field, "machine_clients");
            assert!(reason.contains("more than a quarter"), "{reason}");
        }
        Err(other) => panic!("expected InvalidConfig, got {other:?}"),
        Ok(_) => panic!("a machine able to fill the store was configured"),
    }

    // A quarter of 20,000 records, three a token.
    let largest = 1_666;
    let stores = Stores::of(mcp_oauth::MemoryStore::with_limits(readmes_limits()));
    let config = machine_config_with(MACHINE_SECRET, &["mcp"], largest);
    let server = TestServer::on(stores, config, routes());
    server.register_passkey(SETUP_TOKEN).await;
    let (_, owners) = server.connected_client().await;
    let owner_token = access_token(&owners);
    // A second passes so the machine's tokens expire after the owner's (evicted first if any).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut minted = 0;
    for _ in 0..largest + 300 {
        let reply = machine_token(&server, MACHINE_SECRET).await;
        if reply.status == StatusCode::OK {
            minted += 1;
        } else {
            reply.assert_oauth_error(400, "invalid_request");
        }
    }
    assert_eq!(minted, largest, "the cap holds");
    let call = server.mcp(Some(&owner_token)).await;
    assert_eq!(
        call.status,
        StatusCode::OK,
        "the owner's live access token was evicted by one machine within its configured cap"
    );
}

/// SECURITY.md: "a flood of made-up key ids is held to the failure budget of the address sending
/// it (each one is a failed assertion, and a spent budget fetches nothing)"; "each made-up id costs
/// its sender a unit of budget". One address sending its made-up key ids at once (within the
/// default auth tier's burst of 60) to a client whose key host is 300 ms away makes the server
/// fetch that host at most its budget of 20 times. (Break 6, fixed: the unit is now held across
/// the refetch, not only checked before it; it used to fetch once per request.)
#[cfg(feature = "cimd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_made_up_kids_from_one_address_is_held_to_the_budget() {
    use crate::common::jose::{self, JWT_BEARER, TestKey, claims};

    let key = TestKey::rsa("k1");
    let host = DocumentHost::start().await;
    host.serve("slow-jwks.json", key.jwks());
    let client_id = host.publish(
        "client.json",
        json!({
            "client_name": "ChatGPT",
            "redirect_uris": [DOC_REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks_uri": host.url("slow-jwks.json"),
        }),
    );
    let mut config = config();
    config.cimd_allow_loopback_http_for_testing = true;
    config.cimd_allowed_ports = vec![443, host.port()];
    let server = std::sync::Arc::new(TestServer::on(Stores::memory(), config, routes()));
    let body = |assertion: &str| {
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "not-a-refresh-token"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ])
    };
    // The client's own request caches its document and key set.
    let first = server
        .post_form(
            "/token",
            &body(&key.sign(&claims(&client_id, jose::now()))),
            &[],
        )
        .await;
    first.assert_oauth_error(400, "invalid_grant");
    let before = host.hits("slow-jwks.json");

    let forger = TestKey::rsa("x");
    let mut tasks = Vec::new();
    for i in 0..60 {
        let made_up = forger.sign_as(
            "RS256",
            Some(&format!("made-up-{i}")),
            &claims(&client_id, jose::now()),
        );
        let server = std::sync::Arc::clone(&server);
        let body = body(&made_up);
        tasks.push(tokio::spawn(async move {
            server.post_form("/token", &body, &[]).await.status.as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let fetches = host.hits("slow-jwks.json") - before;
    println!("{fetches} fetches; statuses {statuses:?}");
    assert!(
        fetches <= 20,
        "one address made the server fetch the client's key set {fetches} times (budget 20)"
    );
}

/// Held: neither a machine's secret (right, or mistyped by one character) nor its signed
/// assertion reaches the log (at TRACE), the connection doctor or the audit events.
#[tokio::test]
async fn a_machines_credentials_reach_no_log_doctor_or_audit_event() {
    use crate::common::jose::{self, JWT_BEARER, TestKey, claims};
    use crate::secrets::Capture;

    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let key = TestKey::ec("k1");
    let mut config = machine_config_with(MACHINE_SECRET, &["mcp"], 5);
    config.machine_clients[0].jwks = Some(key.jwks().to_string());
    let stores = Stores::memory();
    let seen = std::sync::Arc::clone(&events);
    let oauth = stores
        .apply(mcp_oauth::McpOAuth::builder(config))
        .on_audit(move |event| seen.lock().unwrap().push(format!("{event:?}")))
        .build()
        .unwrap();
    let server = TestServer::serving(oauth, stores, routes());

    let mistyped = format!("{}X", &MACHINE_SECRET[..MACHINE_SECRET.len() - 1]);
    let good = machine_token(&server, MACHINE_SECRET).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.text());
    let token = access_token(&good.json());
    machine_token(&server, &mistyped)
        .await
        .assert_oauth_error(401, "invalid_client");
    let assertion = key.sign(&claims(MACHINE_ID, jose::now()));
    for _ in 0..2 {
        // The second use is a replay: refused, and logged nowhere either.
        server
            .post_form(
                "/token",
                &form(&[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &assertion),
                ]),
                &[],
            )
            .await;
    }
    // The secret in the body, where a doctor reading the body could pick it up.
    server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "client_credentials"),
                ("client_id", MACHINE_ID),
                ("client_secret", &mistyped),
                ("scope", "admin"),
            ]),
            &[],
        )
        .await;
    server.mcp(Some(&token)).await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let doctor = format!("{:?}", server.oauth.admin().connection_traces());
    let audit = events.lock().unwrap().join("\n");
    let basic = basic(MACHINE_ID, MACHINE_SECRET);
    let basic = basic.trim_start_matches("Basic ");
    let signature = assertion.rsplit('.').next().unwrap();
    for (place, text) in [("log", &logs), ("doctor", &doctor), ("audit", &audit)] {
        for secret in [MACHINE_SECRET, mistyped.as_str(), basic, signature, &token] {
            assert!(!text.contains(secret), "{place} holds a credential: {text}");
        }
    }
    assert!(doctor.contains(MACHINE_ID), "{doctor}");
}

/// Held: a machine's token is nothing at the owner's console, as the session cookie, its CSRF
/// token or a bearer token: it cannot revoke the owner's grant.
#[tokio::test]
async fn a_machines_token_opens_nothing_at_the_owners_console() {
    use crate::console::{Session, console_post};

    let server = TestServer::on(
        Stores::memory(),
        machine_config_with(MACHINE_SECRET, &["mcp"], 5),
        routes(),
    );
    server.register_passkey(SETUP_TOKEN).await;
    let (_, owners) = server.connected_client().await;
    let owner_token = access_token(&owners);
    let grant = server.mcp(Some(&owner_token)).await.json()["grant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = access_token(&machine_token(&server, MACHINE_SECRET).await.json());
    let forged = Session {
        cookie: format!("mcp-oauth-console={token}"),
        csrf: token.clone(),
    };
    let reply = console_post(
        &server,
        Some(&forged),
        None,
        "/oauth/console/grants/revoke",
        json!({ "grant_id": grant }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    let bearer = server
        .send(
            axum::http::Request::post("/oauth/console/grants/revoke")
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .header(axum::http::header::ORIGIN, SERVER_URL)
                .header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"))
                .header("x-csrf-token", &token)
                .body(axum::body::Body::from(
                    json!({ "grant_id": grant }).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(bearer.status, StatusCode::UNAUTHORIZED, "{}", bearer.text());
    assert_eq!(server.mcp(Some(&owner_token)).await.status, StatusCode::OK);
}
