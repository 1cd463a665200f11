//! [`PostgresStore`]: tokens, clients and passkeys in PostgreSQL, surviving restarts and shared by
//! every instance of the server.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mcp_oauth::backends::PostgresStore;
//! use mcp_oauth::{McpOAuth, OAuthConfig};
//!
//! let config = OAuthConfig::with_defaults(
//!     "https://mcp.example.com", "claude", "a-long-random-secret", "Example", "data/passkeys.json",
//! );
//! // Connects and applies the migrations.
//! let store = PostgresStore::connect("postgres://mcp@db.internal/app").await?;
//! let oauth = McpOAuth::builder(config).stores(store).build()?;
//! // PostgreSQL has no native expiry: purge expired rows now and then (reads never return them).
//! let sweeper = oauth.spawn_expiry_sweeper(std::time::Duration::from_secs(600));
//! let app = oauth.router(axum::Router::new()); // your MCP routes
//! # let _ = (app, sweeper); Ok(()) }
//! ```
//!
//! Like Redis, PostgreSQL is a backend for several instances behind a load balancer: every piece of
//! state a flow needs (pending authorization requests, codes, tokens, WebAuthn ceremony state,
//! registered clients, and the owner's passkeys) lives in the one database, so any instance can
//! serve any step of any flow, and every instance verifies the owner against the same passkeys.
//! Unlike Redis, it persists every commit without further configuration.
//!
//! # Connecting
//!
//! [`PostgresStore::connect`] takes a libpq-style URL, `postgres://user:password@host:5432/db`,
//! with its usual parameters (`sslmode=require` or `verify-full` for TLS with rustls and the
//! webpki roots, `sslrootcert`, `application_name`, `options=-c search_path=…`). The pool waits at
//! most [`ACQUIRE_TIMEOUT`] for a connection, so while the database is unreachable every operation
//! fails within seconds instead of holding a request.
//!
//! For other settings (pool size, timeouts, TLS certificates given as bytes), build an
//! [`sqlx::PgPool`] yourself and pass it to [`PostgresStore::from_pool`], then call
//! [`PostgresStore::migrate`].
//!
//! # Schema and migrations
//!
//! The migrations in the crate's `migrations/postgres/` directory create four tables, all prefixed
//! `mcp_oauth_`, in the first schema of the connection's `search_path` (`public` by default), so
//! the database can be the application's own:
//!
//! | table | key | holds |
//! |---|---|---|
//! | `mcp_oauth_tokens` | `(kind, hash)` | `grant_id`, `expires_at`, `payload` (`BYTEA`, verbatim), `uses`, `consumed_at`; indexed on `grant_id` and `expires_at` |
//! | `mcp_oauth_clients` | `client_id` | `expires_at` (NULL: never), `unapproved` (counts toward the cap on unapproved registrations), `record` (the [`ClientRecord`] as JSON text); indexed on `expires_at`, and on `expires_at` of the unapproved rows |
//! | `mcp_oauth_passkeys` | `credential_id` | `registered` (an identity column: the listing order), `record` (the [`PasskeyRecord`] as JSON text) |
//! | `mcp_oauth_used_setup_tokens` | `hash` | nothing else: the lower-case hex SHA-256 of every setup token that registered a passkey, kept when the passkey goes |
//!
//! Records are JSON kept as `TEXT`, not `JSONB`, which refuses the `\u0000` escape a client's
//! metadata may carry. [`migrate`](PostgresStore::migrate) records applied migrations in its own
//! table, `_mcp_oauth_migrations`, and ignores migrations it does not know, so an application
//! running its own sqlx migrations (in `_sqlx_migrations`) on the same database never clashes with
//! these. Raw secrets never reach the database: tokens are keyed by the SHA-256 of the secret, and
//! clients carry only the hash of theirs. Times are Unix seconds as `BIGINT` (a time past
//! `i64::MAX` is stored as `i64::MAX`).
//!
//! # Atomicity
//!
//! PostgreSQL runs every statement atomically, and its row locks serialise concurrent writers of
//! one row: a statement that waited for another re-reads the row as that one left it. Each
//! operation is one statement, one transaction, or a compare-and-swap:
//!
//! - token `insert`: one `INSERT … ON CONFLICT (kind, hash) DO UPDATE … WHERE` the existing row has
//!   expired. A live row, consumed or not, is left untouched and the statement changes no row,
//!   which is reported as [`StoreError::AlreadyExists`]; an expired row is replaced. Of concurrent
//!   inserts of one key exactly one changes a row;
//! - token `consume`: one `UPDATE … SET uses = uses + 1 … RETURNING`, guarded by
//!   `expires_at > now`. Concurrent updates of the row queue for its lock, so every caller sees a
//!   different `uses`, and only the caller that sees `uses = 1` gets [`Consumed::First`];
//!   `consumed_at` is set by that update only (`COALESCE`). Every later caller gets
//!   [`Consumed::Replayed`] with the first consume's time;
//! - token `get`: one `SELECT` of a live row with `uses = 0`: no side effect;
//! - token `delete` and `revoke_grant`: one `DELETE` each (`revoke_grant` by `grant_id`, so it
//!   removes every row of the grant that exists when it runs, of every kind, consumed or not);
//! - client `insert`: one `INSERT … ON CONFLICT (client_id) DO UPDATE … WHERE` the existing
//!   registration has expired. An unapproved client's insert counts the live unapproved rows in the
//!   same statement, inside a transaction that first takes a transaction-level advisory lock
//!   ([`UNAPPROVED_LOCK`]): PostgreSQL would let two concurrent statements count the same rows, so
//!   the lock makes these inserts, on every instance, count and insert one at a time, and the cap is
//!   never exceeded. A refused one changes no row and removes nothing;
//! - client `mark_approved`: a compare-and-swap on the record text (read, then one `UPDATE … WHERE
//!   record =` the text read), retried if another writer changed it meanwhile; `delete_unapproved`:
//!   one `DELETE … WHERE unapproved`;
//! - passkey `insert`: a plain `INSERT`; the primary key rejects a duplicate credential id
//!   ([`StoreError::AlreadyExists`]). With a setup token, one transaction first inserts the token's
//!   hash into `mcp_oauth_used_setup_tokens`, whose primary key rejects a used one, then the
//!   passkey: both are committed or neither. `modify`: a compare-and-swap on the record text, as
//!   above, nothing written when nothing changes; `delete`: one statement by credential id, which
//!   leaves the used setup tokens alone.
//!
//! # Expiry
//!
//! Every read compares `expires_at` with the current time itself, so an expired row is invisible
//! whether or not it has been purged. Purging is [`TokenStore::delete_expired`] and
//! [`ClientStore::delete_expired`] (one `DELETE … WHERE expires_at <= now` each), which
//! [`McpOAuth::spawn_expiry_sweeper`](crate::McpOAuth::spawn_expiry_sweeper) calls periodically.
//! Expiry is checked against the clock of the instance asking: keep the instances' clocks
//! synchronised (NTP).
//!
//! # Outages
//!
//! While PostgreSQL is down every operation fails within [`ACQUIRE_TIMEOUT`] (a server that accepts
//! and never answers, or a connection cut off without a reset: within [`OPERATION_TIMEOUT`]) with
//! [`StoreError::Backend`] (the HTTP layer answers 503 with `Retry-After`, never a wrong grant or a
//! 401), and once it is back the pool opens new connections by itself: the same store works again
//! without being rebuilt.

