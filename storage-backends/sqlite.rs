//! [`SqliteStore`]: tokens, clients and passkeys in one SQLite database file, surviving restarts.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mcp_oauth::backends::SqliteStore;
//! use mcp_oauth::{McpOAuth, OAuthConfig};
//!
//! let config = OAuthConfig::with_defaults(
//!     "https://mcp.example.com", "claude", "a-long-random-secret", "Example", "data/passkeys.json",
//! );
//! // Creates the file if missing and applies the migrations.
//! let store = SqliteStore::connect("sqlite://oauth.db").await?;
//! let oauth = McpOAuth::builder(config).stores(store).build()?;
//! // SQLite has no native expiry: purge expired rows now and then (reads never return them).
//! let sweeper = oauth.spawn_expiry_sweeper(std::time::Duration::from_secs(600));
//! let app = oauth.router(axum::Router::new()); // your MCP routes
//! # let _ = (app, sweeper); Ok(()) }
//! ```
//!
//! One process, or several processes on one machine sharing the file: SQLite's locking makes
//! every operation below atomic across all of them. The file must be on a local file system (WAL
//! mode relies on shared memory between the processes; network file systems are not supported).
//! For several machines, use a shared backend such as Redis.
//!
//! # Connecting
//!
//! [`SqliteStore::connect`] takes an sqlx SQLite URL:
//!
//! - `sqlite://oauth.db` (relative to the working directory) or `sqlite:///var/lib/app/oauth.db`:
//!   a file, created if missing, opened in WAL journal mode with `synchronous = NORMAL` (durable
//!   across application crashes; a power loss may lose the last transactions, never corrupt the
//!   file) and a 5 second busy timeout, in a pool of several connections. Several tasks or
//!   processes may connect to a new file at once: each waits, up to the busy timeout, for the one
//!   switching it to WAL;
//! - `sqlite::memory:`: a private in-memory database, gone when the store (and its clones) are
//!   dropped. It lives as long as its connection, so the pool keeps exactly one connection open
//!   for its whole life (`max_connections(1)`, `min_connections(1)`, no idle timeout, no maximum
//!   lifetime); operations queue for it. Useful for tests; nothing persists.
//!
//! For other settings (say `synchronous = FULL`, so that a commit also survives a power loss,
//! or a different pool size), build an [`sqlx::SqlitePool`] yourself and pass it to
//! [`SqliteStore::from_pool`], then call [`SqliteStore::migrate`]. An in-memory pool of your own
//! must keep its one connection alive, as above.
//!
//! # Schema and migrations
//!
//! The migrations in the crate's `migrations/` directory create four tables, all prefixed
//! `mcp_oauth_`, so the database can be the application's own:
//!
//! | table | key | holds |
//! |---|---|---|
//! | `mcp_oauth_tokens` | `(kind, hash)` | `grant_id`, `expires_at`, `payload` (blob, verbatim), `uses`, `consumed_at`; indexed on `grant_id` and `expires_at` |
//! | `mcp_oauth_clients` | `client_id` | `expires_at` (NULL: never), `record` (the [`ClientRecord`] as JSON), `unapproved` (1: counts toward the cap on unapproved registrations); indexed on `expires_at` and `(unapproved, expires_at)` |
//! | `mcp_oauth_passkeys` | `credential_id` | `record` (the [`PasskeyRecord`] as JSON) |
//! | `mcp_oauth_used_setup_tokens` | `hash` | nothing else: the lower-case hex SHA-256 of every setup token that registered a passkey, kept when the passkey goes |
//!
//! [`migrate`](SqliteStore::migrate) records applied migrations in its own table,
//! `_mcp_oauth_migrations`, and ignores migrations it does not know, so an application running its
//! own sqlx migrations (in `_sqlx_migrations`) on the same database never clashes with these.
//! Raw secrets never reach the database: tokens are keyed by the SHA-256 of the secret, and
//! clients carry only the hash of theirs. Times are Unix seconds as SQLite integers (a time past
//! `i64::MAX` is stored as `i64::MAX`).
//!
//! # Atomicity
//!
//! Every operation is a single SQL statement (but for a passkey insert with a setup token: two, in
//! one transaction), and SQLite runs each under the database's write lock (or, for reads, on one
//! consistent snapshot), so no other connection, in this process or another, observes or
//! interleaves with half of one:
//!
//! - token `insert`: one `INSERT … ON CONFLICT (kind, hash) DO UPDATE … WHERE` the existing row has
//!   expired. A live row, consumed or not, is left untouched and the statement changes no row,
//!   which is reported as [`StoreError::AlreadyExists`]; an expired row is replaced. Of concurrent
//!   inserts of one key exactly one changes a row;
//! - token `consume`: one `UPDATE … SET uses = uses + 1 … RETURNING`, guarded by
//!   `expires_at > now`. Updates of one row are serialised by the write lock, so every caller
//!   sees a different `uses`, and only the caller that sees `uses = 1` gets [`Consumed::First`];
//!   `consumed_at` is set by that update only (`COALESCE`). Every later caller gets
//!   [`Consumed::Replayed`] with the first consume's time;
//! - token `get`: one `SELECT` of a live row with `uses = 0`: no side effect;
//! - token `delete` and `revoke_grant`: one `DELETE` each (`revoke_grant` by `grant_id`, so it
//!   removes every row of the grant that exists when it runs, of every kind, consumed or not);
//! - client `insert`: one `INSERT … SELECT … WHERE` the count of live unapproved rows is below
//!   the cap (for an unapproved client) `ON CONFLICT (client_id) DO UPDATE … WHERE` the existing
//!   registration has expired. The statement takes the write lock before it counts, so
//!   concurrent registrations, from any process, never exceed the cap; a refused one changes no
//!   row and removes nothing;
//! - client `mark_approved`: one `UPDATE` of a live row (the column and the JSON record, with
//!   `json_set`); `delete_unapproved`: one `DELETE … WHERE` the record has no `approved_at`;
//! - passkey `insert`: a plain `INSERT`; the primary key rejects a duplicate credential id
//!   ([`StoreError::AlreadyExists`]). With a setup token, one `BEGIN IMMEDIATE` transaction first
//!   inserts the token's hash into `mcp_oauth_used_setup_tokens`, whose primary key rejects a used
//!   one, then the passkey: both are committed or neither. `update` and `delete`: one statement
//!   each, by credential id; neither touches the used setup tokens.
//!
//! # Expiry
//!
//! Every read compares `expires_at` with the current time itself, so an expired row is invisible
//! whether or not it has been purged. Purging is [`TokenStore::delete_expired`] and
//! [`ClientStore::delete_expired`] (one `DELETE … WHERE expires_at <= now` each), which
//! [`McpOAuth::spawn_expiry_sweeper`](crate::McpOAuth::spawn_expiry_sweeper) calls periodically.
//! Expiry is checked against the clock of the process asking.

