//! Fourth outside review of `client_credentials` and `private_key_jwt` (issue 21): reproductions.
//! Each test asserts a guarantee as README.md / SECURITY.md / the issue state it. The five breaks
//! the reading reproduced are fixed; each test's comment says how. The others attacked something
//! not tested before and held.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use mcp_oauth::store::TokenKind;
use mcp_oauth::store::TokenRecord;
use mcp_oauth::{MachineClient, MemoryStore, OAuthConfig, TokenInfo, TokenSubject};
use serde_json::{Value, json};

use crate::common::*;

const MACHINE_ID: &str = "nightly-report";
const MACHINE_SECRET: &str = "machine-secret-0123456789abcdef";

fn routes() -> Router {
    Router::new().route(
        "/mcp",
        any(|caller: TokenInfo| async move {
            axum::Json(json!({
                "client_id": caller.client_id,
                "machine": caller.subject == TokenSubject::Machine,
            }))
        }),
    )
}

fn machine_config(cap: u32) -> OAuthConfig {
    let mut config = config();
    config.rate_limits.enabled = false;
    let mut machine = MachineClient::with_secret(MACHINE_ID, MACHINE_SECRET, ["mcp"]);
    machine.max_live_tokens = cap;
    config.machine_clients = vec![machine];
    config
}

async fn machine_token(server: &TestServer) -> Reply {
    server
        .post_form(
            "/token",
            &form(&[("grant_type", "client_credentials")]),
            &[("authorization", &basic(MACHINE_ID, MACHINE_SECRET))],
        )
        .await
}

/// Stalls the first token-store write that follows a machine's place being taken (the minting
/// of its token), and says when it got there.
#[derive(Default)]
struct StallsMintingAfterPlace {
    armed: AtomicBool,
    place_taken: AtomicBool,
    reached: tokio::sync::Notify,
}

#[async_trait]
impl StoreHooks for Arc<StallsMintingAfterPlace> {
    async fn before_insert(&self, record: &TokenRecord) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        if record.kind == TokenKind::MachineSlot {
            self.place_taken.store(true, Ordering::SeqCst);
            return;
        }
        if self.place_taken.load(Ordering::SeqCst) && self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            // A slow store (a Redis round trip across a network blip): the request is dropped
            // meanwhile, by a client that disconnects or a timeout layer in front of the router.
            std::future::pending::<()>().await;
        }
    }
}

/// machine.rs: "No token came of it: give the place back"; SECURITY.md: a place is held "until its
/// token expires or is revoked". A `client_credentials` request dropped after its place was
/// taken and before its token was minted (the client hung up, or a `TimeoutLayer` fired while the
/// store was slow) mints no token and lists no console row, yet keeps the place for the whole
/// token lifetime: a machine with a cap of 1 is locked out, and the owner has nothing to revoke.
/// (Break 2, fixed: a place taken for an unanswered request is given back when the request is
/// dropped, by a task its drop spawns; on this test's single-threaded runtime that task runs
/// before the test resumes.)
#[tokio::test]
async fn a_dropped_client_credentials_request_gives_its_place_back() {
    let hooks = Arc::new(StallsMintingAfterPlace::default());
    let tokens = Arc::new(Hooked {
        store: MemoryStore::new(),
        hooks: Arc::clone(&hooks),
    });
    let memory = MemoryStore::new();
    let stores = Stores {
        tokens,
        clients: Arc::new(memory.clone()),
        passkeys: Arc::new(memory),
    };
    let server = Arc::new(TestServer::on(stores, machine_config(1), routes()));
    hooks.armed.store(true, Ordering::SeqCst);
    let reached = hooks.reached.notified();
    let request = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { machine_token(&server).await })
    };
    reached.await;
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());

    let grants = server.oauth.admin().grants().await.unwrap();
    assert!(
        grants.iter().all(|g| g.client_id != MACHINE_ID),
        "no token was minted, so the console lists none"
    );
    let next = machine_token(&server).await;
    assert_eq!(
        next.status,
        StatusCode::OK,
        "a machine holding no live token (and no console row to revoke) is refused: {}",
        next.text()
    );
}

/// A key host on loopback: serves JSON by name, `slow-` names a few hundred milliseconds away
/// (a host across the internet), and counts hits.
#[cfg(feature = "cimd")]
struct KeyHost {
    base: String,
    state: Arc<HostState>,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "cimd")]
