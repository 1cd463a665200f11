//! Outside review of `client_credentials` (issue 21 item 5): reproductions. Each test asserts the
//! guarantee as the docs state it; a failing test is a reproduced break. A test renamed to state
//! its rule holds a fixed break; one ignored with a break number reproduces a break still open.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use mcp_oauth::{MachineClient, MemoryLimits, MemoryStore, OAuthConfig, TokenInfo, TokenSubject};
use serde_json::{Value, json};

use crate::common::jose::{self, JWT_BEARER, TestKey, claims};
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

fn machine_config_with(secret: &str, scopes: &[&str]) -> OAuthConfig {
    let mut config = config();
    config.scopes = vec!["mcp".into(), "reports:read".into(), "admin".into()];
    config.machine_clients = vec![MachineClient::with_secret(
        MACHINE_ID,
        secret,
        scopes.iter().copied(),
    )];
    config
}

/// The smallest memory store the default cap of 100 tokens (300 records) builds with: a quarter
/// of its room.
fn small_store() -> MemoryLimits {
    MemoryLimits::new(1200, 1024)
}

fn machine_config() -> OAuthConfig {
    machine_config_with(MACHINE_SECRET, &["mcp", "reports:read"])
}

async fn machine_token(server: &TestServer, secret: &str, extra: &[(&str, &str)]) -> Reply {
    let mut fields = vec![("grant_type", "client_credentials")];
    fields.extend_from_slice(extra);
    server
        .post_form(
            "/token",
            &form(&fields),
            &[("authorization", &basic(MACHINE_ID, secret))],
        )
        .await
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

/// SECURITY.md: "a machine dropped from the configuration loses its tokens". The bearer guard
/// refuses it, but `/introspect` (for resource servers outside the guard) still says active.
#[tokio::test]
async fn introspection_reports_a_removed_machines_token_inactive() {
    let stores = Stores::memory();
    let server = TestServer::on(stores.clone(), machine_config(), routes());
    let reply = machine_token(&server, MACHINE_SECRET, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let token = access_token(&reply.json());

    // Restarted on the same store without the machine client.
    let restarted = TestServer::on(stores, config(), routes());
    assert_eq!(
        restarted.mcp(Some(&token)).await.status,
        StatusCode::UNAUTHORIZED,
        "the guard refuses it"
    );
    let described = introspect(&restarted, &token).await;
    assert_eq!(
        described,
        json!({ "active": false }),
        "introspection of a removed machine's token"
    );
}

/// README: "remove it there, and its tokens stop working at the next start". The owner removes a
/// leaked machine, restarts, and later adds it back under the same id with a new secret: every
/// token minted with the leaked secret works again.
#[tokio::test]
async fn a_removed_machine_added_back_with_a_new_secret_does_not_revive_its_old_tokens() {
    let stores = Stores::memory();
    let server = TestServer::on(stores.clone(), machine_config(), routes());
    let reply = machine_token(&server, MACHINE_SECRET, &[]).await;
    let stolen = access_token(&reply.json());

    let removed = TestServer::on(stores.clone(), config(), routes());
    assert_eq!(
        removed.mcp(Some(&stolen)).await.status,
        StatusCode::UNAUTHORIZED
    );

    let readded = TestServer::on(
        stores,
        machine_config_with(NEW_SECRET, &["mcp", "reports:read"]),
        routes(),
    );
    // The leaked secret no longer gets a token...
    assert_eq!(
        machine_token(&readded, MACHINE_SECRET, &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    // ...but the token minted with it, "lost" at the last start, is back.
    let call = readded.mcp(Some(&stolen)).await;
    assert_eq!(
        call.status,
        StatusCode::UNAUTHORIZED,
        "a token the removal took away works again: {}",
        call.text()
    );
}

/// "It gets the scopes it asks for within its configured list, never beyond": after the owner
/// narrows the list (and restarts), its live tokens keep the scope taken away.
#[tokio::test]
async fn narrowing_a_machines_scopes_narrows_its_live_tokens() {
    let stores = Stores::memory();
    let server = TestServer::on(stores.clone(), machine_config(), routes());
    let reply = machine_token(&server, MACHINE_SECRET, &[]).await;
    let token = access_token(&reply.json());

    let narrowed = TestServer::on(
        stores,
        machine_config_with(MACHINE_SECRET, &["mcp"]),
        routes(),
    );
    let call = narrowed.mcp(Some(&token)).await;
    assert_eq!(call.status, StatusCode::OK);
    let caller = call.json();
    assert_eq!(
        caller["scopes"],
        json!(["mcp"]),
        "a machine's token carries a scope no longer in its configured list: {caller}"
    );
}

/// "A machine's token can never be mistaken for an owner-approved one": the guard says
/// `TokenSubject::Machine`, but an introspecting resource server gets the very same fields for a
/// machine's token as for an owner-approved one.
#[tokio::test]
async fn introspection_marks_a_machines_token_with_its_client_as_sub() {
    let server = TestServer::on(Stores::memory(), machine_config(), routes());
    server.register_passkey(SETUP_TOKEN).await;
    let (_, owners) = server.connected_client().await;
    let reply = machine_token(&server, MACHINE_SECRET, &[("scope", "mcp")]).await;
    let machines = access_token(&reply.json());

    let keys = |v: &Value| -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let owner = introspect(&server, &access_token(&owners)).await;
    let machine = introspect(&server, &machines).await;
    println!("owner's:   {owner}\nmachine's: {machine}");
    assert_ne!(
        keys(&owner),
        keys(&machine),
        "nothing in the introspection response marks the machine's token"
    );
    // RFC 9068 §2.2's convention: a token no person authorized has the client as its subject.
    assert_eq!(machine["sub"], MACHINE_ID, "{machine}");
    assert_eq!(owner.get("sub"), None, "{owner}");
}

/// 600 `client_credentials` requests by one machine: the first 100 (its default cap on live
/// tokens) get tokens, every later one a 400 `invalid_request` that stores nothing.
async fn flood(server: &TestServer) {
    let mut minted = 0;
    for _ in 0..600 {
        let reply = machine_token(server, MACHINE_SECRET, &[]).await;
        if reply.status == StatusCode::OK {
            minted += 1;
        } else {
            reply.assert_oauth_error(400, "invalid_request");
        }
    }
    assert_eq!(minted, MachineClient::DEFAULT_MAX_LIVE_TOKENS);
}

/// Before the cap: a machine's tokens were not capped, and each is two records (token + grant) in
/// the long-lived table of the MemoryStore, whose eviction drops the records closest to expiry:
/// an owner-approved access token issued earlier than the flood goes.
#[tokio::test]
async fn a_machines_token_flood_is_capped_and_leaves_the_owners_access_token_in_the_memory_store() {
    let stores = Stores::of(MemoryStore::with_limits(small_store()));
    let mut config = machine_config();
    // The flood below is ~600 requests; from one address at the default auth tier (120 a minute)
    // that is 5 minutes; with the default store (100,000 records) about 44,000 requests, 6 hours.
    config.rate_limits.enabled = false;
    let server = TestServer::on(stores, config, routes());
    server.register_passkey(SETUP_TOKEN).await;
    let (owners_client, owners) = server.connected_client().await;
    let owner_token = access_token(&owners);
    assert_eq!(server.mcp(Some(&owner_token)).await.status, StatusCode::OK);

    // A second passes so the machine's tokens expire after the owner's.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    flood(&server).await;
    let call = server.mcp(Some(&owner_token)).await;
    let (client_id, refresh) = (owners_client, refresh_token(&owners));
    println!(
        "owner's access token after the flood: {}; its refresh: {}",
        call.status,
        server.refresh(&client_id, &refresh).await.status
    );
    assert_eq!(
        call.status,
        StatusCode::OK,
        "the owner's live access token was evicted by a machine's flood: {}",
        call.text()
    );
}

/// Same flood, against refresh-token reuse detection: the owner's rotated (consumed) refresh
/// token is what the memory store evicts first, so a thief replaying it after the grace window
/// no longer revokes the grant.
#[tokio::test]
async fn a_machines_token_flood_is_capped_and_leaves_refresh_reuse_detection_working() {
    let clock = mcp_oauth::ManualClock::new();
    let stores = Stores::of(MemoryStore::with_limits(small_store()));
    let mut config = machine_config();
    config.rate_limits.enabled = false;
    let server = TestServer::on_clock(stores, config, routes(), &clock);
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, owners) = server.connected_client().await;
    let stolen = refresh_token(&owners);
    let rotated = server.refresh(&client_id, &stolen).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    let current = refresh_token(&rotated.json());

    flood(&server).await;
    clock.advance(std::time::Duration::from_secs(3600));
    // The thief replays the rotated refresh token, well after the grace window.
    let replay = server.refresh(&client_id, &stolen).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.text());
    println!("replay: {} {}", replay.status, replay.text());
    // Reuse after the grace window must revoke the whole grant: the owner's current refresh
    // token (30 days, never evicted by the flood's 1-day tokens) must be dead.
    let after = server.refresh(&client_id, &current).await;
    assert_eq!(
        after.status,
        StatusCode::BAD_REQUEST,
        "refresh-token reuse went undetected after a machine's flood; the grant lives on: {}",
        after.text()
    );
}

/// Control for the test above: without the flood, the same replay revokes the grant.
#[tokio::test]
async fn review_control_without_a_flood_refresh_reuse_revokes_the_grant() {
    let clock = mcp_oauth::ManualClock::new();
    let stores = Stores::of(MemoryStore::with_limits(small_store()));
    let mut config = machine_config();
    config.rate_limits.enabled = false;
    let server = TestServer::on_clock(stores, config, routes(), &clock);
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, owners) = server.connected_client().await;
    let stolen = refresh_token(&owners);
    let rotated = server.refresh(&client_id, &stolen).await;
    let current = refresh_token(&rotated.json());
    clock.advance(std::time::Duration::from_secs(3600));
    let replay = server.refresh(&client_id, &stolen).await;
    println!("control replay: {} {}", replay.status, replay.text());
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.text());
    let after = server.refresh(&client_id, &current).await;
    assert_eq!(after.status, StatusCode::BAD_REQUEST, "{}", after.text());
}

