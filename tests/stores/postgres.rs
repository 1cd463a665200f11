//! PostgreSQL: the conformance suite, plus what only PostgreSQL has (surviving a restart,
//! migrations in their own table under an advisory lock, purging expired rows, several pools on one
//! database, keys it cannot store, surviving an outage).
//!
//! Opt-in: see `postgres_support.rs`. Each test works in a schema of its own, dropped at its end,
//! so tests run in parallel on one database and leave it as they found it.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_oauth::backends::PostgresStore;
use mcp_oauth::backends::postgres::{OPERATION_TIMEOUT, sqlx};
use mcp_oauth::store::conformance::{expired_token, live_client, live_token, passkey_record};
use mcp_oauth::store::{
    ClientRecord, ClientStore, Consumed, GrantId, PasskeyChange, PasskeyStore, StoreError,
    TokenKind, TokenStore, UnixTime,
};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use tokio::sync::Barrier;

use crate::postgres_support::{
    PrivatePostgres, URL_VAR, drop_schema, free_port, new_schema, postgres_url,
};

/// How many migrations this build applies.
const MIGRATIONS: i64 = 1;

/// A store in a new schema of the test server, dropped with [`Fresh::cleanup`].
struct Fresh {
    server: String,
    schema: String,
    url: String,
    store: PostgresStore,
}

impl Fresh {
    async fn cleanup(self) {
        self.store.pool().close().await;
        drop_schema(&self.server, &self.schema).await;
    }
}

/// A store in a schema of its own, or `None` when skipping.
async fn fresh() -> Option<Fresh> {
    let server = postgres_url()?;
    let (url, schema) = new_schema(&server).await;
    let store = PostgresStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url} ({URL_VAR}): {e:?}"));
    Some(Fresh {
        server,
        schema,
        url,
        store,
    })
}

