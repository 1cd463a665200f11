//! A rotated refresh token presented again within the grace window gets the pair its first rotation
//! issued, never a pair of its own: everyone holding the token shares one chain, so a thief and the
//! owner cannot both keep refreshing, and the second to rotate after the window revokes the grant.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use mcp_oauth::store::{StoreError, TokenHash, TokenKind, TokenRecord, TokenStore};
use mcp_oauth::{ManualClock, MemoryStore};

use crate::common::*;

/// Rounds of the owner and the thief refreshing at once.
const ROUNDS: usize = 20;

fn short_grace() -> mcp_oauth::OAuthConfig {
    let mut config = config();
    config.refresh_grace_secs = 1;
    config
}

/// An instance of a service with a one-second grace window, with the owner's key, on `clock`.
fn short_grace_instance(
    stores: Stores,
    key: Arc<tokio::sync::Mutex<SoftAuthenticator>>,
    clock: &ManualClock,
) -> TestServer {
    TestServer {
        key,
        ..TestServer::on_clock(stores, short_grace(), mcp_routes(), clock)
    }
}

/// The refresh tokens among `handed_out` that can still be rotated: one per live chain.
async fn live_refresh_tokens(stores: &Stores, handed_out: &HashSet<String>) -> Vec<String> {
    let mut live = Vec::new();
    for token in handed_out {
        let record = stores
            .tokens
            .get(TokenKind::RefreshToken, &TokenHash::of(token))
            .await
            .unwrap();
        if record.is_some() {
            live.push(token.clone());
        }
    }
    live
}

async fn refresh_in_task(server: &Arc<TestServer>, client_id: &str, token: &str) -> Reply {
    let (server, client_id, token) = (Arc::clone(server), client_id.to_owned(), token.to_owned());
    tokio::spawn(async move { server.refresh(&client_id, &token).await })
        .await
        .unwrap()
}