/// The `sqlx` crate this backend is built on, to name [`sqlx::PgPool`] and build one with options
/// of your own.
pub use sqlx;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::store::{
    BoxError, ClientRecord, ClientStore, Consumed, GrantId, MAX_SWAP_ATTEMPTS, PasskeyChange,
    PasskeyRecord, PasskeyStore, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore,
    UnixTime, apply_to_json,
};

const BACKEND: &str = "postgres";

/// The table in which [`PostgresStore::migrate`] records applied migrations.
const MIGRATIONS_TABLE: &str = "_mcp_oauth_migrations";

/// How long [`PostgresStore::connect`]'s pool waits for a connection before an operation fails.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one store operation may take, the wait for a connection included: a server that
/// stopped answering (frozen, or behind a partition that drops packets) fails the operation with
/// [`StoreError::Backend`] instead of holding the request until TCP gives up, hours later.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The transaction-level advisory lock key under which [`PostgresStore::migrate`] applies the
/// migrations, so that instances starting together apply each migration once: the bytes
/// `mcp_oaum` ("mcp_oauth migrations"). Advisory locks are per database; an application using the
/// same key would only wait.
pub const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"mcp_oaum");

/// The transaction-level advisory lock key that serialises the inserts of unapproved clients, so
/// that each counts the others' rows: the bytes `mcp_oauc`.
pub const UNAPPROVED_LOCK: i64 = i64::from_be_bytes(*b"mcp_oauc");