async fn count(store: &PostgresStore, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn is_backend<T>(result: &Result<T, StoreError>) -> bool {
    matches!(
        result,
        Err(StoreError::Backend {
            backend: "postgres",
            ..
        })
    )
}

// ---------------------------------------------------------------------------------------------
// The conformance suite.
//
// `mcp_oauth::*_store_conformance!` call their factory for a store and cannot skip, so this local
// macro expands the same checks (the lists below mirror those macros) with the skip in front and
// the schema's removal behind.

macro_rules! postgres_conformance {
    ($trait:ident: $($check:ident),* ; concurrent: $($concurrent:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let Some(fresh) = fresh().await else { return };
                mcp_oauth::store::conformance::$check(
                    &fresh.store as &dyn mcp_oauth::store::$trait,
                )
                .await;
                fresh.cleanup().await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $concurrent() {
                let Some(fresh) = fresh().await else { return };
                let shared: Arc<dyn mcp_oauth::store::$trait> = Arc::new(fresh.store.clone());
                mcp_oauth::store::conformance::$concurrent(shared).await;
                fresh.cleanup().await;
            }
        )*
    };
}

postgres_conformance!(TokenStore:
    token_round_trip, token_unknown_is_none, token_insert_never_overwrites,
    token_kinds_are_separate, token_expired_is_invisible, token_consume_then_replayed,
    token_revoke_grant, token_delete_is_idempotent, token_delete_expired_keeps_live,
    token_list_grants;
    concurrent: token_concurrent_insert_has_one_winner, token_concurrent_consume_has_one_winner);

postgres_conformance!(ClientStore:
    client_round_trip, client_insert_never_overwrites, client_expired_is_invisible,
    client_delete_is_idempotent, client_delete_expired_keeps_live, client_list,
    client_unapproved_cap_refuses_without_evicting, client_lapsed_unapproved_do_not_count,
    client_mark_approved, client_delete_unapproved_spares_approved;
    concurrent: client_concurrent_insert_has_one_winner,
    client_concurrent_unapproved_inserts_respect_the_cap);

postgres_conformance!(PasskeyStore:
    passkey_round_trip, passkey_duplicate_is_refused, passkey_modify,
    passkey_delete_is_idempotent, passkey_setup_token_stays_used,
    passkey_refused_insert_uses_no_setup_token;
    concurrent: passkey_concurrent_insert_has_one_winner,
    passkey_concurrent_setup_token_use_has_one_winner,
    passkey_concurrent_uses_and_a_rename_are_all_kept);

// ---------------------------------------------------------------------------------------------
// Restarts and migrations

#[tokio::test]
async fn everything_survives_a_restart() {
    let Some(fresh) = fresh().await else { return };
    let code = live_token(TokenKind::AuthorizationCode);
    let refresh = live_token(TokenKind::RefreshToken);
    let client = live_client();
    let passkey = passkey_record();
    let before = UnixTime::now();
    {
        let store = &fresh.store;
        TokenStore::insert(store, code.clone()).await.unwrap();
        TokenStore::insert(store, refresh.clone()).await.unwrap();
        ClientStore::insert(store, client.clone(), 1_000)
            .await
            .unwrap();
        PasskeyStore::insert(store, passkey.clone()).await.unwrap();
        let first = store
            .consume(code.kind, &code.hash, UnixTime::now())
            .await
            .unwrap();
        assert_eq!(first, Some(Consumed::First(code.clone())));
        store.pool().close().await;
    }

    let store = PostgresStore::connect(&fresh.url).await.unwrap();
    assert_eq!(
        TokenStore::get(&store, refresh.kind, &refresh.hash)
            .await
            .unwrap(),
        Some(refresh.clone())
    );
    match store
        .consume(code.kind, &code.hash, UnixTime::now())
        .await
        .unwrap()
    {
        Some(Consumed::Replayed {
            record,
            consumed_at,
        }) => {
            assert_eq!(record, code);
            assert!(
                consumed_at >= before && consumed_at <= UnixTime::now(),
                "{consumed_at:?}"
            );
        }
        other => panic!("a code consumed before the restart is a replay after it: {other:?}"),
    }
    assert_eq!(
        ClientStore::get(&store, &client.client_id).await.unwrap(),
        Some(client)
    );
    let read = PasskeyStore::get(&store, &passkey.credential_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::to_value(&read).unwrap(),
        serde_json::to_value(&passkey).unwrap()
    );
    assert_eq!(
        store
            .consume(refresh.kind, &refresh.hash, UnixTime::now())
            .await
            .unwrap(),
        Some(Consumed::First(refresh))
    );
    store.pool().close().await;
    fresh.cleanup().await;
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let Some(fresh) = fresh().await else { return };
    let second = PostgresStore::connect(&fresh.url).await.unwrap();
    fresh.store.migrate().await.unwrap();
    PostgresStore::from_pool(second.pool().clone())
        .migrate()
        .await
        .unwrap();
    assert_eq!(
        count(&second, "SELECT COUNT(*) FROM _mcp_oauth_migrations").await,
        MIGRATIONS
    );
    let record = live_token(TokenKind::AccessToken);
    TokenStore::insert(&fresh.store, record.clone())
        .await
        .unwrap();
    assert_eq!(
        TokenStore::get(&second, record.kind, &record.hash)
            .await
            .unwrap(),
        Some(record),
        "both stores see one database"
    );
    second.pool().close().await;
    fresh.cleanup().await;
}

/// How many instances start at once on each new schema, and on how many schemas a test races
/// them: the window in which two first starts collide is narrow.
const RACERS: usize = 8;
const NEW_SCHEMAS: usize = 8;

/// Several instances start on one new database at once: every one migrates (under the advisory
/// lock, one after the other), none fails, and each migration is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_starts_on_a_new_database_all_succeed() {
    let Some(server) = postgres_url() else { return };
    for _ in 0..NEW_SCHEMAS {
        let (url, schema) = new_schema(&server).await;
        let url = Arc::new(url);
        let barrier = Arc::new(Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|_| {
                let (url, barrier) = (Arc::clone(&url), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    PostgresStore::connect(&url).await
                })
            })
            .collect();
        let mut stores = Vec::new();
        for task in tasks {
            stores.push(
                task.await
                    .unwrap()
                    .expect("every instance starting at once connects and migrates"),
            );
        }
        assert_eq!(
            count(&stores[0], "SELECT COUNT(*) FROM _mcp_oauth_migrations").await,
            MIGRATIONS
        );
        for store in stores {
            store.pool().close().await;
        }
        drop_schema(&server, &schema).await;
    }
}