/// Held: look-alike client ids never reach the machine.
#[tokio::test]
async fn review_look_alike_machine_ids_are_not_the_machine() {
    let server = TestServer::on(Stores::memory(), machine_config(), routes());
    for id in [
        "Nightly-Report",
        "NIGHTLY-REPORT",
        " nightly-report",
        "nightly-report ",
        "nightly-report\t",
        "nightly-report\u{200b}",
        "\u{feff}nightly-report",
        "nightly\u{2011}report",
        "ｎｉｇｈｔｌｙ-report",
        "nightly-report\0",
        "nightly-report/",
    ] {
        for body in [form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", MACHINE_SECRET),
        ])] {
            let reply = server.post_form("/token", &body, &[]).await;
            assert_ne!(reply.status, StatusCode::OK, "{id:?}: {}", reply.text());
        }
        let reply = server
            .post_form(
                "/token",
                &form(&[("grant_type", "client_credentials")]),
                &[("authorization", &basic(id, MACHINE_SECRET))],
            )
            .await;
        assert_ne!(reply.status, StatusCode::OK, "{id:?}: {}", reply.text());
    }
    // Basic vs body disagreement, two methods at once.
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
            ]),
            &[("authorization", &basic(MACHINE_ID, MACHINE_SECRET))],
        )
        .await;
    reply.assert_oauth_error(400, "invalid_request");
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "client_credentials"),
                ("client_secret", MACHINE_SECRET),
            ]),
            &[("authorization", &basic(CLIENT_ID, CLIENT_SECRET))],
        )
        .await;
    reply.assert_oauth_error(400, "invalid_request");
}