/// Apply the migrations not yet recorded in [`MIGRATIONS_TABLE`], as sqlx's `Migrator::run` does
/// with `dangerous_set_table_name(MIGRATIONS_TABLE)` and `set_ignore_missing(true)`: refuse a
/// dirty (half-applied) database or a changed checksum, ignore recorded versions this build does
/// not know, apply each missing one in its own savepoint. The caller holds [`MIGRATION_LOCK`].
///
/// Written against sqlx's public `Migrate` trait rather than calling `Migrator::run`, whose lock
/// is keyed by the database name alone (an application's own migrator would share it) and is
/// held by the session rather than a transaction.
async fn apply_migrations(conn: &mut PgConnection) -> Result<(), MigrateError> {
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
    vec![Migration::new(
        1,
        Cow::Borrowed("init"),
        MigrationType::Simple,
        include_str!("../migrations/postgres/0001_init.sql").into_sql_str(),
        false,
    )]
}

// --- SQL. Static strings only: no value is ever formatted into a statement.

/// $1 the lock key.
const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// Insert if absent, or replace an expired row. Changes no row when a live one holds the key.
/// $1 kind, $2 hash, $3 grant_id, $4 expires_at, $5 payload, $6 now.
const INSERT_TOKEN: &str = "\
INSERT INTO mcp_oauth_tokens (kind, hash, grant_id, expires_at, payload, uses, consumed_at)
VALUES ($1, $2, $3, $4, $5, 0, NULL)
ON CONFLICT (kind, hash) DO UPDATE SET
    grant_id = excluded.grant_id,
    expires_at = excluded.expires_at,
    payload = excluded.payload,
    uses = 0,
    consumed_at = NULL
WHERE mcp_oauth_tokens.expires_at <= $6";

/// $1 kind, $2 hash, $3 now.
const GET_TOKEN: &str = "\
SELECT grant_id, expires_at, payload FROM mcp_oauth_tokens
WHERE kind = $1 AND hash = $2 AND expires_at > $3 AND uses = 0";

/// Count a use of a live row and return it; `uses = 1` is the first, winning consume.
/// $1 kind, $2 hash, $3 now (the store's, for liveness), $4 the caller's now (recorded once).
const CONSUME_TOKEN: &str = "\
UPDATE mcp_oauth_tokens
SET uses = uses + 1, consumed_at = COALESCE(consumed_at, $4)
WHERE kind = $1 AND hash = $2 AND expires_at > $3
RETURNING grant_id, expires_at, payload, uses, consumed_at";

/// $1 kind, $2 hash.
const DELETE_TOKEN: &str = "\
DELETE FROM mcp_oauth_tokens WHERE kind = $1 AND hash = $2 RETURNING expires_at";

/// $1 kind, $2 now.
const LIST_TOKENS_OF_KIND: &str = "\
SELECT hash, grant_id, expires_at, payload FROM mcp_oauth_tokens
WHERE kind = $1 AND expires_at > $2 AND uses = 0";

/// $1 grant_id.
const REVOKE_GRANT: &str = "\
DELETE FROM mcp_oauth_tokens WHERE grant_id = $1 RETURNING expires_at";

/// $1 now.
const PURGE_TOKENS: &str = "DELETE FROM mcp_oauth_tokens WHERE expires_at <= $1";