#[tokio::test]
async fn migrations_use_their_own_table_beside_the_applications() {
    let Some(server) = postgres_url() else { return };
    let (url, schema) = new_schema(&server).await;
    // The application migrates first, with sqlx's defaults (table `_sqlx_migrations`) and a
    // version 1 of its own.
    let app_pool = sqlx::PgPool::connect(&url).await.unwrap();
    let app_migrator = Migrator::with_migrations(vec![Migration::new(
        1,
        "app users".into(),
        MigrationType::Simple,
        "CREATE TABLE app_users (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO app_users (id, name) VALUES (1, 'alice');"
            .into_sql_str(),
        false,
    )]);
    app_migrator.run(&app_pool).await.unwrap();
    let app_before: Vec<(i64, String, Vec<u8>)> =
        sqlx::query_as("SELECT version, description, checksum FROM _sqlx_migrations")
            .fetch_all(&app_pool)
            .await
            .unwrap();

    let store = PostgresStore::connect(&url).await.unwrap();
    let ours: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _mcp_oauth_migrations")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(ours, [(1, "init".to_owned())]);
    let app_after: Vec<(i64, String, Vec<u8>)> =
        sqlx::query_as("SELECT version, description, checksum FROM _sqlx_migrations")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        app_after, app_before,
        "the application's table is untouched"
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM app_users").await, 1);

    // Both keep working, in either order.
    app_migrator.run(&app_pool).await.unwrap();
    store.migrate().await.unwrap();
    let record = live_token(TokenKind::AccessToken);
    TokenStore::insert(&store, record.clone()).await.unwrap();
    assert_eq!(
        TokenStore::get(&store, record.kind, &record.hash)
            .await
            .unwrap(),
        Some(record)
    );
    app_pool.close().await;
    store.pool().close().await;
    drop_schema(&server, &schema).await;
}

#[tokio::test]
async fn delete_expired_purges_expired_rows_and_keeps_live_ones() {
    let Some(fresh) = fresh().await else { return };
    let store = &fresh.store;
    for &kind in TokenKind::ALL {
        TokenStore::insert(store, expired_token(kind))
            .await
            .unwrap();
    }
    let live = live_token(TokenKind::AccessToken);
    let consumed = live_token(TokenKind::AuthorizationCode);
    TokenStore::insert(store, live.clone()).await.unwrap();
    TokenStore::insert(store, consumed.clone()).await.unwrap();
    store
        .consume(consumed.kind, &consumed.hash, UnixTime::now())
        .await
        .unwrap();
    let expired_client = ClientRecord {
        expires_at: Some(UnixTime(UnixTime::now().0 - 60)),
        ..live_client()
    };
    let forever = ClientRecord {
        expires_at: None,
        ..live_client()
    };
    for client in [live_client(), forever, expired_client] {
        ClientStore::insert(store, client, 1_000).await.unwrap();
    }

    assert_eq!(
        TokenStore::delete_expired(store).await.unwrap(),
        TokenKind::ALL.len() as u64
    );
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM mcp_oauth_tokens").await,
        2
    );
    assert_eq!(ClientStore::delete_expired(store).await.unwrap(), 1);
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM mcp_oauth_clients").await,
        2
    );
    assert_eq!(TokenStore::delete_expired(store).await.unwrap(), 0);
    assert!(matches!(
        store
            .consume(consumed.kind, &consumed.hash, UnixTime::now())
            .await
            .unwrap(),
        Some(Consumed::Replayed { .. })
    ));
    assert_eq!(
        TokenStore::get(store, live.kind, &live.hash).await.unwrap(),
        Some(live)
    );
    fresh.cleanup().await;
}

#[tokio::test]
async fn secrets_are_stored_as_hashes_only() {
    let Some(fresh) = fresh().await else { return };
    let record = live_token(TokenKind::RefreshToken);
    TokenStore::insert(&fresh.store, record.clone())
        .await
        .unwrap();
    let (kind, hash): (String, Vec<u8>) = sqlx::query_as("SELECT kind, hash FROM mcp_oauth_tokens")
        .fetch_one(fresh.store.pool())
        .await
        .unwrap();
    assert_eq!(kind, "refresh");
    assert_eq!(hash, record.hash.0);
    fresh.cleanup().await;
}