/// The `sqlx` crate this backend is built on, to name [`sqlx::SqlitePool`] and
/// build one with options of your own.
pub use sqlx;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, SqlSafeStr};

use crate::store::{
    BoxError, ClientRecord, ClientStore, Consumed, GrantId, MAX_SWAP_ATTEMPTS, PasskeyChange,
    PasskeyRecord, PasskeyStore, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore,
    UnixTime, apply_to_json,
};

const BACKEND: &str = "sqlite";

/// The table in which [`SqliteStore::migrate`] records applied migrations.
const MIGRATIONS_TABLE: &str = "_mcp_oauth_migrations";

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest pause between two attempts of [`switch_to_wal`].
const MAX_SWITCH_PAUSE: Duration = Duration::from_millis(50);

/// Switch the database file to WAL mode (a read that changes nothing once it is), waiting up to
/// [`BUSY_TIMEOUT`] for other connections doing the same.
///
/// The switch upgrades the statement's read transaction to a write transaction, and SQLite answers
/// that upgrade with `SQLITE_BUSY` at once, without calling the busy handler, while another
/// connection holds the write lock: two connections both upgrading could wait for each other for
/// ever (`btreeBeginTrans` invokes the busy handler only for a connection with no transaction
/// open). Connections opening a new file together, in tasks or processes, meet exactly that. So
/// the busy handler's wait is done here: a failed attempt holds no lock when it returns, so
/// waiting cannot deadlock, and once one connection has switched the file, the others' next
/// attempt only reads that it is in WAL mode.
async fn switch_to_wal(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match sqlx::query(SWITCH_TO_WAL).execute(&mut *conn).await {
            Err(error) if is_busy(&error) && Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_SWITCH_PAUSE);
            }
            done => return done.map(drop),
        }
    }
}

