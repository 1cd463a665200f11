//! SQLite: the conformance suite on a database file and in memory, plus what only SQLite has
//! (surviving a restart, migrations in their own table, purging expired rows, several pools on
//! one file).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, LazyLock};

use mcp_oauth::backends::SqliteStore;
use mcp_oauth::backends::sqlite::sqlx;
use mcp_oauth::store::conformance::{expired_token, live_client, live_token, passkey_record};
use mcp_oauth::store::{
    ClientRecord, ClientStore, Consumed, PasskeyRecord, PasskeyStore, StoreError, TokenHash,
    TokenKind, TokenStore, UnixTime,
};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use tokio::sync::Barrier;

/// One directory for every database of this test process, kept after it ends (like
/// `passkey_file`'s), so no test can lose its file while another still runs.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| tempfile::tempdir().unwrap().keep());

/// A URL for a new, empty database file.
fn new_db_url() -> String {
    let n: u64 = rand::random();
    format!("sqlite://{}", DIR.join(format!("{n:016x}.db")).display())
}

async fn fresh_file() -> SqliteStore {
    SqliteStore::connect(&new_db_url()).await.unwrap()
}

/// How many migrations this build applies.
const MIGRATIONS: i64 = 3;

async fn count(store: &SqliteStore, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Each test gets its own database file: the concurrency checks race real file locks.
mod file {
    use super::fresh_file;

    mcp_oauth::token_store_conformance!(fresh_file);
    mcp_oauth::client_store_conformance!(fresh_file);
    mcp_oauth::passkey_store_conformance!(fresh_file);
}

/// Each test gets its own in-memory database, on its one connection.
mod memory {
    use mcp_oauth::backends::SqliteStore;

    async fn fresh() -> SqliteStore {
        SqliteStore::connect("sqlite::memory:").await.unwrap()
    }

    mcp_oauth::token_store_conformance!(fresh);
    mcp_oauth::client_store_conformance!(fresh);
    mcp_oauth::passkey_store_conformance!(fresh);

    #[tokio::test]
    async fn an_in_memory_database_keeps_its_one_connection() {
        let store = fresh().await;
        let options = store.pool().options();
        assert_eq!(options.get_max_connections(), 1);
        assert_eq!(options.get_min_connections(), 1);
        assert_eq!(options.get_idle_timeout(), None);
        assert_eq!(options.get_max_lifetime(), None);
        // A file gets a pool of several.
        let file = super::fresh_file().await;
        assert!(file.pool().options().get_max_connections() > 1);
    }

    #[tokio::test]
    async fn in_memory_databases_are_private_to_their_store() {
        use mcp_oauth::store::TokenStore;
        let (a, b) = (fresh().await, fresh().await);
        let record =
            mcp_oauth::store::conformance::live_token(mcp_oauth::store::TokenKind::AccessToken);
        a.insert(record.clone()).await.unwrap();
        assert!(a.get(record.kind, &record.hash).await.unwrap().is_some());
        assert!(b.get(record.kind, &record.hash).await.unwrap().is_none());
        // A clone shares the one connection, hence the database.
        let clone = a.clone();
        drop(a);
        assert!(
            clone
                .get(record.kind, &record.hash)
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let url = new_db_url();
    let code = live_token(TokenKind::AuthorizationCode);
    let refresh = live_token(TokenKind::RefreshToken);
    let client = live_client();
    let passkey = passkey_record();
    let consumed_at = {
        let store = SqliteStore::connect(&url).await.unwrap();
        TokenStore::insert(&store, code.clone()).await.unwrap();
        TokenStore::insert(&store, refresh.clone()).await.unwrap();
        ClientStore::insert(&store, client.clone(), 1_000)
            .await
            .unwrap();
        PasskeyStore::insert(&store, passkey.clone()).await.unwrap();
        let before = UnixTime::now();
        let first = store
            .consume(code.kind, &code.hash, UnixTime::now())
            .await
            .unwrap();
        assert_eq!(first, Some(Consumed::First(code.clone())));
        store.pool().close().await;
        before
    };

    let store = SqliteStore::connect(&url).await.unwrap();
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
            consumed_at: at,
        }) => {
            assert_eq!(record, code);
            assert!(at >= consumed_at && at <= UnixTime::now(), "{at:?}");
        }
        other => panic!("a code consumed before the restart is a replay after it: {other:?}"),
    }
    assert_eq!(
        TokenStore::get(&store, code.kind, &code.hash)
            .await
            .unwrap(),
        None
    );
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
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let url = new_db_url();
    let first = SqliteStore::connect(&url).await.unwrap();
    let second = SqliteStore::connect(&url).await.unwrap();
    first.migrate().await.unwrap();
    SqliteStore::from_pool(second.pool().clone())
        .migrate()
        .await
        .unwrap();
    assert_eq!(
        count(&second, "SELECT COUNT(*) FROM _mcp_oauth_migrations").await,
        MIGRATIONS
    );
    // Both stores see one database.
    let record = live_token(TokenKind::AccessToken);
    TokenStore::insert(&first, record.clone()).await.unwrap();
    assert_eq!(
        TokenStore::get(&second, record.kind, &record.hash)
            .await
            .unwrap(),
        Some(record)
    );
}