#[tokio::test]
async fn a_malformed_stored_record_is_a_codec_error() {
    let Some(fresh) = fresh().await else { return };
    let store = &fresh.store;
    sqlx::query(
        "INSERT INTO mcp_oauth_clients (client_id, expires_at, unapproved, record) \
         VALUES ('bad', NULL, FALSE, '{')",
    )
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("INSERT INTO mcp_oauth_passkeys (credential_id, record) VALUES ('bad', '[]')")
        .execute(store.pool())
        .await
        .unwrap();
    let error = ClientStore::get(store, "bad").await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Codec {
                backend: "postgres",
                ..
            }
        ),
        "{error:?}"
    );
    let error = PasskeyStore::list(store).await.unwrap_err();
    assert!(matches!(error, StoreError::Codec { .. }), "{error:?}");
    fresh.cleanup().await;
}

/// PostgreSQL's `TEXT` holds no NUL character, and the server refuses a parameter with one. A
/// client id or credential id comes from a request, so such a key must read as absent (a 4xx
/// upstream), not fail as an outage would (a 503 that invites the attacker to retry).
#[tokio::test]
async fn a_key_with_a_nul_is_absent_not_an_error() {
    let Some(fresh) = fresh().await else { return };
    let store = &fresh.store;
    let key = "client\0id";
    assert_eq!(ClientStore::get(store, key).await.unwrap(), None);
    assert!(!ClientStore::delete(store, key).await.unwrap());
    assert!(!store.delete_unapproved(key).await.unwrap());
    assert!(
        !store
            .mark_approved(key, UnixTime::now(), None)
            .await
            .unwrap()
    );
    assert!(PasskeyStore::get(store, key).await.unwrap().is_none());
    assert!(!PasskeyStore::delete(store, key).await.unwrap());
    assert_eq!(
        store
            .modify(
                key,
                &PasskeyChange::Renamed {
                    label: "x".to_owned()
                }
            )
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .revoke_grant(&GrantId("grant\0id".to_owned()))
            .await
            .unwrap(),
        0
    );
    fresh.cleanup().await;
}

/// Two pools on one database stand for two instances: 2 × 16 consumers of one code, one winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consume_is_atomic_across_pools_on_one_database() {
    let Some(fresh) = fresh().await else { return };
    let a = fresh.store.clone();
    let b = PostgresStore::connect(&fresh.url).await.unwrap();
    for _ in 0..5 {
        let record = live_token(TokenKind::AuthorizationCode);
        TokenStore::insert(&a, record.clone()).await.unwrap();
        let barrier = Arc::new(Barrier::new(32));
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let barrier = Arc::clone(&barrier);
                let (kind, hash) = (record.kind, record.hash);
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.consume(kind, &hash, UnixTime::now()).await
                })
            })
            .collect();
        let mut first = 0;
        for task in tasks {
            match task.await.unwrap().unwrap() {
                Some(Consumed::First(got)) => {
                    assert_eq!(got, record);
                    first += 1;
                }
                Some(Consumed::Replayed { .. }) => {}
                None => panic!("the code vanished"),
            }
        }
        assert_eq!(first, 1, "exactly one consumer, of either pool, wins");
        let uses: i64 = sqlx::query_scalar("SELECT uses FROM mcp_oauth_tokens WHERE hash = $1")
            .bind(&record.hash.0[..])
            .fetch_one(b.pool())
            .await
            .unwrap();
        assert_eq!(uses, 32, "every consume was counted");
    }
    b.pool().close().await;
    fresh.cleanup().await;
}

