//! `CachingStore` in front of each backend (memory, SQLite, Redis, PostgreSQL), attacked on its one promise: a revocation through the
//! instance that remembers a token is seen there at once; one through another instance sharing
//! the store is seen within the staleness bound, and not a moment later. Time is a manual clock,
//! so the bound is checked exactly, without waiting.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use mcp_oauth::{CachingStore, ManualClock};

use crate::common::*;

const STALENESS: Duration = Duration::from_secs(5);

/// Two instances of one service on `shared`: `caching` remembers access tokens, `plain` does not.
fn instances(shared: Stores, clock: &ManualClock) -> (TestServer, TestServer) {
    let remembering = Stores {
        tokens: Arc::new(
            CachingStore::new(Arc::clone(&shared.tokens), STALENESS).clock(clock.clone()),
        ),
        ..shared.clone()
    };
    let caching = TestServer::on_clock(remembering, config(), mcp_routes(), clock);
    let plain = TestServer {
        key: Arc::clone(&caching.key),
        ..TestServer::on_clock(shared, config(), mcp_routes(), clock)
    };
    (caching, plain)
}

async fn revoke(server: &TestServer, client_id: &str, token: &str) {
    let reply = server
        .post_form(
            "/revoke",
            &form(&[("token", token), ("client_id", client_id)]),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

async fn a_revocation_elsewhere_is_seen_within_the_bound(shared: Stores) {
    let clock = ManualClock::new();
    // Ahead of the system clock it stands still, so only the advances below move it.
    clock.advance(Duration::from_secs(3_600));
    let (caching, plain) = instances(shared, &clock);
    caching.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = caching.connected_client().await;
    let access = access_token(&tokens);
    assert_eq!(caching.mcp(Some(&access)).await.status, StatusCode::OK);

    // Revoking the refresh token at the other instance ends the grant there at once...
    revoke(&plain, &client_id, &refresh_token(&tokens)).await;
    assert_eq!(
        plain.mcp(Some(&access)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // ...and here the remembered token stands for the bound, as documented, and no longer.
    assert_eq!(caching.mcp(Some(&access)).await.status, StatusCode::OK);
    clock.advance(STALENESS - Duration::from_millis(1));
    assert_eq!(
        caching.mcp(Some(&access)).await.status,
        StatusCode::OK,
        "within the bound"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        caching.mcp(Some(&access)).await.status,
        StatusCode::UNAUTHORIZED,
        "a revoked token stood past the staleness bound"
    );
}

async fn a_revocation_here_is_seen_at_once(shared: Stores) {
    let clock = ManualClock::new();
    let (caching, _plain) = instances(shared, &clock);
    caching.register_passkey(SETUP_TOKEN).await;

    // One access token revoked alone.
    let (client_id, tokens) = caching.connected_client().await;
    let access = access_token(&tokens);
    assert_eq!(caching.mcp(Some(&access)).await.status, StatusCode::OK);
    revoke(&caching, &client_id, &access).await;
    assert_eq!(
        caching.mcp(Some(&access)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A whole grant, by its refresh token.
    let (client_id, tokens) = caching.connected_client().await;
    let access = access_token(&tokens);
    assert_eq!(caching.mcp(Some(&access)).await.status, StatusCode::OK);
    revoke(&caching, &client_id, &refresh_token(&tokens)).await;
    assert_eq!(
        caching.mcp(Some(&access)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A grant the owner revokes at the console.
    let (_, tokens) = caching.connected_client().await;
    let access = access_token(&tokens);
    assert_eq!(caching.mcp(Some(&access)).await.status, StatusCode::OK);
    let admin = caching.oauth.admin();
    for grant in admin.grants().await.unwrap() {
        admin.revoke_grant(&grant.grant_id).await.unwrap();
    }
    assert_eq!(
        caching.mcp(Some(&access)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn memory_a_revocation_elsewhere_is_seen_within_the_bound() {
    a_revocation_elsewhere_is_seen_within_the_bound(Stores::memory()).await;
}

#[tokio::test]
async fn memory_a_revocation_here_is_seen_at_once() {
    a_revocation_here_is_seen_at_once(Stores::memory()).await;
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use mcp_oauth::SqliteStore;

    use crate::common::*;

    async fn open() -> (tempfile::TempDir, Stores) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
        (dir, Stores::of(SqliteStore::connect(&url).await.unwrap()))
    }

    #[tokio::test]
    async fn a_revocation_elsewhere_is_seen_within_the_bound() {
        let (_dir, stores) = open().await;
        super::a_revocation_elsewhere_is_seen_within_the_bound(stores).await;
    }

    #[tokio::test]
    async fn a_revocation_here_is_seen_at_once() {
        let (_dir, stores) = open().await;
        super::a_revocation_here_is_seen_at_once(stores).await;
    }
}

#[cfg(feature = "redis")]
mod redis {
    use mcp_oauth::RedisStore;

    use crate::common::*;

    async fn open() -> Option<Stores> {
        let url = redis_url()?;
        let prefix = format!("mcp_oauth_caching_{:016x}:", rand::random::<u64>());
        Some(Stores::of(
            RedisStore::connect(&url).await.unwrap().with_prefix(prefix),
        ))
    }

    #[tokio::test]
    async fn a_revocation_elsewhere_is_seen_within_the_bound() {
        let Some(stores) = open().await else { return };
        super::a_revocation_elsewhere_is_seen_within_the_bound(stores).await;
    }

    #[tokio::test]
    async fn a_revocation_here_is_seen_at_once() {
        let Some(stores) = open().await else { return };
        super::a_revocation_here_is_seen_at_once(stores).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use mcp_oauth::backends::PostgresStore;

    use crate::common::*;
    use crate::postgres_support::{drop_schema, new_schema, postgres_url};

    #[tokio::test]
    async fn a_revocation_elsewhere_is_seen_within_the_bound() {
        let Some(server) = postgres_url() else { return };
        let (url, schema) = new_schema(&server).await;
        let stores = Stores::of(PostgresStore::connect(&url).await.unwrap());
        super::a_revocation_elsewhere_is_seen_within_the_bound(stores).await;
        drop_schema(&server, &schema).await;
    }

    #[tokio::test]
    async fn a_revocation_here_is_seen_at_once() {
        let Some(server) = postgres_url() else { return };
        let (url, schema) = new_schema(&server).await;
        let stores = Stores::of(PostgresStore::connect(&url).await.unwrap());
        super::a_revocation_here_is_seen_at_once(stores).await;
        drop_schema(&server, &schema).await;
    }
}