/// Insert if absent, or replace an expired registration (NULL never expires); an unapproved one
/// only while fewer than the cap of live unapproved rows exist (the caller holds
/// [`UNAPPROVED_LOCK`] then). Changes no row when a live one holds the key or the cap is reached.
/// $1 client_id, $2 expires_at, $3 record, $4 now, $5 unapproved, $6 the cap.
const INSERT_CLIENT: &str = "\
INSERT INTO mcp_oauth_clients (client_id, expires_at, record, unapproved)
SELECT $1, $2, $3, $5
WHERE NOT $5 OR (
    SELECT COUNT(*) FROM mcp_oauth_clients
    WHERE unapproved AND (expires_at IS NULL OR expires_at > $4)
) < $6
ON CONFLICT (client_id) DO UPDATE SET
    expires_at = excluded.expires_at,
    record = excluded.record,
    unapproved = excluded.unapproved
WHERE mcp_oauth_clients.expires_at <= $4";

/// Whether a live row holds the id: tells a refused insert's two causes apart.
/// $1 client_id, $2 now.
const CLIENT_IS_LIVE: &str = "\
SELECT 1 FROM mcp_oauth_clients
WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > $2)";

/// Replace a live client's record with its approved form, only if it is still the one read: a
/// compare-and-swap. $1 client_id, $2 the record read, $3 the approved record, $4 expires_at
/// (NULL: never), $5 now.
const APPROVE_CLIENT: &str = "\
UPDATE mcp_oauth_clients
SET unapproved = FALSE, expires_at = $4, record = $3
WHERE client_id = $1 AND record = $2 AND (expires_at IS NULL OR expires_at > $5)";

/// Delete a registration never approved. $1 client_id.
const DELETE_UNAPPROVED_CLIENT: &str = "\
DELETE FROM mcp_oauth_clients WHERE client_id = $1 AND unapproved RETURNING expires_at";

/// $1 client_id, $2 now.
const GET_CLIENT: &str = "\
SELECT record FROM mcp_oauth_clients
WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > $2)";

/// $1 client_id.
const DELETE_CLIENT: &str = "\
DELETE FROM mcp_oauth_clients WHERE client_id = $1 RETURNING expires_at";

/// $1 now.
const LIST_CLIENTS: &str = "\
SELECT record FROM mcp_oauth_clients WHERE expires_at IS NULL OR expires_at > $1";

/// $1 now. NULL (never) is not `<=` anything.
const PURGE_CLIENTS: &str = "DELETE FROM mcp_oauth_clients WHERE expires_at <= $1";

const LIST_PASSKEYS: &str = "SELECT record FROM mcp_oauth_passkeys ORDER BY registered";

/// $1 credential_id.
const GET_PASSKEY: &str = "SELECT record FROM mcp_oauth_passkeys WHERE credential_id = $1";

/// $1 credential_id, $2 record.
const INSERT_PASSKEY: &str =
    "INSERT INTO mcp_oauth_passkeys (credential_id, record) VALUES ($1, $2)";

/// $1 setup token hash (hex). The primary key refuses a used one.
const USE_SETUP_TOKEN: &str = "INSERT INTO mcp_oauth_used_setup_tokens (hash) VALUES ($1)";

/// $1 setup token hash (hex).
const SETUP_TOKEN_USED: &str =
    "SELECT EXISTS (SELECT 1 FROM mcp_oauth_used_setup_tokens WHERE hash = $1)";

/// Replace a passkey's record only if it is still the one read: a compare-and-swap.
/// $1 credential_id, $2 the record read, $3 the new record.
const SWAP_PASSKEY: &str =
    "UPDATE mcp_oauth_passkeys SET record = $3 WHERE credential_id = $1 AND record = $2";

/// $1 credential_id.
const DELETE_PASSKEY: &str = "DELETE FROM mcp_oauth_passkeys WHERE credential_id = $1";

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

/// `operation`, failed with [`StoreError::Backend`] past [`OPERATION_TIMEOUT`]. Dropping a
/// statement midway is safe: the pool tests a returned connection (reading what was left unread)
/// before reusing it, and closes it if that fails; a transaction left open is rolled back.
async fn bounded<T>(
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(OPERATION_TIMEOUT, operation)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::backend(
                BACKEND,
                format!("no answer from PostgreSQL within {OPERATION_TIMEOUT:?}"),
            ))
        })
}

/// Whether PostgreSQL can hold `key` as `TEXT`, which has no NUL character. A key with one was
/// never stored, so a lookup by it finds nothing (rather than failing as the server would, with
/// an error a caller would take for an outage).
fn storable(key: &str) -> bool {
    !key.contains('\0')
}