/// Held: a registration naming the machine's id (and asking for client_credentials) gets an id
/// of its own and is refused the grant.
#[tokio::test]
async fn review_a_registration_cannot_take_a_machines_id() {
    let server = TestServer::on(Stores::memory(), machine_config(), routes());
    let reply = server
        .post_json(
            "/register",
            &json!({
                "client_id": MACHINE_ID,
                "redirect_uris": [LOOPBACK_REDIRECT],
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["client_credentials", "authorization_code"],
                "client_name": "I am the machine",
            }),
        )
        .await;
    println!("{} {}", reply.status, reply.text());
    if reply.status == StatusCode::CREATED {
        let registered = reply.json();
        let id = registered["client_id"].as_str().unwrap();
        assert_ne!(id, MACHINE_ID);
        let secret = registered["client_secret"].as_str().unwrap();
        let reply = server
            .post_form(
                "/token",
                &form(&[("grant_type", "client_credentials")]),
                &[("authorization", &basic(id, secret))],
            )
            .await;
        reply.assert_oauth_error(400, "unauthorized_client");
        // Its secret is not the machine's either.
        let reply = server
            .post_form(
                "/token",
                &form(&[("grant_type", "client_credentials")]),
                &[("authorization", &basic(MACHINE_ID, secret))],
            )
            .await;
        reply.assert_oauth_error(401, "invalid_client");
    }
}

/// Held: scope tricks never widen a machine's token.
#[tokio::test]
async fn review_scope_tricks_stay_within_the_list() {
    let mut config = machine_config();
    config.rate_limits.enabled = false;
    let server = TestServer::on(Stores::memory(), config, routes());
    let long = "mcp ".repeat(2000);
    for scope in [
        "mcp\tadmin",
        "mcp\u{a0}admin",
        "mcp\u{3000}admin",
        "mcp\u{85}admin",
        "admin\u{200b}",
        "MCP",
        "mcp,admin",
        "mcp+admin",
        "reports:read:admin",
        "*",
        long.as_str(),
    ] {
        let reply = machine_token(&server, MACHINE_SECRET, &[("scope", scope)]).await;
        if reply.status == StatusCode::OK {
            let tokens = reply.json();
            let granted = tokens["scope"].as_str().unwrap().to_owned();
            assert!(
                granted
                    .split(' ')
                    .all(|s| s == "mcp" || s == "reports:read"),
                "{scope:?} -> {granted}"
            );
            let call = server.mcp(Some(&access_token(&tokens))).await.json();
            for s in call["scopes"].as_array().unwrap() {
                assert!(s == "mcp" || s == "reports:read", "{scope:?} -> {call}");
            }
        }
    }
}