/// How many connects race on each new file, and on how many new files a test races them: the
/// window in which two connects collide is narrow, so one file alone would rarely show a failure.
const RACERS: usize = 8;
const NEW_FILES: usize = 16;

/// The database is one store's: migrated once, in WAL mode.
async fn assert_migrated_once_in_wal_mode(store: &SqliteStore) {
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM _mcp_oauth_migrations").await,
        MIGRATIONS
    );
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

/// Several tasks open one new file at once: each switches it to WAL and migrates it, and none may
/// fail with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_connects_to_a_new_file_all_succeed() {
    for _ in 0..NEW_FILES {
        let url = Arc::new(new_db_url());
        let barrier = Arc::new(Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|_| {
                let (url, barrier) = (Arc::clone(&url), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    SqliteStore::connect(&url).await
                })
            })
            .collect();
        let mut stores = Vec::new();
        for task in tasks {
            stores.push(task.await.unwrap().unwrap());
        }
        assert_migrated_once_in_wal_mode(&stores[0]).await;
    }
}

/// Set to a database URL, it makes [`child_connects_once_stdin_closes`] connect to it.
const CONNECT_ENV: &str = "MCP_OAUTH_STORES_SQLITE_CONNECT";
/// What a child prints once it is started and waiting for the starting gun (at the end of the line
/// on which the test harness names the test).
const CHILD_READY: &str = "sqlite child ready";

/// Not a test on its own: the body of a child process of
/// [`concurrent_first_connects_from_processes_to_a_new_file_all_succeed`] (a no-op without
/// [`CONNECT_ENV`]). It says it is ready, waits until its parent closes its stdin (the starting
/// gun), then connects.
#[tokio::test]
async fn child_connects_once_stdin_closes() {
    let Ok(url) = std::env::var(CONNECT_ENV) else {
        return;
    };
    println!("{CHILD_READY}");
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new()).unwrap();
    SqliteStore::connect(&url).await.unwrap();
}

/// Several processes open one new file at once (as several instances of a server starting together
/// do): each switches it to WAL and migrates it, and none may fail with "database is locked".
#[test]
fn concurrent_first_connects_from_processes_to_a_new_file_all_succeed() {
    let exe = std::env::current_exe().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for _ in 0..NEW_FILES {
        let url = new_db_url();
        let mut children: Vec<_> = (0..RACERS)
            .map(|_| {
                Command::new(&exe)
                    .args(["--exact", "sqlite::child_connects_once_stdin_closes"])
                    .args(["--test-threads", "1", "--nocapture"])
                    .env(CONNECT_ENV, &url)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in &mut children {
            let stdout = BufReader::new(child.stdout.as_mut().unwrap());
            let ready = stdout
                .lines()
                .map(Result::unwrap)
                .any(|l| l.ends_with(CHILD_READY));
            assert!(ready, "a child process ended before it was ready");
        }
        // Every child is waiting on its stdin: closing them all releases them together.
        for child in &mut children {
            drop(child.stdin.take());
        }
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "a process failed to connect: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let store = runtime.block_on(SqliteStore::connect(&url)).unwrap();
        runtime.block_on(assert_migrated_once_in_wal_mode(&store));
    }
}

#[tokio::test]
async fn migrations_use_their_own_table_beside_the_applications() {
    let url = new_db_url();
    // The application migrates first, with sqlx's defaults (table `_sqlx_migrations`) and a
    // version 1 of its own.
    let app_pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(
            url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true),
        )
        .await
        .unwrap();
    let app_migrator = Migrator::with_migrations(vec![Migration::new(
        1,
        "app users".into(),
        MigrationType::Simple,
        "CREATE TABLE app_users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO app_users (name) VALUES ('alice');"
            .into_sql_str(),
        false,
    )]);
    app_migrator.run(&app_pool).await.unwrap();
    let app_before: Vec<(i64, String, Vec<u8>)> =
        sqlx::query_as("SELECT version, description, checksum FROM _sqlx_migrations")
            .fetch_all(&app_pool)
            .await
            .unwrap();

    let store = SqliteStore::connect(&url).await.unwrap();
    let ours: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _mcp_oauth_migrations")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        ours,
        [
            (1, "init".to_owned()),
            (2, "used setup tokens".to_owned()),
            (3, "unapproved clients".to_owned())
        ]
    );
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
}