/// Whether SQLite answered `SQLITE_BUSY` (or one of its extended codes).
fn is_busy(error: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    db.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_BUSY)
}

/// Apply the migrations not yet recorded in [`MIGRATIONS_TABLE`], as sqlx's `Migrator::run` does
/// with `dangerous_set_table_name(MIGRATIONS_TABLE)` and `set_ignore_missing(true)`: refuse a
/// dirty (half-applied) database or a changed checksum, ignore recorded versions this build does
/// not know, apply each missing one in its own savepoint.
///
/// Written against sqlx's public `Migrate` trait rather than calling `Migrator::run(&mut *tx)`:
/// that method's `Acquire<'a>` bound on `&mut SqliteConnection` makes the future not `Send` (sqlx
/// works around it only with a hidden `run_direct`), and `connect` must stay spawnable.
async fn apply_migrations(conn: &mut SqliteConnection) -> Result<(), MigrateError> {
    conn.ensure_migrations_table(MIGRATIONS_TABLE).await?;
    if let Some(version) = conn.dirty_version(MIGRATIONS_TABLE).await? {
        return Err(MigrateError::Dirty(version));
    }
    let applied = conn.list_applied_migrations(MIGRATIONS_TABLE).await?;
    for migration in migrations() {
        match applied.iter().find(|a| a.version == migration.version) {
            Some(done) if done.checksum != migration.checksum => {
                return Err(MigrateError::VersionMismatch(migration.version));
            }
            Some(_) => {}
            None => {
                conn.apply(MIGRATIONS_TABLE, &migration).await?;
            }
        }
    }
    Ok(())
}