#[derive(Default)]
struct HostState {
    documents: std::sync::Mutex<std::collections::HashMap<String, Value>>,
    hits: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

#[cfg(feature = "cimd")]
impl Drop for KeyHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(feature = "cimd")]
impl KeyHost {
    async fn start() -> Self {
        use axum::extract::{Path, State};
        use axum::response::IntoResponse;
        type Shared = Arc<HostState>;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Shared::default();
        let app = Router::new()
            .route(
                "/{name}",
                axum::routing::get(
                    |State(state): State<Shared>, Path(name): Path<String>| async move {
                        *state.hits.lock().unwrap().entry(name.clone()).or_default() += 1;
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

    fn serve(&self, name: &str, value: Value) {
        self.state
            .documents
            .lock()
            .unwrap()
            .insert(name.to_owned(), value);
    }

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

/// The issue: "unknown `kid` after the JWKS rotated (accepted after one refetch)"; jwks.rs: "the
/// client may have rotated its keys". ChatGPT (one client id for every user of a connector)
/// rotates its signing key: it publishes the new key, then signs with it. Two users' refreshes
/// signed with the new key reach the server at once, while the key host is 300 ms away. Both are
/// the real client with its real, published key; both must authenticate (here: reach the grant
/// check, `invalid_grant` for a made-up refresh token, not 401 `invalid_client`). (Break 1, fixed:
/// requests naming one new key id share the one refetch and all get its answer.)
#[cfg(feature = "cimd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_uses_of_a_rotated_key_all_authenticate() {
    use crate::common::jose::{self, JWT_BEARER, TestKey, claims};

    let old = TestKey::rsa("2026-11");
    let new = TestKey::rsa("2026-12");
    let host = KeyHost::start().await;
    host.serve("slow-jwks.json", old.jwks());
    let client_id = host.publish(
        "client.json",
        json!({
            "client_name": "ChatGPT",
            "client_uri": "https://chatgpt.com/",
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
    let server = Arc::new(TestServer::on(Stores::memory(), config, routes()));
    let body = |assertion: &str| {
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "not-a-refresh-token"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ])
    };
    // The client's own request caches its document and key set.
    server
        .post_form(
            "/token",
            &body(&old.sign(&claims(&client_id, jose::now()))),
            &[],
        )
        .await
        .assert_oauth_error(400, "invalid_grant");

    // The rotation: both keys published, the new one used from now on.
    let mut both = old.jwks();
    both["keys"]
        .as_array_mut()
        .unwrap()
        .push(new.jwks()["keys"][0].clone());
    host.serve("slow-jwks.json", both);
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let server = Arc::clone(&server);
        let body = body(&new.sign(&claims(&client_id, jose::now())));
        tasks.push(tokio::spawn(async move {
            let reply = server.post_form("/token", &body, &[]).await;
            (reply.status.as_u16(), reply.text())
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    for (status, text) in &answers {
        assert_eq!(
            *status, 400,
            "the real client signing with its newly published key was refused: {text} (all: {answers:?})"
        );
    }
}

/// What break 1 costs: SECURITY.md's failure budget keeps "other clients and the owner behind the
/// same address" unaffected, and a client's own good requests are never its failures. ChatGPT's
/// refreshes come from a few egress addresses; at its key rotation, 30 of them signed with the
/// new key arrive within the key host's 300 ms. Every one is the real client with its published
/// key, yet all but one are counted as failures: the address's budget (20 in 10 minutes) is
/// spent within the burst, the rest of the burst is answered 429, and the budget is left with
/// one unit for the 10 minutes: any one more failure from that address locks the connector out.
/// (Break 1, fixed: a request sharing a refetch under way holds no unit of the budget.)
#[cfg(feature = "cimd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_first_uses_of_a_rotated_key_leaves_the_client_its_budget() {
    use crate::common::jose::{self, JWT_BEARER, TestKey, claims};

    let old = TestKey::rsa("2026-11");
    let new = TestKey::rsa("2026-12");
    let host = KeyHost::start().await;
    host.serve("slow-jwks.json", old.jwks());
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
    let server = Arc::new(TestServer::on(Stores::memory(), config, routes()));
    let body = |assertion: &str| {
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "not-a-refresh-token"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ])
    };
    server
        .post_form(
            "/token",
            &body(&old.sign(&claims(&client_id, jose::now()))),
            &[],
        )
        .await
        .assert_oauth_error(400, "invalid_grant");

    let mut both = old.jwks();
    both["keys"]
        .as_array_mut()
        .unwrap()
        .push(new.jwks()["keys"][0].clone());
    host.serve("slow-jwks.json", both);
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let server = Arc::clone(&server);
        let body = body(&new.sign(&claims(&client_id, jose::now())));
        tasks.push(tokio::spawn(async move {
            server.post_form("/token", &body, &[]).await.status.as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        limited, 0,
        "the real client's own good requests spent its failure budget: {limited} of 30 answered 429 (all: {statuses:?})"
    );
    let next = server
        .post_form(
            "/token",
            &body(&new.sign(&claims(&client_id, jose::now()))),
            &[],
        )
        .await;
    assert_eq!(
        (next.status.as_u16(), next.error()),
        (400, "invalid_grant".to_owned()),
        "after the rotation, the real client signing with its cached, published key is refused: {}",
        next.text()
    );
}

/// SECURITY.md: a registered client's `jwks_uri` is "accepted only where metadata documents are
/// on"; the registration refusal says "this server does not fetch client key sets (client
/// metadata documents are off)". A client registered with a `jwks_uri` while documents were on,
/// served after a restart (or by another instance on the same store) with documents off, must
/// not get in by that URL: the server fetches no key set a stranger named. It does get in, and
/// the server fetches the stranger's URL, as soon as any configured machine has a `jwks_uri`
/// (which builds the key fetcher); without one, the same client is refused. Documents off no
/// longer means "no stranger's URL is fetched". (Break 3, fixed: where documents are off, a
/// registered `jwks_uri` verifies nothing.)
#[cfg(feature = "cimd")]
#[tokio::test]
async fn with_documents_off_a_registered_jwks_uri_is_neither_fetched_nor_accepted() {
    use crate::common::jose::{self, JWT_BEARER, TestKey, claims};

    let key = TestKey::rsa("dcr-uri");
    let machine_key = TestKey::rsa("machine");
    let host = KeyHost::start().await;
    host.serve("jwks.json", key.jwks());
    host.serve("machine-jwks.json", machine_key.jwks());
    let base = |documents: bool| {
        let mut config = config();
        config.client_id_metadata_documents = documents;
        config.cimd_allow_loopback_http_for_testing = true;
        config.cimd_allowed_ports = vec![443, host.port()];
        config
    };
    let stores = Stores::memory();
    let before = TestServer::on(stores.clone(), base(true), routes());
    let registration = before
        .register_client(json!({
            "redirect_uris": [LOOPBACK_REDIRECT],
            "client_name": "Signing Client",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks_uri": host.url("jwks.json"),
        }))
        .await;
    let client_id = registration["client_id"].as_str().unwrap().to_owned();
    drop(before);

    let signed = || {
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "not-a-refresh-token"),
            ("client_assertion_type", JWT_BEARER),
            (
                "client_assertion",
                &key.sign(&claims(&client_id, jose::now())),
            ),
        ])
    };
    // Documents off, no configured key URL: refused, nothing fetched.
    let plain = TestServer::on(stores.clone(), base(false), routes());
    let reply = plain.post_form("/token", &signed(), &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert_eq!(host.hits("jwks.json"), 0);

    // Documents off, and a machine publishing its keys at a URL.
    let mut config = base(false);
    config.machine_clients = vec![MachineClient::with_jwks_uri(
        "ops-bot",
        host.url("machine-jwks.json"),
        ["mcp"],
    )];
    let with_machine = TestServer::on(stores, config, routes());
    let reply = with_machine.post_form("/token", &signed(), &[]).await;
    let fetched = host.hits("jwks.json");
    assert_eq!(
        (reply.status, fetched),
        (StatusCode::UNAUTHORIZED, 0),
        "documents are off, yet the stranger's jwks_uri was fetched {fetched} times and the client answered: {}",
        reply.text()
    );
}

/// SECURITY.md: "So a machine, or a thief of its credentials, cannot fill the store and evict the
/// owner's tokens"; "A machine that revokes its own token at `/revoke` gives its place back at
/// once". Each such revocation writes a grant-revoked marker that lives for the refresh-token
/// lifetime (30 days) in the memory store's long-lived table, outside every place and cap. A
/// machine that takes a token and revokes it, over and over (a thief of its credentials; or just
/// an SDK that revokes at the end of each job, run often enough), fills the table with markers and
/// evicts the owner's live access token. Shown on the `MemoryLimits` of README's own example
/// (20,000 tokens, 16 MiB) and a cap of 50 (150 records, far below the quarter the layer checks):
/// about 20,000 rounds (a few hours of one address within the default rate limits, far less from
/// several addresses); nothing else bounds them. (Once the
/// table is full the machine's own fresh tokens get evicted too, before its `/revoke` finds them,
/// so some of its places stay taken: those rounds are skipped, as a thief would.) (Break 4,
/// fixed: a machine's own revocation writes no marker; its grant has no token left to catch.)
#[tokio::test]
async fn a_machine_revoking_its_own_tokens_cannot_evict_the_owners_token() {
    let limits = mcp_oauth::MemoryLimits::default()
        .tokens(20_000)
        .token_bytes(16 << 20);
    let stores = Stores::of(MemoryStore::with_limits(limits));
    let server = TestServer::on(stores, machine_config(50), routes());
    server.register_passkey(SETUP_TOKEN).await;
    let (_, owners) = server.connected_client().await;
    let owner_token = access_token(&owners);
    assert_eq!(server.mcp(Some(&owner_token)).await.status, StatusCode::OK);

    let mut revoked_rounds = 0;
    for round in 0..30_000 {
        if round % 500 == 0 && server.mcp(Some(&owner_token)).await.status != StatusCode::OK {
            break;
        }
        let reply = machine_token(&server).await;
        if reply.status != StatusCode::OK {
            // Every place it tried is held by a token the store evicted: try again.
            reply.assert_oauth_error(400, "invalid_request");
            continue;
        }
        let token = access_token(&reply.json());
        let revoked = server
            .post_form(
                "/revoke",
                &form(&[("token", &token)]),
                &[("authorization", &basic(MACHINE_ID, MACHINE_SECRET))],
            )
            .await;
        assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
        revoked_rounds += 1;
        if revoked_rounds == 1_000 {
            let call = server.mcp(Some(&owner_token)).await;
            assert_eq!(
                call.status,
                StatusCode::OK,
                "a thousand rounds fill nothing yet"
            );
        }
    }
    let call = server.mcp(Some(&owner_token)).await;
    assert_eq!(
        call.status,
        StatusCode::OK,
        "the owner's live access token was evicted after {revoked_rounds} rounds of one machine revoking its own tokens"
    );
}

/// The assertion module: the unit of a request whose unknown key id makes the server refetch the
/// key set is held across the refetch and kept spent if the request is abandoned (the client's
/// HTTP timeout, a proxy closing the connection while the key host is slow): the server fetched
/// on its word, and a sender hanging up on each refetch it caused must not fetch for free.
/// Afterwards 19 failures, not 20, bring the client to 429. (Break 5 of the outside reading, a
/// stated rule now: giving the unit back would let made-up key ids sent and abandoned make the
/// server fetch without limit.)
#[cfg(feature = "cimd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_abandoned_during_a_refetch_it_caused_keeps_its_unit_spent() {
    use crate::common::jose::{self, JWT_BEARER, TestKey, claims};

    let old = TestKey::rsa("2026-11");
    let new = TestKey::rsa("2026-12");
    let host = KeyHost::start().await;
    host.serve("slow-jwks.json", old.jwks());
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
    let port = host.port();
    let server_config = || {
        let mut config = config();
        config.cimd_allow_loopback_http_for_testing = true;
        config.cimd_allowed_ports = vec![443, port];
        config
    };
    let server = Arc::new(TestServer::on(Stores::memory(), server_config(), routes()));
    let body = |assertion: &str| {
        form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "not-a-refresh-token"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ])
    };
    server
        .post_form(
            "/token",
            &body(&old.sign(&claims(&client_id, jose::now()))),
            &[],
        )
        .await
        .assert_oauth_error(400, "invalid_grant");

    let mut both = old.jwks();
    both["keys"]
        .as_array_mut()
        .unwrap()
        .push(new.jwks()["keys"][0].clone());
    host.serve("slow-jwks.json", both);
    let before = host.hits("slow-jwks.json");
    let request = {
        let server = Arc::clone(&server);
        let body = body(&new.sign(&claims(&client_id, jose::now())));
        tokio::spawn(async move { server.post_form("/token", &body, &[]).await })
    };
    // The refetch has reached the key host: drop the request.
    while host.hits("slow-jwks.json") == before {
        tokio::task::yield_now().await;
    }
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());

    // Twenty failed checks are the client's budget from this address: each is a 401, and the
    // next is 429 (shown first on a server where nothing was dropped).
    let forger = TestKey::rsa("2026-11");
    let control = TestServer::on(Stores::memory(), server_config(), routes());
    for failure in 1..=21 {
        let reply = control
            .post_form(
                "/token",
                &body(&forger.sign(&claims(&client_id, jose::now()))),
                &[],
            )
            .await;
        let expected = if failure <= 20 { 401 } else { 429 };
        assert_eq!(
            reply.status.as_u16(),
            expected,
            "control, failure {failure}"
        );
    }
    for failure in 1..=20 {
        let reply = server
            .post_form(
                "/token",
                &body(&forger.sign(&claims(&client_id, jose::now()))),
                &[],
            )
            .await;
        // The abandoned request's unit is the first of the twenty.
        let expected = if failure <= 19 { 401 } else { 429 };
        assert_eq!(
            reply.status.as_u16(),
            expected,
            "failure {failure} after one abandoned refetch: {}",
            reply.text()
        );
    }
}

/// Held: RFC 7009 §2.1 and the machine fix (a revoke by the machine ends its grant). A machine
/// revoking the owner's client's token, and the owner's client revoking the machine's token,
/// each end nothing: both tokens still work, and the machine's place stays taken.
#[tokio::test]
async fn a_revocation_across_a_machine_and_another_client_ends_nothing() {
    let server = TestServer::on(Stores::memory(), machine_config(1), routes());
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, owners) = server.connected_client().await;
    let owner_access = access_token(&owners);
    let owner_refresh = refresh_token(&owners);
    let machines = access_token(&machine_token(&server).await.json());