/// A time as a `BIGINT`, saturating.
fn to_sql(time: UnixTime) -> i64 {
    i64::try_from(time.0).unwrap_or(i64::MAX)
}

/// A `BIGINT` as a time; this backend never writes a negative one.
fn from_sql(value: i64) -> UnixTime {
    UnixTime(u64::try_from(value).unwrap_or(0))
}

/// Tokens, clients and passkeys in PostgreSQL: implements [`TokenStore`], [`ClientStore`] and
/// [`PasskeyStore`], so one store serves all three
/// ([`McpOAuthBuilder::stores`](crate::McpOAuthBuilder::stores)).
///
/// See the [module documentation](self) for URLs, the schema and the atomicity of each
/// operation. Cloning is cheap and shares the connection pool.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connect to the database at `url`, then apply the migrations.
    ///
    /// `url` is a PostgreSQL URL, `postgres://user:password@host:port/database` with libpq's
    /// parameters (see the [module documentation](self#connecting)). The pool waits at most
    /// [`ACQUIRE_TIMEOUT`] for a connection.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the URL is malformed, the server cannot be reached or refuses
    /// the login, or the migrations fail (see [`migrate`](Self::migrate)).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(sql_error("database"))?;
        let pool = PgPoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
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
    /// Give the pool a short acquire timeout (sqlx's default is 30 seconds), or requests wait that
    /// long during an outage before they fail.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Apply the migrations this version of the crate needs, skipping those already applied.
    ///
    /// Idempotent, and safe to run from several instances at once: it runs in one transaction
    /// that first takes the advisory lock [`MIGRATION_LOCK`], so concurrent runs queue for it and
    /// the later ones find the work done. Applied migrations are recorded in the table
    /// `_mcp_oauth_migrations`, not sqlx's default `_sqlx_migrations`, and migrations recorded
    /// there that this version does not know are ignored; an application's own sqlx migrations on
    /// the same database are unaffected.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the database fails, or if an applied migration's checksum no
    /// longer matches (the database was migrated by an incompatible build).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(sql_error("migration"))?;
        sqlx::query(LOCK)
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(sql_error("migration"))?;
        apply_migrations(&mut tx)
            .await
            .map_err(|e| StoreError::backend(BACKEND, e))?;
        tx.commit().await.map_err(sql_error("migration"))
    }

    /// The connection pool, for maintenance or inspection (the tables are listed in the
    /// [module documentation](self#schema-and-migrations)).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The insert of a client never approved: counted against the cap and inserted under
    /// [`UNAPPROVED_LOCK`]. Whether it changed a row.
    async fn insert_unapproved(
        &self,
        client: &ClientRecord,
        json: &str,
        now: i64,
        cap: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(sql_error("client"))?;
        sqlx::query(LOCK)
            .bind(UNAPPROVED_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(sql_error("client"))?;
        let done = sqlx::query(INSERT_CLIENT)
            .bind(&client.client_id)
            .bind(client.expires_at.map(to_sql))
            .bind(json)
            .bind(now)
            .bind(true)
            .bind(cap)
            .execute(&mut *tx)
            .await
            .map_err(sql_error("client"))?;
        tx.commit().await.map_err(sql_error("client"))?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl TokenStore for PostgresStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    /// One upsert that replaces only an expired row: atomic (see the module documentation).
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
        bounded(async {
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
        })
        .await
    }

    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError> {
        bounded(async {
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
        })
        .await
    }

    /// One `UPDATE … RETURNING` counting uses: atomic (see the module documentation).
    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        consumed_at_now: UnixTime,
    ) -> Result<Option<Consumed>, StoreError> {
        bounded(async {
            let row: Option<(String, i64, Vec<u8>, i64, Option<i64>)> =
                sqlx::query_as(CONSUME_TOKEN)
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
        })
        .await
    }

    async fn delete(&self, kind: TokenKind, hash: &TokenHash) -> Result<bool, StoreError> {
        bounded(async {
            let now = to_sql(UnixTime::now());
            let expires_at: Option<i64> = sqlx::query_scalar(DELETE_TOKEN)
                .bind(kind.as_str())
                .bind(&hash.0[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(sql_error("token"))?;
            Ok(expires_at.is_some_and(|at| at > now))
        })
        .await
    }

    /// One `SELECT` by kind (the primary key's first column).
    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
        bounded(async {
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
        })
        .await
    }

    /// One `DELETE` by grant. Counts the live records removed (expired ones count as absent).
    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError> {
        bounded(async {
            if !storable(&grant_id.0) {
                return Ok(0);
            }
            let now = to_sql(UnixTime::now());
            let removed: Vec<i64> = sqlx::query_scalar(REVOKE_GRANT)
                .bind(&grant_id.0)
                .fetch_all(&self.pool)
                .await
                .map_err(sql_error("token"))?;
            Ok(removed.into_iter().filter(|&at| at > now).count() as u64)
        })
        .await
    }

    /// Deletes the expired token rows; returns how many.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        bounded(async {
            let done = sqlx::query(PURGE_TOKENS)
                .bind(to_sql(UnixTime::now()))
                .execute(&self.pool)
                .await
                .map_err(sql_error("token"))?;
            Ok(done.rows_affected())
        })
        .await
    }
}