/// Unapproved registrations racing on two instances never exceed the cap between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_unapproved_cap_holds_across_pools() {
    let Some(fresh) = fresh().await else { return };
    let a = fresh.store.clone();
    let b = PostgresStore::connect(&fresh.url).await.unwrap();
    let cap = 5;
    let barrier = Arc::new(Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let client = live_client();
                barrier.wait().await;
                ClientStore::insert(&store, client, cap).await
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => admitted += 1,
            Err(StoreError::CapacityReached { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(admitted, cap, "exactly the cap is admitted");
    assert_eq!(ClientStore::list(&b).await.unwrap().len() as u64, cap);
    b.pool().close().await;
    fresh.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Connecting and outages

#[tokio::test]
async fn connect_fails_clearly() {
    for url in ["not a url", "http://127.0.0.1/"] {
        let error = PostgresStore::connect(url).await.unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::Backend {
                    backend: "postgres",
                    ..
                }
            ),
            "{url}: {error:?}"
        );
    }
    // Nothing listens there: refused, within the acquire timeout.
    let started = Instant::now();
    let result =
        PostgresStore::connect(&format!("postgres://u@127.0.0.1:{}/db", free_port())).await;
    assert!(is_backend(&result), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Poll `op` every 100 ms until it succeeds or `limit` passes; how long it took.
async fn until_ok<T, F, Fut>(limit: Duration, mut op: F) -> Result<Duration, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let started = Instant::now();
    loop {
        match op().await {
            Ok(_) => return Ok(started.elapsed()),
            Err(e) if started.elapsed() > limit => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// How long `op` took, and whether it failed.
async fn timed<T>(
    op: impl Future<Output = Result<T, StoreError>>,
) -> (Result<(), StoreError>, Duration) {
    let started = Instant::now();
    let result = op.await.map(drop);
    (result, started.elapsed())
}

/// PostgreSQL stopped as by a crash (`pg_ctl stop -m immediate`) while the store holds
/// connections: every operation fails with a backend error within seconds, and once the server is
/// back the same store works again, with everything committed before the crash.
#[tokio::test]
async fn the_same_store_survives_a_postgres_outage() {
    if postgres_url().is_none() {
        return;
    }
    let Some(cluster) = PrivatePostgres::start() else {
        return;
    };
    let store = PostgresStore::connect(&cluster.url()).await.unwrap();
    let before = live_token(TokenKind::RefreshToken);
    TokenStore::insert(&store, before.clone()).await.unwrap();
    let passkey = passkey_record();
    PasskeyStore::insert(&store, passkey.clone()).await.unwrap();

    cluster.stop();
    // All at once: each waits up to the pool's acquire timeout before it fails.
    let limit = Duration::from_secs(10);
    let fresh = live_token(TokenKind::AccessToken);
    let ((got, get_took), (inserted, insert_took), (consumed, consume_took), (listed, list_took)) = tokio::join!(
        timed(TokenStore::get(&store, before.kind, &before.hash)),
        timed(TokenStore::insert(&store, fresh)),
        timed(store.consume(before.kind, &before.hash, UnixTime::now())),
        timed(PasskeyStore::list(&store)),
    );
    for (op, result, took) in [
        ("get", got, get_took),
        ("insert", inserted, insert_took),
        ("consume", consumed, consume_took),
        ("passkeys", listed, list_took),
    ] {
        assert!(
            is_backend(&result),
            "{op} while PostgreSQL is down: {result:?}"
        );
        assert!(took < limit, "{op} took {took:?} while PostgreSQL was down");
    }

    cluster.start_again();
    let recovered = until_ok(limit, || TokenStore::get(&store, before.kind, &before.hash))
        .await
        .expect("the same store works again within 10 s of PostgreSQL coming back");
    let _ = writeln!(
        std::io::stderr(),
        "PostgreSQL outage: while down, get {get_took:?}, insert {insert_took:?}, consume \
         {consume_took:?}, passkeys {list_took:?}; working again {recovered:?} after the restart"
    );
    assert_eq!(
        store
            .consume(before.kind, &before.hash, UnixTime::now())
            .await
            .unwrap(),
        Some(Consumed::First(before)),
        "the token committed before the crash is there, and the failed consume changed nothing"
    );
    assert_eq!(PasskeyStore::list(&store).await.unwrap().len(), 1);
    store.pool().close().await;
}

/// A TCP proxy to the test server that can stop passing bytes, both ways, on the connections it
/// holds: a PostgreSQL that hangs (frozen, or behind a partition dropping packets) without closing
/// anything. Stops accepting when dropped.
struct FreezableProxy {
    port: u16,
    frozen: Arc<tokio::sync::watch::Sender<bool>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FreezableProxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(tokio::sync::watch::Sender::new(false));
        let thawed = Arc::clone(&frozen);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(Self::pump(client_read, server_write, thawed.subscribe()));
                tokio::spawn(Self::pump(server_read, client_write, thawed.subscribe()));
            }
        });
        Self {
            port,
            frozen,
            accept,
        }
    }

    /// Copy `from` to `to`, holding each chunk while frozen.
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut frozen: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if frozen.wait_for(|frozen| !*frozen).await.is_err() {
                return;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// PostgreSQL stops answering without closing anything: an operation fails within the store's
/// operation timeout instead of holding its request for as long as TCP takes to notice, and the
/// store works again once the server answers.
#[tokio::test]
async fn a_hung_postgres_fails_operations_within_the_timeout() {
    let Some(fresh) = fresh().await else { return };
    let parsed = url::Url::parse(&fresh.url).unwrap();
    let upstream = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    );
    let proxy = FreezableProxy::start(upstream).await;
    let mut via_proxy = parsed.clone();
    via_proxy.set_host(Some("127.0.0.1")).unwrap();
    via_proxy.set_port(Some(proxy.port)).unwrap();
    let store = PostgresStore::connect(via_proxy.as_str()).await.unwrap();
    // The pool pings a connection before handing it out, within its acquire timeout, so a server
    // hung before the operation starts is caught there. A pool that does not ping stands for a
    // server that hangs between the ping and the statement, or mid-statement: the operation's own
    // timeout must catch it.
    let unpinged = PostgresStore::from_pool(
        sqlx::postgres::PgPoolOptions::new()
            .test_before_acquire(false)
            .connect(via_proxy.as_str())
            .await
            .unwrap(),
    );
    let record = live_token(TokenKind::AccessToken);
    TokenStore::insert(&store, record.clone()).await.unwrap();
    assert!(
        TokenStore::get(&unpinged, record.kind, &record.hash)
            .await
            .unwrap()
            .is_some()
    );

    proxy.freeze(true);
    let limit = OPERATION_TIMEOUT + Duration::from_secs(5);
    let mut hung_for = Vec::new();
    for store in [&store, &unpinged] {
        let started = Instant::now();
        let hung = tokio::time::timeout(limit, TokenStore::get(store, record.kind, &record.hash))
            .await
            .unwrap_or_else(|_| panic!("get still waiting after {limit:?} on a hung PostgreSQL"));
        hung_for.push(started.elapsed());
        assert!(is_backend(&hung), "get while PostgreSQL hangs: {hung:?}");
    }

    proxy.freeze(false);
    let thawed = until_ok(limit, || TokenStore::get(&store, record.kind, &record.hash))
        .await
        .expect("the store works again once PostgreSQL answers");
    let _ = writeln!(
        std::io::stderr(),
        "PostgreSQL hang: get failed after {:?} (pinged pool), {:?} (unpinged); working again \
         {thawed:?} after the thaw",
        hung_for[0],
        hung_for[1]
    );
    assert_eq!(
        TokenStore::get(&store, record.kind, &record.hash)
            .await
            .unwrap(),
        Some(record)
    );
    store.pool().close().await;
    unpinged.pool().close().await;
    fresh.cleanup().await;
}

/// TLS as the URL asks, on a server that refuses anything else: `sslmode=require` encrypts,
/// `verify-full` checks the certificate (against `sslrootcert`; a self-signed one is refused
/// without it), and `disable` is refused by the server.
#[tokio::test]
async fn connects_over_tls_as_the_url_asks() {
    if postgres_url().is_none() {
        return;
    }
    let Some((cluster, certificate)) = PrivatePostgres::start_tls_only() else {
        return;
    };
    let url = |query: &str| format!("{}?{query}", cluster.url());
    let encrypted: bool = {
        let store = PostgresStore::connect(&url("sslmode=require"))
            .await
            .expect("sslmode=require connects");
        let ssl = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .unwrap();
        store.pool().close().await;
        ssl
    };
    assert!(encrypted, "the connection is encrypted");
    let verified = PostgresStore::connect(&url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        certificate.display()
    )))
    .await
    .expect("verify-full with the certificate as root connects");
    verified.pool().close().await;
    let unverifiable = PostgresStore::connect(&url("sslmode=verify-full")).await;
    assert!(
        is_backend(&unverifiable),
        "a self-signed certificate fails verify-full against the webpki roots: {unverifiable:?}"
    );
    let plain = PostgresStore::connect(&url("sslmode=disable")).await;
    assert!(
        is_backend(&plain),
        "the server refuses plain connections: {plain:?}"
    );
}
