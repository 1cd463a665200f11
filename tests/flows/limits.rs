//! The bounds on what a client may make the server store: before the owner decides (an
//! authorization request's `state`, `scope`, `resource`) and for a client's lifetime (its
//! registered metadata), each attacked from outside with a value one past its limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::http::StatusCode;
use mcp_oauth::store::{TokenHash, TokenStore};
use mcp_oauth::store::{TokenKind, TokenRecord};
use mcp_oauth::webauthn_rs::prelude::Url;
use mcp_oauth::{MemoryLimits, MemoryStore};
use serde_json::{Value, json};

use crate::common::*;

/// The documented limits (README "Limits"), restated so that a change to one is a visible choice.
const MAX_STATE_BYTES: usize = 2048;
const MAX_SCOPE_BYTES: usize = 1024;
const MAX_URI_BYTES: usize = 2000;
const MAX_CLIENT_NAME_CHARS: usize = 200;
const MAX_REDIRECT_URIS: usize = 20;
const MAX_REDIRECT_URIS_TOTAL_BYTES: usize = 4096;

/// Counts the pending authorization requests stored.
#[derive(Clone, Default)]
struct CountsPending(Arc<AtomicUsize>);

#[async_trait]
impl StoreHooks for CountsPending {
    async fn before_insert(&self, record: &TokenRecord) {
        if record.kind == TokenKind::AuthorizationRequest {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A server whose token store counts pending requests, with a registered public client.
async fn counting_server() -> (TestServer, CountsPending, String) {
    let memory = MemoryStore::new();
    let pending = CountsPending::default();
    let stores = Stores {
        tokens: Arc::new(Hooked {
            store: memory.clone(),
            hooks: pending.clone(),
        }),
        clients: Arc::new(memory.clone()),
        passkeys: Arc::new(memory),
    };
    let server = TestServer::on(stores, config(), mcp_routes());
    server.register_passkey(SETUP_TOKEN).await;
    let client_id = server.register_public_client().await;
    (server, pending, client_id)
}

/// The query of an authorization request by `client_id` to the loopback redirect, with `state`
/// and `extra` parameters.
fn query(client_id: &str, state: &str, extra: &str) -> String {
    let (_, challenge) = pkce();
    format!(
        "{}{extra}",
        authorization_query(client_id, LOOPBACK_REDIRECT, &challenge)
            .replace("state=st", &format!("state={}", enc(state)))
    )
}

/// `GET /authorize` with that query.
async fn authorize(server: &TestServer, client_id: &str, state: &str, extra: &str) -> Reply {
    server
        .get(&format!("/authorize?{}", query(client_id, state, extra)))
        .await
}

/// The error page with a return link carrying `invalid_request`; no consent page.
#[track_caller]
fn assert_invalid_request_link(reply: &Reply, what: &str) -> String {
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{what}: {}",
        reply.text()
    );
    let page = reply.text();
    assert!(!page.contains("data-request-id"), "{what}: no consent page");
    assert!(
        page.contains("error=invalid_request"),
        "{what}: an invalid_request return link in {page}"
    );
    assert!(
        page.contains(&enc(LOOPBACK_REDIRECT)) || page.contains("127.0.0.1:9999/callback"),
        "{what}: the link goes to the registered redirect URI"
    );
    page
}

#[tokio::test]
async fn an_oversized_state_gets_no_consent_page_stores_nothing_and_is_not_echoed() {
    let (server, pending, client_id) = counting_server().await;
    let state = "s".repeat(60_000);
    let reply = authorize(&server, &client_id, &state, "").await;
    let page = assert_invalid_request_link(&reply, "a 60,000-byte state");
    assert!(
        page.contains("state"),
        "the page names the parameter: {page}"
    );
    assert!(
        !page.contains(&"s".repeat(MAX_STATE_BYTES + 1)),
        "the oversized state is not echoed back"
    );
    assert!(
        page.len() < 20_000,
        "the page does not carry the state: {} bytes",
        page.len()
    );
    assert_eq!(pending.0.load(Ordering::SeqCst), 0, "nothing was stored");

    // One past the limit is refused; the limit itself is an ordinary request, echoed exactly.
    let reply = authorize(&server, &client_id, &"s".repeat(MAX_STATE_BYTES + 1), "").await;
    assert_invalid_request_link(&reply, "a state one byte too long");
    assert_eq!(pending.0.load(Ordering::SeqCst), 0, "nothing was stored");
    let longest = "é".repeat(MAX_STATE_BYTES / 2);
    let request_id = server
        .authorize(&query(&client_id, &longest, ""))
        .await
        .unwrap_or_else(|r| panic!("a state at the limit: {}", r.text()));
    assert_eq!(pending.0.load(Ordering::SeqCst), 1);
    let denied = server
        .post_json("/authorize/deny", &json!({ "request_id": request_id }))
        .await;
    let redirect = Url::parse(denied.json()["redirect_to"].as_str().unwrap()).unwrap();
    assert_eq!(query_param(&redirect, "state").as_deref(), Some(&*longest));
}

#[tokio::test]
async fn oversized_scope_and_resource_are_invalid_request_with_the_state_echoed() {
    let (server, pending, client_id) = counting_server().await;
    let long_scope = format!("mcp {}", "x".repeat(MAX_SCOPE_BYTES));
    let long_resource = format!("{RESOURCE}/{}", "r".repeat(MAX_URI_BYTES));
    for (what, extra) in [
        ("scope", format!("&scope={}", enc(&long_scope))),
        ("resource", format!("&resource={}", enc(&long_resource))),
    ] {
        let reply = authorize(&server, &client_id, "st", &extra).await;
        let page = assert_invalid_request_link(&reply, what);
        assert!(page.contains(what), "the page names {what}: {page}");
        assert!(page.contains("state=st"), "{what}: the state is echoed");
    }
    assert_eq!(pending.0.load(Ordering::SeqCst), 0, "nothing was stored");

    // At the limits: a consent page.
    let scope = format!("mcp {}", "x".repeat(MAX_SCOPE_BYTES - 4));
    server
        .authorize(&query(&client_id, "st", &format!("&scope={}", enc(&scope))))
        .await
        .unwrap_or_else(|r| panic!("a scope at the limit: {}", r.text()));
}

#[tokio::test]
async fn an_oversized_client_id_or_redirect_uri_gets_the_error_page_and_stores_nothing() {
    let (server, pending, client_id) = counting_server().await;
    let (_, challenge) = pkce();
    let long_redirect = format!("{LOOPBACK_REDIRECT}?{}", "p".repeat(60_000));
    for (what, query) in [
        (
            "client_id",
            authorization_query(&"c".repeat(60_000), LOOPBACK_REDIRECT, &challenge),
        ),
        (
            "URL client_id",
            authorization_query(
                &format!("https://client.example/{}", "c".repeat(60_000)),
                LOOPBACK_REDIRECT,
                &challenge,
            ),
        ),
        (
            "redirect_uri",
            authorization_query(&client_id, &long_redirect, &challenge),
        ),
    ] {
        let reply = server.get(&format!("/authorize?{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}");
        let page = reply.text();
        assert!(!page.contains("data-request-id"), "{what}: no consent page");
        assert!(!page.contains("error="), "{what}: no return link: {page}");
        assert!(page.len() < 20_000, "{what}: nothing echoed");
    }
    assert_eq!(pending.0.load(Ordering::SeqCst), 0, "nothing was stored");
}

/// Claude's registration, with `changes` applied (a `null` removes the field).
fn registration(changes: &Value) -> Value {
    let mut metadata = json!({
        "client_name": "Claude",
        "client_uri": "https://claude.ai",
        "redirect_uris": [CLAUDE_REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "mcp",
    });
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            metadata.as_object_mut().unwrap().remove(key);
        } else {
            metadata[key] = value.clone();
        }
    }
    metadata
}

#[tokio::test]
async fn every_stored_metadata_field_is_bounded_at_registration() {
    let server = TestServer::new().await;
    let long_uri = |len: usize| {
        let base = "https://claude.ai/";
        format!("{base}{}", "u".repeat(len - base.len()))
    };
    let many: Vec<String> = (0..=MAX_REDIRECT_URIS)
        .map(|i| format!("https://claude.ai/cb/{i}"))
        .collect();
    for (field, over, code, needle) in [
        (
            "client_name",
            json!("n".repeat(MAX_CLIENT_NAME_CHARS + 1)),
            "invalid_client_metadata",
            "client_name is longer than 200 characters",
        ),
        (
            "client_name",
            json!("名".repeat(MAX_CLIENT_NAME_CHARS + 1)),
            "invalid_client_metadata",
            "client_name is longer than 200 characters",
        ),
        (
            "client_uri",
            json!(long_uri(MAX_URI_BYTES + 1)),
            "invalid_client_metadata",
            "client_uri is longer than 2000 bytes",
        ),
        (
            "scope",
            json!(format!("mcp {}", "s".repeat(MAX_SCOPE_BYTES))),
            "invalid_client_metadata",
            "scope is longer than 1024 bytes",
        ),
        (
            "redirect_uris",
            json!([long_uri(MAX_URI_BYTES + 1)]),
            "invalid_redirect_uri",
            "redirect URI is longer than 2000 bytes",
        ),
        (
            "redirect_uris",
            json!(many),
            "invalid_redirect_uri",
            "redirect_uris must list between 1 and 20 URIs",
        ),
    ] {
        let reply = server
            .post_json("/register", &registration(&json!({ field: over })))
            .await;
        reply.assert_oauth_error(400, code);
        let description = reply.json()["error_description"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            description.contains(needle),
            "{field}: the description says why: {description}"
        );
    }
    // Everything at its limit registers, and is stored and returned unchanged.
    let at_limits = registration(&json!({
        "client_name": "名".repeat(MAX_CLIENT_NAME_CHARS),
        "client_uri": long_uri(MAX_URI_BYTES),
        "scope": format!("mcp {}", "s".repeat(MAX_SCOPE_BYTES - 4)),
        "redirect_uris": (0..MAX_REDIRECT_URIS)
            .map(|i| if i == 0 { long_uri(MAX_URI_BYTES) } else { format!("https://claude.ai/cb/{i}") })
            .collect::<Vec<_>>(),
    }));
    let body = server.register_client(at_limits.clone()).await;
    for field in ["client_name", "client_uri", "scope", "redirect_uris"] {
        assert_eq!(body[field], at_limits[field], "{field}");
    }
}

/// Twenty redirect URIs of 2,000 bytes each pass the per-URI limit but would make one registration
/// 40 KiB, and the cap on unapproved registrations would then bound little: the URIs are bounded
/// in all too.
#[tokio::test]
async fn redirect_uris_are_bounded_in_all_at_registration() {
    let server = TestServer::new().await;
    // Distinct URIs of the given lengths.
    let uris = |lengths: &[usize]| -> Vec<String> {
        lengths
            .iter()
            .enumerate()
            .map(|(i, len)| {
                let base = format!("https://claude.ai/{i}/");
                format!("{base}{}", "u".repeat(len - base.len()))
            })
            .collect()
    };
    let largest = uris(&[MAX_URI_BYTES; MAX_REDIRECT_URIS]);
    let reply = server
        .post_json(
            "/register",
            &registration(&json!({ "redirect_uris": largest })),
        )
        .await;
    reply.assert_oauth_error(400, "invalid_redirect_uri");
    assert!(
        reply.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("redirect_uris are longer than 4096 bytes in all"),
        "{}",
        reply.text()
    );
    // At the limit exactly, and one byte over.
    let at_limit = uris(&[1366, 1365, 1365]);
    assert_eq!(at_limit.concat().len(), MAX_REDIRECT_URIS_TOTAL_BYTES);
    let body = server
        .register_client(registration(&json!({ "redirect_uris": at_limit })))
        .await;
    assert_eq!(body["redirect_uris"], json!(at_limit));
    server
        .post_json(
            "/register",
            &registration(&json!({ "redirect_uris": uris(&[1366, 1366, 1365]) })),
        )
        .await
        .assert_oauth_error(400, "invalid_redirect_uri");
}

#[tokio::test]
async fn a_flood_of_large_pending_requests_keeps_approved_tokens_within_the_byte_budget() {
    const BUDGET: usize = 256 * 1024;
    let memory = MemoryStore::with_limits(
        MemoryLimits::default()
            .tokens(1_000)
            .token_bytes(BUDGET as u64),
    );
    let mut config = config();
    // Addresses are cheap for an attacker with a botnet: the store's bound is the last line.
    config.rate_limits.enabled = false;
    let server = TestServer::on(Stores::of(memory.clone()), config, mcp_routes());
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    // A code approved but not yet exchanged expires before any pending request does.
    let (code, verifier) = server.code_for(&client_id, LOOPBACK_REDIRECT).await;

    let state = "s".repeat(MAX_STATE_BYTES);
    let mut request_ids = Vec::new();
    for _ in 0..300 {
        request_ids.push(
            server
                .authorize(&query(&client_id, &state, ""))
                .await
                .unwrap_or_else(|r| panic!("{}", r.text())),
        );
    }
    let mut held = 0;
    for request_id in &request_ids {
        let stored = TokenStore::get(
            &memory,
            TokenKind::AuthorizationRequest,
            &TokenHash::of(request_id),
        )
        .await
        .unwrap();
        held += usize::from(stored.is_some());
    }
    assert!(
        held * MAX_STATE_BYTES <= BUDGET,
        "{held} pending requests with a {MAX_STATE_BYTES}-byte state are held"
    );
    assert!(held > 0, "the newest requests are kept");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(server.mcp(Some(access)).await.status, StatusCode::OK);
    let exchanged = server
        .exchange(&client_id, &code, &verifier, LOOPBACK_REDIRECT)
        .await;
    assert_eq!(exchanged.status, StatusCode::OK, "{}", exchanged.text());
}