#[async_trait]
impl ClientStore for PostgresStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    /// One upsert that replaces only an expired registration; for an unapproved client, counted
    /// and inserted under an advisory lock: atomic (see the module documentation).
    async fn insert(&self, client: ClientRecord, max_unapproved: u64) -> Result<(), StoreError> {
        bounded(async {
            let now = to_sql(UnixTime::now());
            let json = serde_json::to_string(&client).map_err(codec)?;
            let inserted = if client.is_approved() {
                sqlx::query(INSERT_CLIENT)
                    .bind(&client.client_id)
                    .bind(client.expires_at.map(to_sql))
                    .bind(&json)
                    .bind(now)
                    .bind(false)
                    .bind(0_i64)
                    .execute(&self.pool)
                    .await
                    .map_err(sql_error("client"))?
                    .rows_affected()
                    > 0
            } else {
                let cap = i64::try_from(max_unapproved).unwrap_or(i64::MAX);
                self.insert_unapproved(&client, &json, now, cap).await?
            };
            if inserted {
                return Ok(());
            }
            let taken: Option<i32> = sqlx::query_scalar(CLIENT_IS_LIVE)
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
        })
        .await
    }

    /// A compare-and-swap on the record text, retried when another writer changed the record
    /// between the read and the write.
    async fn mark_approved(
        &self,
        client_id: &str,
        approved_at: UnixTime,
        expires_at: Option<UnixTime>,
    ) -> Result<bool, StoreError> {
        bounded(async {
            if !storable(client_id) {
                return Ok(false);
            }
            for _ in 0..MAX_SWAP_ATTEMPTS {
                let now = to_sql(UnixTime::now());
                let read: Option<String> = sqlx::query_scalar(GET_CLIENT)
                    .bind(client_id)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(sql_error("client"))?;
                let Some(read) = read else {
                    return Ok(false);
                };
                let mut client: ClientRecord = serde_json::from_str(&read).map_err(codec)?;
                client.approved_at = Some(approved_at);
                client.expires_at = expires_at;
                let done = sqlx::query(APPROVE_CLIENT)
                    .bind(client_id)
                    .bind(&read)
                    .bind(serde_json::to_string(&client).map_err(codec)?)
                    .bind(expires_at.map(to_sql))
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(sql_error("client"))?;
                if done.rows_affected() > 0 {
                    return Ok(true);
                }
            }
            Err(StoreError::backend(
                BACKEND,
                format!("client record kept changing during {MAX_SWAP_ATTEMPTS} approval attempts"),
            ))
        })
        .await
    }

    /// One `DELETE` guarded by the `unapproved` column.
    async fn delete_unapproved(&self, client_id: &str) -> Result<bool, StoreError> {
        bounded(async {
            if !storable(client_id) {
                return Ok(false);
            }
            let now = to_sql(UnixTime::now());
            let removed: Option<Option<i64>> = sqlx::query_scalar(DELETE_UNAPPROVED_CLIENT)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(sql_error("client"))?;
            Ok(removed.is_some_and(|expires_at| expires_at.is_none_or(|at| at > now)))
        })
        .await
    }

    async fn get(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        bounded(async {
            if !storable(client_id) {
                return Ok(None);
            }
            let json: Option<String> = sqlx::query_scalar(GET_CLIENT)
                .bind(client_id)
                .bind(to_sql(UnixTime::now()))
                .fetch_optional(&self.pool)
                .await
                .map_err(sql_error("client"))?;
            json.map(|json| serde_json::from_str(&json).map_err(codec))
                .transpose()
        })
        .await
    }

    async fn delete(&self, client_id: &str) -> Result<bool, StoreError> {
        bounded(async {
            if !storable(client_id) {
                return Ok(false);
            }
            let now = to_sql(UnixTime::now());
            let removed: Option<Option<i64>> = sqlx::query_scalar(DELETE_CLIENT)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(sql_error("client"))?;
            Ok(removed.is_some_and(|expires_at| expires_at.is_none_or(|at| at > now)))
        })
        .await
    }

    async fn list(&self) -> Result<Vec<ClientRecord>, StoreError> {
        bounded(async {
            let rows: Vec<String> = sqlx::query_scalar(LIST_CLIENTS)
                .bind(to_sql(UnixTime::now()))
                .fetch_all(&self.pool)
                .await
                .map_err(sql_error("client"))?;
            rows.iter()
                .map(|json| serde_json::from_str(json).map_err(codec))
                .collect()
        })
        .await
    }

    /// Deletes the expired client rows; returns how many.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        bounded(async {
            let done = sqlx::query(PURGE_CLIENTS)
                .bind(to_sql(UnixTime::now()))
                .execute(&self.pool)
                .await
                .map_err(sql_error("client"))?;
            Ok(done.rows_affected())
        })
        .await
    }
}