#[tokio::test]
async fn delete_expired_purges_expired_rows_and_keeps_live_ones() {
    let store = fresh_file().await;
    for &kind in TokenKind::ALL {
        TokenStore::insert(&store, expired_token(kind))
            .await
            .unwrap();
    }
    let live = live_token(TokenKind::AccessToken);
    let consumed = live_token(TokenKind::AuthorizationCode);
    TokenStore::insert(&store, live.clone()).await.unwrap();
    TokenStore::insert(&store, consumed.clone()).await.unwrap();
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
        ClientStore::insert(&store, client, 1_000).await.unwrap();
    }

    assert_eq!(
        TokenStore::delete_expired(&store).await.unwrap(),
        TokenKind::ALL.len() as u64
    );
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM mcp_oauth_tokens").await,
        2
    );
    assert_eq!(ClientStore::delete_expired(&store).await.unwrap(), 1);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM mcp_oauth_clients").await,
        2
    );
    assert_eq!(TokenStore::delete_expired(&store).await.unwrap(), 0);
    assert_eq!(ClientStore::delete_expired(&store).await.unwrap(), 0);
    assert!(matches!(
        store
            .consume(consumed.kind, &consumed.hash, UnixTime::now())
            .await
            .unwrap(),
        Some(Consumed::Replayed { .. })
    ));
    assert_eq!(
        TokenStore::get(&store, live.kind, &live.hash)
            .await
            .unwrap(),
        Some(live)
    );
}

#[tokio::test]
async fn secrets_are_stored_as_hashes_only() {
    let store = fresh_file().await;
    let record = live_token(TokenKind::RefreshToken);
    TokenStore::insert(&store, record.clone()).await.unwrap();
    let (kind, hash): (String, Vec<u8>) = sqlx::query_as("SELECT kind, hash FROM mcp_oauth_tokens")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(kind, "refresh");
    assert_eq!(hash, record.hash.0);
}

#[tokio::test]
async fn a_malformed_stored_record_is_a_codec_error() {
    let store = fresh_file().await;
    sqlx::query(
        "INSERT INTO mcp_oauth_clients (client_id, expires_at, record) VALUES ('bad', NULL, '{')",
    )
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("INSERT INTO mcp_oauth_passkeys (credential_id, record) VALUES ('bad', '[]')")
        .execute(store.pool())
        .await
        .unwrap();
    let error = ClientStore::get(&store, "bad").await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Codec {
                backend: "sqlite",
                ..
            }
        ),
        "{error:?}"
    );
    let error = PasskeyStore::list(&store).await.unwrap_err();
    assert!(matches!(error, StoreError::Codec { .. }), "{error:?}");
}

#[tokio::test]
async fn a_bad_url_is_a_backend_error() {
    let error = SqliteStore::connect("sqlite://db.sqlite?mode=nonsense")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Backend {
                backend: "sqlite",
                ..
            }
        ),
        "{error:?}"
    );
    let missing_dir = format!(
        "sqlite://{}",
        DIR.join("no-such-dir").join("oauth.db").display()
    );
    assert!(matches!(
        SqliteStore::connect(&missing_dir).await,
        Err(StoreError::Backend { .. })
    ));
}