/// Held: the machine's token at the other endpoints (refresh, code, revoke by another client).
#[tokio::test]
async fn review_a_machines_token_is_useless_at_the_other_grants() {
    let server = TestServer::on(Stores::memory(), machine_config(), routes());
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, owners) = server.connected_client().await;
    let reply = machine_token(&server, MACHINE_SECRET, &[]).await;
    let token = access_token(&reply.json());

    // As a refresh token, by the owner's client, by the pre-registered client.
    server
        .refresh(&client_id, &token)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let reply = server
        .post_form(
            "/token",
            &form(&[("grant_type", "refresh_token"), ("refresh_token", &token)]),
            &[("authorization", &basic(CLIENT_ID, CLIENT_SECRET))],
        )
        .await;
    reply.assert_oauth_error(400, "invalid_grant");
    // As a code.
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &token),
                ("client_id", &client_id),
                ("code_verifier", &"a".repeat(43)),
                ("redirect_uri", LOOPBACK_REDIRECT),
            ]),
            &[],
        )
        .await;
    reply.assert_oauth_error(400, "invalid_grant");
    // The machine presenting the owner's refresh token.
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token(&owners)),
            ]),
            &[("authorization", &basic(MACHINE_ID, MACHINE_SECRET))],
        )
        .await;
    reply.assert_oauth_error(400, "unauthorized_client");
    // ... which is not burnt by the attempt.
    assert_eq!(
        server
            .refresh(&client_id, &refresh_token(&owners))
            .await
            .status,
        StatusCode::OK
    );
    // The machine revoking the owner's access token: nothing happens.
    let (_, owners2) = server.connected_client().await;
    server
        .post_form(
            "/revoke",
            &form(&[("token", &access_token(&owners2))]),
            &[("authorization", &basic(MACHINE_ID, MACHINE_SECRET))],
        )
        .await;
    assert_eq!(
        server.mcp(Some(&access_token(&owners2))).await.status,
        StatusCode::OK
    );
    // Another client revoking the machine's token: nothing happens.
    server
        .post_form(
            "/revoke",
            &form(&[("token", &token), ("client_id", &client_id)]),
            &[],
        )
        .await;
    assert_eq!(server.mcp(Some(&token)).await.status, StatusCode::OK);
    // The machine's token can't introspect, nor can the machine.
    let reply = server
        .post_form(
            "/introspect",
            &form(&[("token", &token)]),
            &[("authorization", &basic(MACHINE_ID, MACHINE_SECRET))],
        )
        .await;
    reply.assert_oauth_error(401, "invalid_client");
}

/// Held (looped): one assertion sent many times at once yields one token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn review_one_assertion_raced_yields_one_token() {
    let key = TestKey::ec("k");
    let mut config = config();
    config.rate_limits.enabled = false;
    config.machine_clients = vec![MachineClient::with_jwks(
        MACHINE_ID,
        key.jwks().to_string(),
        ["mcp"],
    )];
    let server = std::sync::Arc::new(TestServer::on(Stores::memory(), config, routes()));
    for round in 0..25 {
        let assertion = key.sign(&claims(MACHINE_ID, jose::now()));
        let body = form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ]);
        let mut tasks = Vec::new();
        for _ in 0..24 {
            let server = std::sync::Arc::clone(&server);
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                server.post_form("/token", &body, &[]).await.status
            }));
        }
        let mut ok = 0;
        for task in tasks {
            if task.await.unwrap() == StatusCode::OK {
                ok += 1;
            }
        }
        assert_eq!(ok, 1, "round {round}: {ok} tokens from one assertion");
    }
}

