//! Registration capacity: what strangers register without the owner's approval can never evict or
//! make unreachable a client the owner approved, on any backend; past the cap, registrations are
//! refused (503 with `Retry-After`), never admitted by dropping someone else.

use axum::http::StatusCode;
use mcp_oauth::ManualClock;
use mcp_oauth::store::UnixTime;
use serde_json::json;

use crate::common::*;

/// The default cap on registrations awaiting approval (`OAuthConfig::max_unapproved_clients`).
const DEFAULT_CAP: usize = 1_000;

/// A client the owner approved keeps refreshing through a flood of more registrations than the
/// cap (and than the memory store's capacity), and the flood past the cap is refused.
async fn a_flood_cannot_evict_an_approved_client(stores: Stores) {
    let mut config = config();
    // Addresses are cheap for an attacker with a botnet: the store's bound is the last line.
    config.rate_limits.enabled = false;
    let server = TestServer::on(stores, config, mcp_routes());
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;

    let flood = DEFAULT_CAP + 20;
    let (mut admitted, mut refused) = (0, 0);
    for n in 0..flood {
        let reply = server
            .post_json(
                "/register",
                &json!({
                    "redirect_uris": [LOOPBACK_REDIRECT],
                    "token_endpoint_auth_method": "none",
                    "client_name": format!("flood {n}"),
                }),
            )
            .await;
        match reply.status {
            StatusCode::CREATED => admitted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                reply.assert_oauth_error(503, "temporarily_unavailable");
                assert!(
                    reply.header("retry-after").is_some(),
                    "503 without Retry-After"
                );
                refused += 1;
            }
            other => panic!("registration {n}: {other} {}", reply.text()),
        }
    }

    let refreshed = server
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        refreshed.status,
        StatusCode::OK,
        "the approved client was evicted by {flood} registrations: {}",
        refreshed.text()
    );
    assert!(
        admitted <= DEFAULT_CAP && refused >= flood - DEFAULT_CAP,
        "{admitted} of {flood} registrations admitted, {refused} refused: the cap of \
         {DEFAULT_CAP} does not hold"
    );
}