#[async_trait]
impl PasskeyStore for PostgresStore {
    /// In registration order.
    async fn list(&self) -> Result<Vec<PasskeyRecord>, StoreError> {
        bounded(async {
            let rows: Vec<String> = sqlx::query_scalar(LIST_PASSKEYS)
                .fetch_all(&self.pool)
                .await
                .map_err(sql_error("passkey"))?;
            rows.iter()
                .map(|json| serde_json::from_str(json).map_err(codec))
                .collect()
        })
        .await
    }

    async fn get(&self, credential_id: &str) -> Result<Option<PasskeyRecord>, StoreError> {
        bounded(async {
            if !storable(credential_id) {
                return Ok(None);
            }
            let json: Option<String> = sqlx::query_scalar(GET_PASSKEY)
                .bind(credential_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(sql_error("passkey"))?;
            json.map(|json| serde_json::from_str(&json).map_err(codec))
                .transpose()
        })
        .await
    }

    /// One `INSERT`; the primary key refuses a duplicate credential id, atomically. With a setup
    /// token, its use and the passkey in one transaction: both or neither.
    async fn insert(&self, record: PasskeyRecord) -> Result<(), StoreError> {
        bounded(async {
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
            let mut tx = self.pool.begin().await.map_err(sql_error("passkey"))?;
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
        })
        .await
    }

    async fn setup_token_used(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        bounded(async {
            sqlx::query_scalar(SETUP_TOKEN_USED)
                .bind(hash.to_hex())
                .fetch_one(&self.pool)
                .await
                .map_err(sql_error("setup token"))
        })
        .await
    }

    /// A compare-and-swap on the stored text, retried when another writer changed the record
    /// between the read and the write; nothing is written when nothing changes.
    async fn modify(
        &self,
        credential_id: &str,
        change: &PasskeyChange,
    ) -> Result<Option<bool>, StoreError> {
        bounded(async {
            if !storable(credential_id) {
                return Ok(None);
            }
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
        })
        .await
    }

    async fn delete(&self, credential_id: &str) -> Result<bool, StoreError> {
        bounded(async {
            if !storable(credential_id) {
                return Ok(false);
            }
            let done = sqlx::query(DELETE_PASSKEY)
                .bind(credential_id)
                .execute(&self.pool)
                .await
                .map_err(sql_error("passkey"))?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_saturate_into_bigints() {
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

    #[test]
    fn the_lock_keys_differ() {
        assert_ne!(MIGRATION_LOCK, UNAPPROVED_LOCK);
    }
}