/// Held: a stranger at another address cannot spend the machine's failure budget.
#[tokio::test]
async fn review_a_stranger_elsewhere_cannot_lock_the_machine_out() {
    let mut config = machine_config();
    config.rate_limits.failures.max_failures = 3;
    let mut server = TestServer::on(Stores::memory(), config, routes());
    server.peer = "192.0.2.99:40000".parse().unwrap();
    for _ in 0..10 {
        machine_token(&server, "wrong-secret-wrong-secret", &[]).await;
    }
    assert_eq!(
        machine_token(&server, MACHINE_SECRET, &[]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    server.peer = "127.0.0.1:40000".parse().unwrap();
    assert_eq!(
        machine_token(&server, MACHINE_SECRET, &[]).await.status,
        StatusCode::OK
    );
}

/// The flood at the default `MemoryStore` limits (100,000 records): a machine that loops on
/// `client_credentials` evicts the owner's live access token. (Rate limits off to run in seconds;
/// at the default auth tier of 120 a minute from one address the same count takes hours, well
/// within the default one-day token lifetime that keeps the flood's tokens alive.)
#[tokio::test]
#[ignore = "runs ~60,000 requests; run with --ignored"]
async fn a_machines_flood_at_default_limits_leaves_the_owners_access_token() {
    let mut config = machine_config();
    config.rate_limits.enabled = false;
    let server = TestServer::on(Stores::memory(), config, routes());
    server.register_passkey(SETUP_TOKEN).await;
    let (_, owners) = server.connected_client().await;
    let owner_token = access_token(&owners);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut sent = 0;
    while sent < 80_000 {
        let reply = machine_token(&server, MACHINE_SECRET, &[]).await;
        if reply.status != StatusCode::OK {
            reply.assert_oauth_error(400, "invalid_request");
        }
        sent += 1;
        if sent % 1000 == 0 && server.mcp(Some(&owner_token)).await.status != StatusCode::OK {
            break;
        }
    }
    let call = server.mcp(Some(&owner_token)).await;
    assert_eq!(
        call.status,
        StatusCode::OK,
        "after {sent} client_credentials requests the owner's access token is gone: {}",
        call.text()
    );
}

/// The removal and narrowing, restarted on SQLite and Redis: the same as on memory.
async fn removal_and_restart_on(stores: Stores) {
    let server = TestServer::on(stores.clone(), machine_config(), routes());
    let reply = machine_token(&server, MACHINE_SECRET, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let token = access_token(&reply.json());
    let removed = TestServer::on(stores.clone(), config(), routes());
    assert_eq!(
        removed.mcp(Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let introspected = introspect(&removed, &token).await;
    let readded = TestServer::on(stores, machine_config_with(NEW_SECRET, &["mcp"]), routes());
    let call = readded.mcp(Some(&token)).await;
    println!(
        "removed: introspection {introspected}\nre-added with a new secret and [mcp]: {} {}",
        call.status,
        call.text()
    );
    assert_eq!(introspected["active"], false, "{introspected}");
    assert_eq!(call.status, StatusCode::UNAUTHORIZED, "{}", call.text());
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_machines_token_is_refused_and_stays_refused_when_added_back_on_sqlite() {
    use mcp_oauth::backends::sqlite::SqliteStore;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    removal_and_restart_on(Stores::of(store)).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_machines_token_is_refused_and_stays_refused_when_added_back_on_redis() {
    use mcp_oauth::backends::redis::RedisStore;

    let Some(url) = redis_url() else { return };
    let prefix = format!("mcp_oauth_review_{:016x}:", rand::random::<u64>());
    let store = RedisStore::connect(&url).await.unwrap().with_prefix(prefix);
    removal_and_restart_on(Stores::of(store)).await;
}

/// Held (looped): a burst of concurrent wrong secrets for a machine is held to its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn review_a_burst_of_wrong_machine_secrets_is_held_to_the_budget() {
    for round in 0..20 {
        let mut config = machine_config();
        config.rate_limits.auth = mcp_oauth::RateLimit::new(100_000, 100_000);
        config.rate_limits.failures.max_failures = 20;
        let server = std::sync::Arc::new(TestServer::on(Stores::memory(), config, routes()));
        let mut tasks = Vec::new();
        for i in 0..60 {
            let server = std::sync::Arc::clone(&server);
            tasks.push(tokio::spawn(async move {
                machine_token(&server, &format!("wrong-secret-number-{i:04}"), &[])
                    .await
                    .status
            }));
        }
        let mut checked = 0;
        for task in tasks {
            let status = task.await.unwrap();
            if status == StatusCode::UNAUTHORIZED {
                checked += 1;
            } else {
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            }
        }
        assert!(checked <= 20, "round {round}: {checked} secrets checked");
        assert_eq!(
            machine_token(&server, MACHINE_SECRET, &[]).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}

/// Held: a machine whose id is a metadata-document URL: the document's host cannot get the
/// machine's tokens without its secret, nor a consent page for it.
#[cfg(feature = "cimd")]
#[tokio::test]
async fn review_a_metadata_document_at_a_machines_url_is_not_the_machine() {
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client_id = format!("http://127.0.0.1:{port}/client.json");
    let document = json!({
        "client_id": client_id,
        "client_name": "Document client",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    let app = Router::new().route(
        "/client.json",
        get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        }),
    );
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut config = machine_config();
    config.machine_clients = vec![MachineClient::with_secret(
        client_id.clone(),
        MACHINE_SECRET,
        ["mcp"],
    )];
    config.cimd_allow_loopback_http_for_testing = true;
    config.cimd_allowed_ports = vec![443, port];
    let server = TestServer::on(Stores::memory(), config, routes());
    server.register_passkey(SETUP_TOKEN).await;
    let reply = server
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
            ]),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    let (_, challenge) = pkce();
    let consent = server
        .authorize(&authorization_query(
            &client_id,
            "http://127.0.0.1/callback",
            &challenge,
        ))
        .await;
    task.abort();
    assert!(consent.is_err(), "a consent page for the machine's URL id");
}

/// Held (looped): one assertion raced at two instances sharing Redis yields one token.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn review_one_assertion_raced_at_two_instances_on_redis_yields_one_token() {
    use mcp_oauth::backends::redis::RedisStore;

    let Some(url) = redis_url() else { return };
    let prefix = format!("mcp_oauth_review_{:016x}:", rand::random::<u64>());
    let store = RedisStore::connect(&url).await.unwrap().with_prefix(prefix);
    let stores = Stores::of(store);
    let key = TestKey::ec("k");
    let mut config = config();
    config.rate_limits.enabled = false;
    config.machine_clients = vec![MachineClient::with_jwks(
        MACHINE_ID,
        key.jwks().to_string(),
        ["mcp"],
    )];
    let servers = [
        std::sync::Arc::new(TestServer::on(stores.clone(), config.clone(), routes())),
        std::sync::Arc::new(TestServer::on(stores, config, routes())),
    ];
    for round in 0..25 {
        let assertion = key.sign(&claims(MACHINE_ID, jose::now()));
        let body = form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ]);
        let mut tasks = Vec::new();
        for i in 0..24 {
            let server = std::sync::Arc::clone(&servers[i % 2]);
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                server.post_form("/token", &body, &[]).await.status
            }));
        }
        let mut ok = 0;
        for task in tasks {
            if task.await.unwrap() == StatusCode::OK {
                ok += 1;
            }
        }
        assert_eq!(ok, 1, "round {round}: {ok} tokens from one assertion");
    }
}