#[tokio::test]
async fn a_flood_cannot_evict_an_approved_client_from_memory() {
    // A store smaller than the flood: the flood must be refused, not admitted by eviction.
    let stores = Stores::of(mcp_oauth::MemoryStore::with_capacity(1_000, 50));
    a_flood_cannot_evict_an_approved_client(stores).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_flood_cannot_evict_an_approved_client_from_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_flood_cannot_evict_an_approved_client(sqlite(&dir).await).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_flood_cannot_evict_an_approved_client_from_redis() {
    let Some(stores) = redis().await else { return };
    a_flood_cannot_evict_an_approved_client(stores).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_flood_cannot_evict_an_approved_client_from_postgres() {
    let Some(stores) = postgres().await else {
        return;
    };
    a_flood_cannot_evict_an_approved_client(stores).await;
}

/// A schema of its own on the test PostgreSQL, or `None` when skipping.
#[cfg(feature = "postgres")]
async fn postgres() -> Option<Stores> {
    let url = crate::postgres_support::fresh_postgres_url().await?;
    let store = mcp_oauth::backends::PostgresStore::connect(&url)
        .await
        .unwrap();
    Some(Stores::of(store))
}

/// An SQLite file in `dir`.
#[cfg(feature = "sqlite")]
async fn sqlite(dir: &tempfile::TempDir) -> Stores {
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    Stores::of(
        mcp_oauth::backends::SqliteStore::connect(&url)
            .await
            .unwrap(),
    )
}

/// The test Redis under a prefix of its own, or `None` when skipping.
#[cfg(feature = "redis")]
async fn redis() -> Option<Stores> {
    let url = redis_url()?;
    let prefix = format!("mcp_oauth_regcap_{:016x}:", rand::random::<u64>());
    let store = mcp_oauth::backends::RedisStore::connect(&url)
        .await
        .unwrap()
        .with_prefix(prefix);
    Some(Stores::of(store))
}

/// Approval takes a client out of the count and gives it the approved lifetime; registrations
/// nobody approves lapse after their short one. (That a lapsed registration frees its place is the
/// store's own rule, by the store's own clock: `conformance::client_lapsed_unapproved_do_not_count`
/// checks it on every backend.)
async fn approval_frees_a_place_and_unapproved_registrations_lapse(stores: Stores) {
    let public = || {
        json!({
            "redirect_uris": [LOOPBACK_REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        })
    };
    // Room for one registration awaiting approval.
    let mut one_place = config();
    one_place.rate_limits.enabled = false;
    one_place.max_unapproved_clients = 1;
    let server = TestServer::on(stores.clone(), one_place, mcp_routes());
    server.register_passkey(SETUP_TOKEN).await;
    let approved = server.client_id_for(public()).await;
    let full = server.post_json("/register", &public()).await;
    full.assert_oauth_error(503, "temporarily_unavailable");
    assert_eq!(full.header("retry-after"), Some("60"));
    // The owner approves it: its place is free, and it lives the approved lifetime.
    let (code, verifier) = server.code_for(&approved, LOOPBACK_REDIRECT).await;
    let tokens = server
        .exchange(&approved, &code, &verifier, LOOPBACK_REDIRECT)
        .await
        .json();
    let record = stores.clients.get(&approved).await.unwrap().unwrap();
    let ninety_days = 90 * 24 * 3600;
    assert!(
        record.approved_at.is_some()
            && record
                .expires_at
                .is_some_and(|at| at.0 + 60 >= UnixTime::now().0 + ninety_days),
        "approval records itself and gives the approved lifetime: {record:?}"
    );
    let waiting = server.client_id_for(public()).await;
    assert_eq!(
        server
            .oauth
            .admin()
            .remove_unapproved_clients()
            .await
            .unwrap(),
        1
    );
    assert!(stores.clients.get(&waiting).await.unwrap().is_none());

    // Registrations that live a minute: two places.
    let mut short_lived = config();
    short_lived.rate_limits.enabled = false;
    short_lived.max_unapproved_clients = 2;
    short_lived.unapproved_client_lifetime_secs = 60;
    let clock = ManualClock::new();
    let short = TestServer::on_clock(stores.clone(), short_lived, mcp_routes(), &clock);
    let lapsing = short.client_id_for(public()).await;
    short.client_id_for(public()).await;
    short
        .post_json("/register", &public())
        .await
        .assert_oauth_error(503, "temporarily_unavailable");
    // Past their lifetime they are gone; the approved client is untouched.
    clock.advance(std::time::Duration::from_secs(60));
    let (_, challenge) = pkce();
    assert!(
        short
            .authorize(&authorization_query(
                &lapsing,
                LOOPBACK_REDIRECT,
                &challenge
            ))
            .await
            .is_err(),
        "a lapsed registration is an unknown client"
    );
    let refreshed = short
        .refresh(&approved, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
}

#[tokio::test]
async fn approval_frees_a_place_and_unapproved_registrations_lapse_on_memory() {
    approval_frees_a_place_and_unapproved_registrations_lapse(Stores::memory()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn approval_frees_a_place_and_unapproved_registrations_lapse_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    approval_frees_a_place_and_unapproved_registrations_lapse(sqlite(&dir).await).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn approval_frees_a_place_and_unapproved_registrations_lapse_on_redis() {
    let Some(stores) = redis().await else { return };
    approval_frees_a_place_and_unapproved_registrations_lapse(stores).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn approval_frees_a_place_and_unapproved_registrations_lapse_on_postgres() {
    let Some(stores) = postgres().await else {
        return;
    };
    approval_frees_a_place_and_unapproved_registrations_lapse(stores).await;
}