/// Two pools on one file stand for two processes: 2 × 16 consumers of one code, one winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consume_is_atomic_across_pools_on_one_file() {
    let url = new_db_url();
    let a = SqliteStore::connect(&url).await.unwrap();
    let b = SqliteStore::connect(&url).await.unwrap();
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
        let uses: i64 = sqlx::query_scalar("SELECT uses FROM mcp_oauth_tokens WHERE hash = ?1")
            .bind(&record.hash.0[..])
            .fetch_one(b.pool())
            .await
            .unwrap();
        assert_eq!(uses, 32, "every consume was counted");
    }
}

/// A database migrated by an earlier version (schema 1 only), whose owner registered passkeys with
/// setup tokens: one passkey still there, and a "setup_use" marker in the token table for a passkey
/// since removed. After the upgrade both setup tokens are used, for good.
#[tokio::test]
async fn an_upgraded_database_keeps_the_setup_tokens_it_had_used() {
    let url = new_db_url();
    let old_pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(
            url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true),
        )
        .await
        .unwrap();
    let mut schema_1 = Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        include_str!("../../migrations/0001_init.sql").into_sql_str(),
        false,
    )]);
    schema_1.dangerous_set_table_name("_mcp_oauth_migrations");
    schema_1.run(&old_pool).await.unwrap();
    let registered = passkey_record();
    sqlx::query("INSERT INTO mcp_oauth_passkeys (credential_id, record) VALUES (?1, ?2)")
        .bind(&registered.credential_id)
        .bind(serde_json::to_string(&registered).unwrap())
        .execute(&old_pool)
        .await
        .unwrap();
    let removed_passkeys_token = TokenHash::of("a setup token whose passkey was removed");
    sqlx::query(
        "INSERT INTO mcp_oauth_tokens (kind, hash, grant_id, expires_at, payload) \
         VALUES ('setup_use', ?1, 'g', ?2, x'')",
    )
    .bind(&removed_passkeys_token.0[..])
    .bind(i64::MAX)
    .execute(&old_pool)
    .await
    .unwrap();
    old_pool.close().await;

    let store = SqliteStore::connect(&url).await.unwrap();
    let carried = registered.setup_token_hash.unwrap();
    for used in [carried, removed_passkeys_token] {
        assert!(store.setup_token_used(&used).await.unwrap());
    }
    assert!(
        PasskeyStore::delete(&store, &registered.credential_id)
            .await
            .unwrap()
    );
    assert!(store.setup_token_used(&carried).await.unwrap());
    let again = PasskeyRecord {
        setup_token_hash: Some(removed_passkeys_token),
        ..passkey_record()
    };
    assert!(matches!(
        PasskeyStore::insert(&store, again).await,
        Err(StoreError::AlreadyExists { .. })
    ));
}

/// A database made by a release before the cap on unapproved clients (schema version 1) opens:
/// its clients read as never approved, keep their lifetime, do not count toward the cap, and can
/// be approved or removed as never-approved.
#[tokio::test]
async fn clients_from_schema_version_1_are_read_and_not_counted() {
    let url = new_db_url();
    let old = live_client();
    {
        let options: sqlx::sqlite::SqliteConnectOptions = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::raw_sql(include_str!("../../migrations/0001_init.sql").into_sql_str())
            .execute(&pool)
            .await
            .unwrap();
        // The record as version 1 wrote it: no `approved_at`.
        let mut json = serde_json::to_value(&old).unwrap();
        json.as_object_mut().unwrap().remove("approved_at");
        sqlx::query(
            "INSERT INTO mcp_oauth_clients (client_id, expires_at, record) VALUES (?1, ?2, ?3)",
        )
        .bind(&old.client_id)
        .bind(old.expires_at.map(|at| at.0 as i64))
        .bind(json.to_string())
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = SqliteStore::connect(&url).await.unwrap();
    assert_eq!(
        ClientStore::get(&store, &old.client_id).await.unwrap(),
        Some(old.clone()),
        "an old row reads as a client never approved, with its lifetime"
    );
    ClientStore::insert(&store, live_client(), 1)
        .await
        .expect("an old row does not count toward the cap");
    assert!(
        store
            .mark_approved(&old.client_id, UnixTime::now(), None)
            .await
            .unwrap(),
        "an old row can be approved"
    );
    let approved = ClientStore::get(&store, &old.client_id)
        .await
        .unwrap()
        .unwrap();
    assert!(approved.is_approved() && approved.expires_at.is_none());
    assert!(
        !store.delete_unapproved(&old.client_id).await.unwrap(),
        "once approved, it is not removed as never-approved"
    );
}