/// SECURITY.md: "the console lists every one" of a machine's live tokens, and the owner revokes
/// each there. Under the flood, the memory store evicts a token's grant record (same expiry,
/// another shard or the other side of the eviction threshold) while the token itself lives on:
/// a live machine token the console does not list and so cannot revoke.
#[tokio::test]
async fn after_a_machines_flood_every_live_machine_token_is_in_the_console() {
    let stores = Stores::of(MemoryStore::with_limits(small_store()));
    let mut config = machine_config();
    config.rate_limits.enabled = false;
    let server = TestServer::on(stores, config, routes());
    let mut tokens = Vec::new();
    for _ in 0..600 {
        let reply = machine_token(&server, MACHINE_SECRET, &[]).await;
        if reply.status == StatusCode::OK {
            tokens.push(access_token(&reply.json()));
        } else {
            reply.assert_oauth_error(400, "invalid_request");
        }
    }
    assert_eq!(
        tokens.len(),
        100,
        "the default cap on a machine's live tokens"
    );
    let listed: std::collections::HashSet<String> = server
        .oauth
        .admin()
        .grants()
        .await
        .unwrap()
        .into_iter()
        .filter(|g| g.client_id == MACHINE_ID)
        .map(|g| g.grant_id.0)
        .collect();
    let mut live_unlisted = Vec::new();
    let mut live = 0;
    for token in &tokens {
        let call = server.mcp(Some(token)).await;
        if call.status == StatusCode::OK {
            live += 1;
            let grant = call.json()["grant_id"].as_str().unwrap().to_owned();
            if !listed.contains(&grant) {
                live_unlisted.push(grant);
            }
        }
    }
    println!(
        "{live} live machine tokens, {} grants listed, {} live tokens unlisted",
        listed.len(),
        live_unlisted.len()
    );
    assert!(
        live_unlisted.is_empty(),
        "{} live machine tokens the console does not list, e.g. {:?}",
        live_unlisted.len(),
        live_unlisted.first()
    );
}

/// Held: minting more tokens buys a machine no more MCP calls.
#[tokio::test]
async fn review_more_machine_tokens_buy_no_more_mcp_calls() {
    let mut config = machine_config();
    config.rate_limits.mcp = mcp_oauth::RateLimit::new(5, 5);
    let server = TestServer::on(Stores::memory(), config, routes());
    let mut tokens = Vec::new();
    for _ in 0..4 {
        let reply = machine_token(&server, MACHINE_SECRET, &[]).await;
        tokens.push(access_token(&reply.json()));
    }
    let mut ok = 0;
    for i in 0..20 {
        if server.mcp(Some(&tokens[i % 4])).await.status == StatusCode::OK {
            ok += 1;
        }
    }
    assert!(ok <= 6, "{ok} calls through with 4 tokens at 5 a minute");
}