    for token in [&owner_access, &owner_refresh] {
        let reply = server
            .post_form(
                "/revoke",
                &form(&[("token", token)]),
                &[("authorization", &basic(MACHINE_ID, MACHINE_SECRET))],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let reply = server
        .post_form(
            "/revoke",
            &form(&[("token", &machines), ("client_id", &client_id)]),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    assert_eq!(server.mcp(Some(&owner_access)).await.status, StatusCode::OK);
    assert_eq!(
        server.refresh(&client_id, &owner_refresh).await.status,
        StatusCode::OK,
        "the machine's revocation ended the owner's grant"
    );
    assert_eq!(server.mcp(Some(&machines)).await.status, StatusCode::OK);
    machine_token(&server)
        .await
        .assert_oauth_error(400, "invalid_request");
}

/// Fails the store write that mints a machine's token (the token itself is written, then the
/// store reports an error, as a Redis reply lost on the way back would).
#[derive(Default)]
struct FailsMachineMinting {
    armed: AtomicBool,
}

#[async_trait]
impl StoreHooks for Arc<FailsMachineMinting> {
    async fn after_insert(
        &self,
        _store: &MemoryStore,
        record: &TokenRecord,
    ) -> Result<(), mcp_oauth::store::StoreError> {
        if record.kind == TokenKind::AccessToken && self.armed.swap(false, Ordering::SeqCst) {
            return Err(mcp_oauth::store::StoreError::backend("test", "lost reply"));
        }
        Ok(())
    }
}

/// Held: machine.rs "No token came of it: give the place back". A `client_credentials` request
/// whose minting fails in the store (after its place was taken, and after the token was written)
/// answers an error, leaves no working token, and gives the place back: a machine at a cap of 1
/// gets its next token.
#[tokio::test]
async fn a_failed_minting_gives_the_machines_place_back() {
    let hooks = Arc::new(FailsMachineMinting::default());
    let memory = MemoryStore::new();
    let stores = Stores {
        tokens: Arc::new(Hooked {
            store: MemoryStore::new(),
            hooks: Arc::clone(&hooks),
        }),
        clients: Arc::new(memory.clone()),
        passkeys: Arc::new(memory),
    };
    let server = TestServer::on(stores, machine_config(1), routes());
    hooks.armed.store(true, Ordering::SeqCst);
    let failed = machine_token(&server).await;
    assert!(failed.status.is_server_error(), "{}", failed.text());
    let next = machine_token(&server).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text());
    let grants = server.oauth.admin().grants().await.unwrap();
    assert_eq!(
        grants.iter().filter(|g| g.client_id == MACHINE_ID).count(),
        1,
        "one live token, one console row"
    );
}