/// The schema's migrations, in order. Never edit a released one; append.
fn migrations() -> Vec<Migration> {
    vec![
        Migration::new(
            1,
            Cow::Borrowed("init"),
            MigrationType::Simple,
            include_str!("../migrations/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("used setup tokens"),
            MigrationType::Simple,
            include_str!("../migrations/0002_used_setup_tokens.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("unapproved clients"),
            MigrationType::Simple,
            include_str!("../migrations/0003_unapproved_clients.sql").into_sql_str(),
            false,
        ),
    ]
}

// --- SQL. Static strings only: no value is ever formatted into a statement.

/// Insert if absent, or replace an expired row. Changes no row when a live one holds the key.
/// ?1 kind, ?2 hash, ?3 grant_id, ?4 expires_at, ?5 payload, ?6 now.
const INSERT_TOKEN: &str = "\
INSERT INTO mcp_oauth_tokens (kind, hash, grant_id, expires_at, payload, uses, consumed_at)
VALUES (?1, ?2, ?3, ?4, ?5, 0, NULL)
ON CONFLICT (kind, hash) DO UPDATE SET
    grant_id = excluded.grant_id,
    expires_at = excluded.expires_at,
    payload = excluded.payload,
    uses = 0,
    consumed_at = NULL
WHERE mcp_oauth_tokens.expires_at <= ?6";

/// ?1 kind, ?2 hash, ?3 now.
const GET_TOKEN: &str = "\
SELECT grant_id, expires_at, payload FROM mcp_oauth_tokens
WHERE kind = ?1 AND hash = ?2 AND expires_at > ?3 AND uses = 0";

/// Count a use of a live row and return it; `uses = 1` is the first, winning consume.
/// ?1 kind, ?2 hash, ?3 now (the store's, for liveness), ?4 the caller's now (recorded once).
const CONSUME_TOKEN: &str = "\
UPDATE mcp_oauth_tokens
SET uses = uses + 1, consumed_at = COALESCE(consumed_at, ?4)
WHERE kind = ?1 AND hash = ?2 AND expires_at > ?3
RETURNING grant_id, expires_at, payload, uses, consumed_at";

/// ?1 kind, ?2 hash.
const DELETE_TOKEN: &str = "\
DELETE FROM mcp_oauth_tokens WHERE kind = ?1 AND hash = ?2 RETURNING expires_at";

/// ?1 kind, ?2 now.
const LIST_TOKENS_OF_KIND: &str = "\
SELECT hash, grant_id, expires_at, payload FROM mcp_oauth_tokens
WHERE kind = ?1 AND expires_at > ?2 AND uses = 0";

/// ?1 grant_id.
const REVOKE_GRANT: &str = "\
DELETE FROM mcp_oauth_tokens WHERE grant_id = ?1 RETURNING expires_at";

/// ?1 now.
const PURGE_TOKENS: &str = "DELETE FROM mcp_oauth_tokens WHERE expires_at <= ?1";

/// Insert if absent, or replace an expired registration (NULL never expires); an unapproved one
/// only while fewer than the cap of live unapproved rows exist. Changes no row when a live one
/// holds the key or the cap is reached. One statement: SQLite takes the write lock before it
/// counts, so no other writer can slip in between the count and the insert.
/// ?1 client_id, ?2 expires_at, ?3 record, ?4 now, ?5 unapproved (0 or 1), ?6 the cap.
const INSERT_CLIENT: &str = "\
INSERT INTO mcp_oauth_clients (client_id, expires_at, record, unapproved)
SELECT ?1, ?2, ?3, ?5
WHERE ?5 = 0 OR (
    SELECT COUNT(*) FROM mcp_oauth_clients
    WHERE unapproved = 1 AND (expires_at IS NULL OR expires_at > ?4)
) < ?6
ON CONFLICT (client_id) DO UPDATE SET
    expires_at = excluded.expires_at,
    record = excluded.record,
    unapproved = excluded.unapproved
WHERE mcp_oauth_clients.expires_at <= ?4";

/// Whether a live row holds the id: tells a refused insert's two causes apart.
/// ?1 client_id, ?2 now.
const CLIENT_IS_LIVE: &str = "\
SELECT 1 FROM mcp_oauth_clients
WHERE client_id = ?1 AND (expires_at IS NULL OR expires_at > ?2)";

/// Record the owner's approval in the row and its JSON record, if the row is live.
/// ?1 client_id, ?2 approved_at, ?3 expires_at (NULL: never), ?4 now.
const APPROVE_CLIENT: &str = "\
UPDATE mcp_oauth_clients
SET unapproved = 0,
    expires_at = ?3,
    record = json_set(record, '$.approved_at', ?2, '$.expires_at', ?3)
WHERE client_id = ?1 AND (expires_at IS NULL OR expires_at > ?4)";

/// Delete a registration never approved (legacy rows included: their records lack `approved_at`).
/// ?1 client_id.
const DELETE_UNAPPROVED_CLIENT: &str = "\
DELETE FROM mcp_oauth_clients
WHERE client_id = ?1 AND json_extract(record, '$.approved_at') IS NULL
RETURNING expires_at";

/// ?1 client_id, ?2 now.
const GET_CLIENT: &str = "\
SELECT record FROM mcp_oauth_clients
WHERE client_id = ?1 AND (expires_at IS NULL OR expires_at > ?2)";

/// ?1 client_id.
const DELETE_CLIENT: &str = "\
DELETE FROM mcp_oauth_clients WHERE client_id = ?1 RETURNING expires_at";

/// ?1 now.
const LIST_CLIENTS: &str = "\
SELECT record FROM mcp_oauth_clients WHERE expires_at IS NULL OR expires_at > ?1";

/// ?1 now. NULL (never) is not `<=` anything.
const PURGE_CLIENTS: &str = "DELETE FROM mcp_oauth_clients WHERE expires_at <= ?1";

const LIST_PASSKEYS: &str = "SELECT record FROM mcp_oauth_passkeys ORDER BY rowid";

/// ?1 credential_id.
const GET_PASSKEY: &str = "SELECT record FROM mcp_oauth_passkeys WHERE credential_id = ?1";

/// ?1 credential_id, ?2 record.
const INSERT_PASSKEY: &str =
    "INSERT INTO mcp_oauth_passkeys (credential_id, record) VALUES (?1, ?2)";

/// ?1 setup token hash (hex). The primary key refuses a used one.
const USE_SETUP_TOKEN: &str = "INSERT INTO mcp_oauth_used_setup_tokens (hash) VALUES (?1)";

/// ?1 setup token hash (hex).
const SETUP_TOKEN_USED: &str =
    "SELECT EXISTS (SELECT 1 FROM mcp_oauth_used_setup_tokens WHERE hash = ?1)";

/// ?1 credential_id, ?2 record.
/// Replace a passkey's record only if it is still the one read: a compare-and-swap.
const SWAP_PASSKEY: &str =
    "UPDATE mcp_oauth_passkeys SET record = ?3 WHERE credential_id = ?1 AND record = ?2";

/// ?1 credential_id.
const DELETE_PASSKEY: &str = "DELETE FROM mcp_oauth_passkeys WHERE credential_id = ?1";

const SWITCH_TO_WAL: &str = "PRAGMA journal_mode = WAL";

/// Whether the connection's main database is in memory (it has no file).
const IS_IN_MEMORY: &str = "SELECT file = '' FROM pragma_database_list WHERE name = 'main'";

// --- Errors and conversions.

/// A driver error; a unique-constraint violation becomes `AlreadyExists { what }`.
fn sql_error(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists { what },
        _ => StoreError::backend(BACKEND, error),
    }
}

fn codec(error: impl Into<BoxError>) -> StoreError {
    StoreError::codec(BACKEND, error)
}

/// A time as an SQLite integer, saturating.
fn to_sql(time: UnixTime) -> i64 {
    i64::try_from(time.0).unwrap_or(i64::MAX)
}

/// An SQLite integer as a time; this backend never writes a negative one.
fn from_sql(value: i64) -> UnixTime {
    UnixTime(u64::try_from(value).unwrap_or(0))
}

/// Tokens, clients and passkeys in SQLite: implements [`TokenStore`], [`ClientStore`] and
/// [`PasskeyStore`], so one store serves all three
/// ([`McpOAuthBuilder::stores`](crate::McpOAuthBuilder::stores)).
///
/// See the [module documentation](self) for URLs, the schema and the atomicity of each
/// operation. Cloning is cheap and shares the connection pool.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Open (creating it if missing) the database at `url`, then apply the migrations.
    ///
    /// `url` is an sqlx SQLite URL: `sqlite://oauth.db`, `sqlite:///abs/path/oauth.db`, or
    /// `sqlite::memory:` for a private in-memory database. A file is opened in WAL journal mode
    /// with `synchronous = NORMAL` and a busy timeout of a few seconds, in a pool of several
    /// connections; an in-memory database gets a pool of exactly one connection that stays open
    /// for the life of the store, since the database vanishes with its last connection.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the URL is malformed, the file cannot be opened or created, or
    /// the migrations fail (see [`migrate`](Self::migrate)).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // No `journal_mode` here: sqlx would switch every connection as it opens, and a switch
        // that meets another fails at once (see `switch_to_wal`). WAL mode is stored in the file,
        // so once the probe below has switched it, every connection opens in WAL mode.
        // Never SQLite's shared cache (which SQLite itself discourages), even when the URL asks:
        // its table locks fail at once with `SQLITE_LOCKED_SHAREDCACHE` instead of waiting in the
        // busy handler, so connections racing on a new file would fail. A pool over a file does
        // not need it, and an in-memory database here keeps one connection.
        let options = SqliteConnectOptions::from_str(url)
            .map_err(sql_error("database"))?
            .shared_cache(false)
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);

        // One connection first, alone: it tells whether the database is in memory (or a private
        // temporary one: no file name), which needs a pool of one, and switches a file to WAL
        // before the pool opens several connections. Closing it loses nothing: nothing has been
        // written yet but the journal mode, which is stored in the file.
        let mut probe = options.connect().await.map_err(sql_error("database"))?;
        let in_memory: bool = sqlx::query_scalar(IS_IN_MEMORY)
            .fetch_optional(&mut probe)
            .await
            .map_err(sql_error("database"))?
            .unwrap_or(false);
        if !in_memory {
            switch_to_wal(&mut probe)
                .await
                .map_err(sql_error("database"))?;
        }
        probe.close().await.map_err(sql_error("database"))?;

        let pool_options = if in_memory {
            // The database lives as long as its connection: keep exactly one, forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new()
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(sql_error("database"))?;
        let store = Self::from_pool(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// A store over a pool you configured yourself. Applies no migrations: call
    /// [`migrate`](Self::migrate) once before use (it is idempotent).
    ///
    /// Give file databases a busy timeout (sqlx's default is 5 seconds), preferably WAL mode, and
    /// in-memory databases a pool that keeps its one connection open (see the
    /// [module documentation](self#connecting)).
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Apply the migrations this version of the crate needs, skipping those already applied.
    ///
    /// Idempotent, and safe to run from several processes at once: it runs in one `BEGIN
    /// IMMEDIATE` transaction, so concurrent runs queue for the database's write lock (up to the
    /// busy timeout) and the later ones find the work done. Applied migrations are recorded in
    /// the table `_mcp_oauth_migrations`, not sqlx's default `_sqlx_migrations`, and migrations
    /// recorded there that this version does not know are ignored; an application's own sqlx
    /// migrations on the same database are unaffected.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the database fails, or if an applied migration's checksum no
    /// longer matches (the database was migrated by an incompatible build).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sql_error("migration"))?;
        apply_migrations(&mut tx)
            .await
            .map_err(|e| StoreError::backend(BACKEND, e))?;
        tx.commit().await.map_err(sql_error("migration"))
    }

    /// The connection pool, for maintenance or inspection (the tables are listed in the
    /// [module documentation](self#schema-and-migrations)).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl TokenStore for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    /// One upsert that replaces only an expired row: atomic (see the module documentation).
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
        let now = to_sql(UnixTime::now());
        let done = sqlx::query(INSERT_TOKEN)
            .bind(record.kind.as_str())
            .bind(&record.hash.0[..])
            .bind(&record.grant_id.0)
            .bind(to_sql(record.expires_at))
            .bind(&record.payload)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(sql_error("token"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists { what: "token" });
        }
        Ok(())
    }

    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let now = to_sql(UnixTime::now());
        let row: Option<(String, i64, Vec<u8>)> = sqlx::query_as(GET_TOKEN)
            .bind(kind.as_str())
            .bind(&hash.0[..])
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_error("token"))?;
        Ok(row.map(|(grant_id, expires_at, payload)| TokenRecord {
            kind,
            hash: *hash,
            grant_id: GrantId(grant_id),
            expires_at: from_sql(expires_at),
            payload,
        }))
    }

    /// One `UPDATE … RETURNING` counting uses: atomic (see the module documentation).
    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        consumed_at_now: UnixTime,
    ) -> Result<Option<Consumed>, StoreError> {
        let row: Option<(String, i64, Vec<u8>, i64, Option<i64>)> = sqlx::query_as(CONSUME_TOKEN)
            .bind(kind.as_str())
            .bind(&hash.0[..])
            .bind(to_sql(UnixTime::now()))
            .bind(to_sql(consumed_at_now))
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_error("token"))?;
        Ok(
            row.map(|(grant_id, expires_at, payload, uses, consumed_at)| {
                let record = TokenRecord {
                    kind,
                    hash: *hash,
                    grant_id: GrantId(grant_id),
                    expires_at: from_sql(expires_at),
                    payload,
                };
                if uses == 1 {
                    Consumed::First(record)
                } else {
                    Consumed::Replayed {
                        record,
                        consumed_at: consumed_at.map_or(consumed_at_now, from_sql),
                    }
                }
            }),
        )
    }

    async fn delete(&self, kind: TokenKind, hash: &TokenHash) -> Result<bool, StoreError> {
        let now = to_sql(UnixTime::now());
        let expires_at: Option<i64> = sqlx::query_scalar(DELETE_TOKEN)
            .bind(kind.as_str())
            .bind(&hash.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_error("token"))?;
        Ok(expires_at.is_some_and(|at| at > now))
    }

    /// One `SELECT` by kind (the primary key's first column).
    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows: Vec<(Vec<u8>, String, i64, Vec<u8>)> = sqlx::query_as(LIST_TOKENS_OF_KIND)
            .bind(TokenKind::Grant.as_str())
            .bind(to_sql(UnixTime::now()))
            .fetch_all(&self.pool)
            .await
            .map_err(sql_error("token"))?;
        rows.into_iter()
            .map(|(hash, grant_id, expires_at, payload)| {
                let hash = <[u8; 32]>::try_from(hash.as_slice())
                    .map_err(|_| codec("a token hash is not 32 bytes"))?;
                Ok(TokenRecord {
                    kind: TokenKind::Grant,
                    hash: TokenHash(hash),
                    grant_id: GrantId(grant_id),
                    expires_at: from_sql(expires_at),
                    payload,
                })
            })
            .collect()
    }

    /// One `DELETE` by grant. Counts the live records removed (expired ones count as absent).
    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError> {
        let now = to_sql(UnixTime::now());
        let removed: Vec<i64> = sqlx::query_scalar(REVOKE_GRANT)
            .bind(&grant_id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(sql_error("token"))?;
        Ok(removed.into_iter().filter(|&at| at > now).count() as u64)
    }

    /// Deletes the expired token rows; returns how many.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(PURGE_TOKENS)
            .bind(to_sql(UnixTime::now()))
            .execute(&self.pool)
            .await
            .map_err(sql_error("token"))?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl ClientStore for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    /// One statement that counts the live unapproved rows and inserts under the write lock, or
    /// replaces only an expired registration: atomic.
    async fn insert(&self, client: ClientRecord, max_unapproved: u64) -> Result<(), StoreError> {
        let now = to_sql(UnixTime::now());
        let json = serde_json::to_string(&client).map_err(codec)?;
        let done = sqlx::query(INSERT_CLIENT)
            .bind(&client.client_id)
            .bind(client.expires_at.map(to_sql))
            .bind(json)
            .bind(now)
            .bind(i64::from(!client.is_approved()))
            .bind(i64::try_from(max_unapproved).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(sql_error("client"))?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        let taken: Option<i64> = sqlx::query_scalar(CLIENT_IS_LIVE)
            .bind(&client.client_id)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_error("client"))?;
        Err(match taken {
            Some(_) => StoreError::AlreadyExists { what: "client" },
            None => StoreError::CapacityReached {
                what: "unapproved client",
            },
        })
    }

    /// One `UPDATE` of a live row.
    async fn mark_approved(
        &self,
        client_id: &str,
        approved_at: UnixTime,
        expires_at: Option<UnixTime>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(APPROVE_CLIENT)
            .bind(client_id)
            .bind(to_sql(approved_at))
            .bind(expires_at.map(to_sql))
            .bind(to_sql(UnixTime::now()))
            .execute(&self.pool)
            .await
            .map_err(sql_error("client"))?;
        Ok(done.rows_affected() > 0)
    }

    /// One `DELETE` guarded by the record's `approved_at`.
    async fn delete_unapproved(&self, client_id: &str) -> Result<bool, StoreError> {
        let now = to_sql(UnixTime::now());
        let removed: Option<Option<i64>> = sqlx::query_scalar(DELETE_UNAPPROVED_CLIENT)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_error("client"))?;
        Ok(removed.is_some_and(|expires_at| expires_at.is_none_or(|at| at > now)))
    }

    async fn get(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let json: Option<String> = sqlx::query_scalar(GET_CLIENT)
            .bind(client_id)
            .bind(to_sql(UnixTime::now()))
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_error("client"))?;
        json.map(|json| serde_json::from_str(&json).map_err(codec))
            .transpose()
    }

    async fn delete(&self, client_id: &str) -> Result<bool, StoreError> {
        let now = to_sql(UnixTime::now());
        let removed: Option<Option<i64>> = sqlx::query_scalar(DELETE_CLIENT)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_error("client"))?;
        Ok(removed.is_some_and(|expires_at| expires_at.is_none_or(|at| at > now)))
    }

    async fn list(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(LIST_CLIENTS)
            .bind(to_sql(UnixTime::now()))
            .fetch_all(&self.pool)
            .await
            .map_err(sql_error("client"))?;
        rows.iter()
            .map(|json| serde_json::from_str(json).map_err(codec))
            .collect()
    }

    /// Deletes the expired client rows; returns how many.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(PURGE_CLIENTS)
            .bind(to_sql(UnixTime::now()))
            .execute(&self.pool)
            .await
            .map_err(sql_error("client"))?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl PasskeyStore for SqliteStore {
    /// In registration order.
    async fn list(&self) -> Result<Vec<PasskeyRecord>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(LIST_PASSKEYS)
            .fetch_all(&self.pool)
            .await
            .map_err(sql_error("passkey"))?;
        rows.iter()
            .map(|json| serde_json::from_str(json).map_err(codec))
            .collect()
    }

    async fn get(&self, credential_id: &str) -> Result<Option<PasskeyRecord>, StoreError> {
        let json: Option<String> = sqlx::query_scalar(GET_PASSKEY)
            .bind(credential_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_error("passkey"))?;
        json.map(|json| serde_json::from_str(&json).map_err(codec))
            .transpose()
    }

    /// One `INSERT`; the primary key refuses a duplicate credential id, atomically. With a setup
    /// token, its use and the passkey in one `BEGIN IMMEDIATE` transaction: both or neither.
    async fn insert(&self, record: PasskeyRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(&record).map_err(codec)?;
        let insert_passkey = sqlx::query(INSERT_PASSKEY)
            .bind(&record.credential_id)
            .bind(json);
        let Some(setup_token) = record.setup_token_hash else {
            insert_passkey
                .execute(&self.pool)
                .await
                .map_err(sql_error("passkey"))?;
            return Ok(());
        };
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sql_error("passkey"))?;
        sqlx::query(USE_SETUP_TOKEN)
            .bind(setup_token.to_hex())
            .execute(&mut *tx)
            .await
            .map_err(sql_error("setup token"))?;
        insert_passkey
            .execute(&mut *tx)
            .await
            .map_err(sql_error("passkey"))?;
        // Dropped uncommitted on any error above: rolled back, the setup token unused.
        tx.commit().await.map_err(sql_error("passkey"))
    }

    async fn setup_token_used(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        sqlx::query_scalar(SETUP_TOKEN_USED)
            .bind(hash.to_hex())
            .fetch_one(&self.pool)
            .await
            .map_err(sql_error("setup token"))
    }

    /// A compare-and-swap on the stored text, retried when another writer changed the record
    /// between the read and the write; nothing is written when nothing changes.
    async fn modify(
        &self,
        credential_id: &str,
        change: &PasskeyChange,
    ) -> Result<Option<bool>, StoreError> {
        for _ in 0..MAX_SWAP_ATTEMPTS {
            let stored: Option<String> = sqlx::query_scalar(GET_PASSKEY)
                .bind(credential_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(sql_error("passkey"))?;
            let Some(stored) = stored else {
                return Ok(None);
            };
            let Some(next) = apply_to_json(&stored, change, BACKEND)? else {
                return Ok(Some(false));
            };
            let done = sqlx::query(SWAP_PASSKEY)
                .bind(credential_id)
                .bind(&stored)
                .bind(next)
                .execute(&self.pool)
                .await
                .map_err(sql_error("passkey"))?;
            if done.rows_affected() > 0 {
                return Ok(Some(true));
            }
        }
        Err(StoreError::backend(
            BACKEND,
            format!("passkey record kept changing during {MAX_SWAP_ATTEMPTS} attempts"),
        ))
    }

    async fn delete(&self, credential_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(DELETE_PASSKEY)
            .bind(credential_id)
            .execute(&self.pool)
            .await
            .map_err(sql_error("passkey"))?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_saturate_into_sqlite_integers() {
        assert_eq!(to_sql(UnixTime(1_700_000_000)), 1_700_000_000);
        assert_eq!(to_sql(UnixTime(u64::MAX)), i64::MAX);
        assert_eq!(from_sql(i64::MAX), UnixTime(i64::MAX as u64));
        assert_eq!(from_sql(-1), UnixTime(0));
    }

    #[test]
    fn the_migrations_are_embedded_in_order() {
        let migrations = migrations();
        assert!(
            migrations
                .windows(2)
                .all(|pair| pair[0].version < pair[1].version)
        );
        assert!(migrations[0].sql.as_str().contains("mcp_oauth_tokens"));
    }
}