/// Context for the re-add finding: rotating a leaked machine secret in the configuration (no
/// removal) leaves every token minted with the leaked secret working; only console revocation,
/// token by token, takes them back.
#[tokio::test]
async fn rotating_a_machines_secret_ends_the_tokens_minted_with_the_old_one() {
    let stores = Stores::memory();
    let server = TestServer::on(stores.clone(), machine_config(), routes());
    let stolen = access_token(&machine_token(&server, MACHINE_SECRET, &[]).await.json());
    let rotated = TestServer::on(
        stores,
        machine_config_with(NEW_SECRET, &["mcp", "reports:read"]),
        routes(),
    );
    let call = rotated.mcp(Some(&stolen)).await;
    assert_eq!(
        call.status,
        StatusCode::UNAUTHORIZED,
        "a token minted with the rotated-out secret: {}",
        call.text()
    );
}

/// SECURITY.md: "deleting a machine client there is refused (a deletion marker would otherwise
/// refuse its every later token)". An instance whose configuration does not (or no longer) name
/// the machine lets the owner delete it (its leftover tokens are listed under a "gone" client);
/// the marker then refuses every token the machine asks for at the instances that do name it,
/// for the marker's lifetime (30 days by default).
#[tokio::test]
async fn a_deletion_where_the_machine_is_not_configured_revokes_its_tokens_without_locking_it_out()
{
    let stores = Stores::memory();
    let naming = TestServer::on(stores.clone(), machine_config(), routes());
    let reply = machine_token(&naming, MACHINE_SECRET, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let leftover = access_token(&reply.json());

    // Another instance (a rolling deploy, or this one restarted without the machine for a while).
    let other = TestServer::on(stores.clone(), config(), routes());
    let deleted = other.oauth.admin().delete_client(MACHINE_ID).await;
    println!("delete on the instance without the machine: {deleted:?}");

    let reply = machine_token(&naming, MACHINE_SECRET, &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the machine, still configured, is refused every new token: {}",
        reply.text()
    );
    // The deletion did what the owner asked: the leftover token is revoked everywhere.
    assert_eq!(deleted.unwrap(), 1);
    assert_eq!(
        naming.mcp(Some(&leftover)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        naming.mcp(Some(&access_token(&reply.json()))).await.status,
        StatusCode::OK
    );
}

/// The reuse-detection flood at the default `MemoryStore` limits.
#[tokio::test]
#[ignore = "runs up to 80,000 requests; run with --ignored"]
async fn a_machines_flood_at_default_limits_leaves_refresh_reuse_detection_working() {
    let clock = mcp_oauth::ManualClock::new();
    let mut config = machine_config();
    config.rate_limits.enabled = false;
    let server = TestServer::on_clock(Stores::memory(), config, routes(), &clock);
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, owners) = server.connected_client().await;
    let stolen = refresh_token(&owners);
    let rotated = server.refresh(&client_id, &stolen).await;
    let current = refresh_token(&rotated.json());
    for _ in 0..60_000 {
        let reply = machine_token(&server, MACHINE_SECRET, &[]).await;
        if reply.status != StatusCode::OK {
            reply.assert_oauth_error(400, "invalid_request");
        }
    }
    clock.advance(std::time::Duration::from_secs(3600));
    let replay = server.refresh(&client_id, &stolen).await;
    println!(
        "replay after 60,000 machine tokens: {} {}",
        replay.status,
        replay.text()
    );
    let after = server.refresh(&client_id, &current).await;
    assert_eq!(
        after.status,
        StatusCode::BAD_REQUEST,
        "reuse undetected, the grant lives on: {}",
        after.text()
    );
}

/// Held (looped): a burst of concurrent forged assertions for a signing machine is held to its
/// budget, and its right assertion is then 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn review_a_burst_of_forged_machine_assertions_is_held_to_the_budget() {
    let key = TestKey::ec("k");
    for round in 0..20 {
        let mut config = config();
        config.rate_limits.auth = mcp_oauth::RateLimit::new(100_000, 100_000);
        config.rate_limits.failures.max_failures = 20;
        config.machine_clients = vec![MachineClient::with_jwks(
            MACHINE_ID,
            key.jwks().to_string(),
            ["mcp"],
        )];
        let server = std::sync::Arc::new(TestServer::on(Stores::memory(), config, routes()));
        let mut tasks = Vec::new();
        for _ in 0..60 {
            let server = std::sync::Arc::clone(&server);
            tasks.push(tokio::spawn(async move {
                let forger = TestKey::ec("k");
                let assertion = forger.sign(&claims(MACHINE_ID, jose::now()));
                let body = form(&[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &assertion),
                ]);
                server.post_form("/token", &body, &[]).await.status
            }));
        }
        let mut checked = 0;
        for task in tasks {
            let status = task.await.unwrap();
            if status == StatusCode::UNAUTHORIZED {
                checked += 1;
            } else {
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            }
        }
        assert!(
            checked <= 20,
            "round {round}: {checked} forged assertions checked"
        );
        let assertion = key.sign(&claims(MACHINE_ID, jose::now()));
        let body = form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ]);
        assert_eq!(
            server.post_form("/token", &body, &[]).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}