/// The thief stole the owner's refresh token. Round after round both refresh at once, each with the
/// token it holds, the owner at one instance and the thief at the other: there is never more than
/// one live chain. Past the window, the second to rotate the token they share revokes the grant.
/// Both instances run on `clock`.
async fn an_owner_and_a_thief_share_one_chain(
    owner: TestServer,
    thief: TestServer,
    clock: &ManualClock,
) {
    let (owner, thief) = (Arc::new(owner), Arc::new(thief));
    let registered = owner.register_passkey(SETUP_TOKEN).await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.text());
    let (client_id, tokens) = owner.connected_client().await;
    let stolen = refresh_token(&tokens);
    let (mut owners, mut thiefs) = (stolen.clone(), stolen.clone());
    let mut handed_out = HashSet::from([stolen]);
    for round in 0..ROUNDS {
        let (by_owner, by_thief) = tokio::join!(
            refresh_in_task(&owner, &client_id, &owners),
            refresh_in_task(&thief, &client_id, &thiefs)
        );
        assert_eq!(by_owner.status, StatusCode::OK, "{}", by_owner.text());
        assert_eq!(by_thief.status, StatusCode::OK, "{}", by_thief.text());
        owners = refresh_token(&by_owner.json());
        thiefs = refresh_token(&by_thief.json());
        handed_out.extend([owners.clone(), thiefs.clone()]);
        let live = live_refresh_tokens(&owner.stores, &handed_out).await;
        assert!(
            live.len() <= 1,
            "round {round}: {} live chains in one grant",
            live.len()
        );
        assert_eq!(owners, thiefs, "round {round}: both hold the one chain");
    }

    // The owner rotates the shared token; the thief's copy comes back after the window.
    let rotated = owner.refresh(&client_id, &owners).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    let rotated = rotated.json();
    clock.advance(Duration::from_secs(2));
    thief
        .refresh(&client_id, &thiefs)
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        owner.mcp(Some(&access_token(&rotated))).await.status,
        StatusCode::UNAUTHORIZED,
        "reuse of the shared token revoked the grant"
    );
    owner
        .refresh(&client_id, &refresh_token(&rotated))
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert!(
        live_refresh_tokens(&owner.stores, &handed_out)
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_and_a_thief_share_one_chain_on_memory() {
    let stores = Stores::memory();
    let key = Arc::new(tokio::sync::Mutex::new(SoftAuthenticator::new(true)));
    let clock = ManualClock::new();
    an_owner_and_a_thief_share_one_chain(
        short_grace_instance(stores.clone(), Arc::clone(&key), &clock),
        short_grace_instance(stores, key, &clock),
        &clock,
    )
    .await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_and_a_thief_share_one_chain_on_sqlite() {
    use mcp_oauth::backends::sqlite::SqliteStore;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    let key = Arc::new(tokio::sync::Mutex::new(SoftAuthenticator::new(true)));
    let clock = ManualClock::new();
    an_owner_and_a_thief_share_one_chain(
        short_grace_instance(
            Stores::of(SqliteStore::connect(&url).await.unwrap()),
            Arc::clone(&key),
            &clock,
        ),
        short_grace_instance(
            Stores::of(SqliteStore::connect(&url).await.unwrap()),
            key,
            &clock,
        ),
        &clock,
    )
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_and_a_thief_share_one_chain_on_postgres() {
    use mcp_oauth::backends::PostgresStore;

    let Some(url) = crate::postgres_support::fresh_postgres_url().await else {
        return;
    };
    let key = Arc::new(tokio::sync::Mutex::new(SoftAuthenticator::new(true)));
    let clock = ManualClock::new();
    an_owner_and_a_thief_share_one_chain(
        short_grace_instance(
            Stores::of(PostgresStore::connect(&url).await.unwrap()),
            Arc::clone(&key),
            &clock,
        ),
        short_grace_instance(
            Stores::of(PostgresStore::connect(&url).await.unwrap()),
            key,
            &clock,
        ),
        &clock,
    )
    .await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_and_a_thief_share_one_chain_on_redis() {
    use mcp_oauth::backends::redis::RedisStore;

    let Some(url) = redis_url() else { return };
    let prefix = format!("mcp_oauth_chain_{:016x}:", rand::random::<u64>());
    let open = || async {
        Stores::of(
            RedisStore::connect(&url)
                .await
                .unwrap()
                .with_prefix(prefix.clone()),
        )
    };
    let key = Arc::new(tokio::sync::Mutex::new(SoftAuthenticator::new(true)));
    let clock = ManualClock::new();
    an_owner_and_a_thief_share_one_chain(
        short_grace_instance(open().await, Arc::clone(&key), &clock),
        short_grace_instance(open().await, key, &clock),
        &clock,
    )
    .await;
}

#[tokio::test]
async fn retries_within_the_grace_window_get_the_pair_the_first_rotation_issued() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let old = refresh_token(&tokens);
    let first = server.refresh(&client_id, &old).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let first = first.json();
    for _ in 0..2 {
        let retry = server.refresh(&client_id, &old).await;
        assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
        assert_eq!(retry.header("cache-control"), Some("no-store"));
        let retry = retry.json();
        assert_eq!(
            access_token(&retry),
            access_token(&first),
            "the same access token"
        );
        assert_eq!(
            refresh_token(&retry),
            refresh_token(&first),
            "the same refresh token"
        );
        assert_eq!(retry["scope"], first["scope"]);
        assert!(
            retry["expires_in"].as_u64().unwrap() <= first["expires_in"].as_u64().unwrap(),
            "the access token's remaining lifetime, not a fresh one"
        );
    }
    assert_eq!(
        server.mcp(Some(&access_token(&first))).await.status,
        StatusCode::OK
    );
    let next = server.refresh(&client_id, &refresh_token(&first)).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text());
}

#[tokio::test]
async fn a_retry_after_its_successor_was_rotated_revokes_the_grant() {
    let server = TestServer::ready().await;
    let (client_id, tokens) = server.connected_client().await;
    let stolen = refresh_token(&tokens);
    let first = server.refresh(&client_id, &stolen).await.json();
    let second = server.refresh(&client_id, &refresh_token(&first)).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    let second = second.json();

    // Within the window, but the chain has moved on: whoever presents this is not the one who
    // rotated its successor.
    server
        .refresh(&client_id, &stolen)
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        server.mcp(Some(&access_token(&second))).await.status,
        StatusCode::UNAUTHORIZED,
        "the grant is revoked"
    );
    server
        .refresh(&client_id, &refresh_token(&second))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

/// Access-token inserts pause, so a retry arrives while the rotation it races is still storing.
struct SlowAccessInserts;

#[async_trait]
impl StoreHooks for SlowAccessInserts {
    async fn before_insert(&self, record: &TokenRecord) {
        if record.kind == TokenKind::AccessToken {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn hooked_server<H: StoreHooks>(hooks: H) -> TestServer {
    let memory = MemoryStore::new();
    let stores = Stores {
        tokens: Arc::new(Hooked {
            store: memory.clone(),
            hooks,
        }),
        clients: Arc::new(memory.clone()),
        passkeys: Arc::new(memory),
    };
    TestServer::on(stores, config(), mcp_routes())
}

#[tokio::test]
async fn a_retry_racing_the_rotation_waits_for_its_pair() {
    let server = hooked_server(SlowAccessInserts);
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    let stolen = refresh_token(&tokens);
    let (owner, thief) = tokio::join!(
        server.refresh(&client_id, &stolen),
        server.refresh(&client_id, &stolen)
    );
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.text());
    assert_eq!(thief.status, StatusCode::OK, "{}", thief.text());
    let (owner, thief) = (owner.json(), thief.json());
    assert_eq!(access_token(&owner), access_token(&thief));
    assert_eq!(refresh_token(&owner), refresh_token(&thief), "one chain");
}

/// The first rotation's instance fails after storing the new tokens and before keeping their
/// pair (a store outage, a crash): that one insert of a pair fails.
#[derive(Default)]
struct FirstPairLost(AtomicBool);

#[async_trait]
impl StoreHooks for FirstPairLost {
    async fn after_insert(
        &self,
        store: &MemoryStore,
        record: &TokenRecord,
    ) -> Result<(), StoreError> {
        if record.kind != TokenKind::RefreshSuccessor || self.0.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        TokenStore::delete(store, record.kind, &record.hash).await?;
        Err(StoreError::backend("test", "the instance died"))
    }
}

/// The owner and the thief retry a token at once; both answers must be one pair, whose refresh
/// token is the one live chain among everything handed out.
async fn assert_retries_share_one_pair(server: &TestServer, client_id: &str, token: &str) {
    let (owner, thief) = tokio::join!(
        server.refresh(client_id, token),
        server.refresh(client_id, token)
    );
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.text());
    assert_eq!(thief.status, StatusCode::OK, "{}", thief.text());
    let (owner, thief) = (owner.json(), thief.json());
    assert_eq!(access_token(&owner), access_token(&thief));
    assert_eq!(refresh_token(&owner), refresh_token(&thief), "one chain");
    let handed_out = HashSet::from([token.to_owned(), refresh_token(&owner)]);
    assert_eq!(
        live_refresh_tokens(&server.stores, &handed_out).await,
        [refresh_token(&owner)]
    );
}

#[tokio::test]
async fn a_rotation_that_failed_midway_is_redone_once_by_its_retries() {
    let server = hooked_server(FirstPairLost::default());
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    let old = refresh_token(&tokens);
    server
        .refresh(&client_id, &old)
        .await
        .assert_oauth_error(503, "temporarily_unavailable");
    // No one was answered with that rotation's pair, so a retry may rotate again: once.
    assert_retries_share_one_pair(&server, &client_id, &old).await;
    assert_eq!(
        server.mcp(Some(&access_token(&tokens))).await.status,
        StatusCode::OK,
        "a rotation that failed is no evidence of theft: the grant stays"
    );
}

/// The first rotation's pair takes longer to store than a retry waits for it.
#[derive(Default)]
struct FirstPairSlow(AtomicBool);

#[async_trait]
impl StoreHooks for FirstPairSlow {
    async fn before_insert(&self, record: &TokenRecord) {
        if record.kind == TokenKind::RefreshSuccessor && !self.0.swap(true, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }
}

#[tokio::test]
async fn a_rotation_slower_than_its_retry_still_yields_one_chain() {
    let server = hooked_server(FirstPairSlow::default());
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    // Whichever keeps its pair first (usually the retry, which gives up waiting), the other
    // answers with that pair and takes its own tokens back.
    assert_retries_share_one_pair(&server, &client_id, &refresh_token(&tokens)).await;
}

/// Once armed, the next write of a grant's record fails after the record was removed (a store
/// outage between the two steps of listing the grant anew).
#[derive(Clone, Default)]
struct GrantListingFailsOnce(Arc<AtomicBool>);

#[async_trait]
impl StoreHooks for GrantListingFailsOnce {
    async fn after_insert(
        &self,
        store: &MemoryStore,
        record: &TokenRecord,
    ) -> Result<(), StoreError> {
        if record.kind != TokenKind::Grant || !self.0.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        TokenStore::delete(store, record.kind, &record.hash).await?;
        Err(StoreError::backend("test", "the store went away"))
    }
}

#[tokio::test]
async fn a_retry_after_a_rotation_failed_while_listing_the_grant_lists_it_again() {
    let armed = GrantListingFailsOnce::default();
    let server = hooked_server(armed.clone());
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    let old = refresh_token(&tokens);
    armed.0.store(true, Ordering::SeqCst);
    server
        .refresh(&client_id, &old)
        .await
        .assert_oauth_error(503, "temporarily_unavailable");
    let retry = server.refresh(&client_id, &old).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
    let caller = server.mcp(Some(&access_token(&retry.json()))).await.json();
    let grants = server.oauth.admin().grants().await.unwrap();
    assert!(
        grants.iter().any(|g| g.grant_id.0 == caller["grant_id"]),
        "the owner's console lists the grant the retry holds"
    );
}

/// Every record written, for a look at what is at rest.
#[derive(Clone, Default)]
struct Written(Arc<Mutex<Vec<TokenRecord>>>);

#[async_trait]
impl StoreHooks for Written {
    async fn before_insert(&self, record: &TokenRecord) {
        self.0.lock().unwrap().push(record.clone());
    }
}

#[tokio::test]
async fn the_kept_pair_is_sealed_under_the_presented_tokens_hash() {
    let written = Written::default();
    let server = hooked_server(written.clone());
    server.register_passkey(SETUP_TOKEN).await;
    let (client_id, tokens) = server.connected_client().await;
    let old = refresh_token(&tokens);
    let first = server.refresh(&client_id, &old).await.json();
    let retry = server.refresh(&client_id, &old).await.json();
    assert_eq!(refresh_token(&retry), refresh_token(&first));

    let records = written.0.lock().unwrap().clone();
    let pair = records
        .iter()
        .find(|r| r.kind == TokenKind::RefreshSuccessor)
        .expect("the pair is kept in the store");
    assert_eq!(
        pair.hash,
        TokenHash::of(&old),
        "under the rotated token's hash"
    );
    // The grace window (60 s by default) and a half-minute margin, never a refresh token's life.
    assert!(
        pair.expires_at.0 <= mcp_oauth::store::UnixTime::now().0 + 60 + 30,
        "kept for the grace window only"
    );
    for record in &records {
        for secret in [
            access_token(&tokens),
            old.clone(),
            access_token(&first),
            refresh_token(&first),
        ] {
            assert!(
                !record
                    .payload
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "a {:?} record holds a token in plaintext",
                record.kind
            );
        }
    }
}