/// A machine's token stands on the configuration it was minted under: the same configuration
/// again keeps it; another key set (a rotation), or a scope list that leaves it none of its
/// scopes, ends it at the guard and at introspection alike, which also sees a narrowed list.
#[tokio::test]
async fn a_machines_token_ends_with_its_key_set_or_its_last_scope_and_introspects_narrowed() {
    let stores = Stores::memory();
    let key = TestKey::ec("k");
    let signing = |keys: &TestKey, scopes: &[&str]| {
        let mut config = config();
        config.scopes = vec!["mcp".into(), "reports:read".into(), "admin".into()];
        config.machine_clients = vec![MachineClient::with_jwks(
            MACHINE_ID,
            keys.jwks().to_string(),
            scopes.iter().copied(),
        )];
        config
    };
    let server = TestServer::on(
        stores.clone(),
        signing(&key, &["mcp", "reports:read"]),
        routes(),
    );
    let assertion = key.sign(&claims(MACHINE_ID, jose::now()));
    let reply = server
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
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let token = access_token(&reply.json());

    let same = TestServer::on(
        stores.clone(),
        signing(&key, &["mcp", "reports:read"]),
        routes(),
    );
    assert_eq!(same.mcp(Some(&token)).await.status, StatusCode::OK);

    let narrowed = TestServer::on(stores.clone(), signing(&key, &["reports:read"]), routes());
    let described = introspect(&narrowed, &token).await;
    assert_eq!(described["scope"], "reports:read", "{described}");
    assert_eq!(
        narrowed.mcp(Some(&token)).await.json()["scopes"],
        json!(["reports:read"])
    );

    let none_left = TestServer::on(stores.clone(), signing(&key, &["admin"]), routes());
    assert_eq!(
        none_left.mcp(Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        introspect(&none_left, &token).await,
        json!({ "active": false })
    );

    let rotated = TestServer::on(
        stores,
        signing(&TestKey::ec("k2"), &["mcp", "reports:read"]),
        routes(),
    );
    assert_eq!(
        rotated.mcp(Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        introspect(&rotated, &token).await,
        json!({ "active": false })
    );
}

/// A machine's cap on live tokens holds across two instances racing on one store (each place is
/// inserted only if absent), and revoking one of its tokens in the console gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_machines_live_tokens_stay_within_its_cap_across_racing_instances_and_revoking_frees_one()
{
    cap_raced_on(Stores::memory()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_machines_live_tokens_stay_within_its_cap_across_racing_instances_on_sqlite() {
    use mcp_oauth::backends::sqlite::SqliteStore;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    cap_raced_on(Stores::of(SqliteStore::connect(&url).await.unwrap())).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_machines_live_tokens_stay_within_its_cap_across_racing_instances_on_redis() {
    use mcp_oauth::backends::redis::RedisStore;

    let Some(url) = redis_url() else { return };
    let prefix = format!("mcp_oauth_review_{:016x}:", rand::random::<u64>());
    let store = RedisStore::connect(&url).await.unwrap().with_prefix(prefix);
    cap_raced_on(Stores::of(store)).await;
}

async fn cap_raced_on(stores: Stores) {
    let mut config = machine_config();
    config.rate_limits.enabled = false;
    config.machine_clients[0].max_live_tokens = 5;
    let servers = [
        std::sync::Arc::new(TestServer::on(stores.clone(), config.clone(), routes())),
        std::sync::Arc::new(TestServer::on(stores, config, routes())),
    ];
    let mut tasks = Vec::new();
    for i in 0..24 {
        let server = std::sync::Arc::clone(&servers[i % 2]);
        tasks.push(tokio::spawn(async move {
            machine_token(&server, MACHINE_SECRET, &[]).await
        }));
    }
    let mut tokens = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.status == StatusCode::OK {
            tokens.push(access_token(&reply.json()));
        } else {
            reply.assert_oauth_error(400, "invalid_request");
        }
    }
    assert_eq!(
        tokens.len(),
        5,
        "{} live tokens for a cap of 5",
        tokens.len()
    );

    let grant = servers[0].mcp(Some(&tokens[0])).await.json()["grant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    servers[1]
        .oauth
        .admin()
        .revoke_grant(&mcp_oauth::store::GrantId(grant))
        .await
        .unwrap();
    let reply = machine_token(&servers[1], MACHINE_SECRET, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    machine_token(&servers[0], MACHINE_SECRET, &[])
        .await
        .assert_oauth_error(400, "invalid_request");
}
