//! [`RedisStore`]: tokens, clients and passkeys in Redis, shared by every instance of the server.
//!
//! Redis is the backend for several instances behind a load balancer: every piece of state a flow
//! needs (pending authorization requests, codes, tokens, WebAuthn ceremony state, registered
//! clients, and the owner's passkeys) lives in the one shared Redis, so any instance can serve any
//! step of any flow.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mcp_oauth::backends::RedisStore;
//! use mcp_oauth::{McpOAuth, OAuthConfig};
//!
//! let config = OAuthConfig::with_defaults(
//!     "https://mcp.example.com", "claude", "a-long-random-secret", "Example", "data/passkeys.json",
//! );
//! let store = RedisStore::connect("redis://127.0.0.1/").await?;
//! let oauth = McpOAuth::builder(config).stores(store).build()?;
//! let app = oauth.router(axum::Router::new()); // your MCP routes
//! # let _ = app; Ok(()) }
//! ```
//!
//! # Requirements
//!
//! - **Redis 7.0 or later** (for `EXPIREAT … NX|GT`), standalone or behind Sentinel/a proxy that
//!   keeps every key on one node. Redis Cluster is not supported: the scripts touch a token's key
//!   and its grant's set, which hash to different slots.
//! - **Persistence** (AOF or RDB snapshots) if the owner's passkeys are kept here. Tokens and
//!   clients lost with a Redis restart only sign clients out; passkeys lost with it lock the owner
//!   out until a new one is registered with a setup token. Run Redis with `appendonly yes` (or at
//!   least `save` rules), or keep passkeys in a
//!   [`PasskeyFileStore`](crate::backends::PasskeyFileStore) on one instance.
//! - **No eviction** (`maxmemory-policy noeviction`, Redis's default): an evicted record is a
//!   forgotten one, such as the consumed refresh token that catches reuse, or the pair kept for a
//!   refresh retry, without which a retry would rotate the token a second time.
//! - **Synchronised clocks** (NTP) on every instance: expiry is checked against the local clock of
//!   the instance asking, and written to Redis as an absolute time (`EXPIREAT`).
//!
//! # Keys
//!
//! Every key starts with a prefix ([`RedisStore::DEFAULT_PREFIX`], or
//! [`with_prefix`](RedisStore::with_prefix)), so several servers can share one Redis database:
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `{prefix}t:{kind}:{sha256 hex}` | hash | one token: `grant`, `exp`, `payload`, `uses`, `consumed_at` | at the record's `expires_at` |
//! | `{prefix}g:{grant_id}` | set | the token keys of one grant | at its latest member's `expires_at` |
//! | `{prefix}c:{client_id}` | string | one registered client, JSON | at its `expires_at`, if any |
//! | `{prefix}cu` | sorted set | the ids of clients never approved, scored by `expires_at` | never (lapsed members are dropped by each registration) |
//! | `{prefix}p` | hash | credential id → passkey record, JSON | never |
//! | `{prefix}s` | set | the lower-case hex SHA-256 of every setup token that registered a passkey, kept when the passkey goes | never |
//!
//! Raw secrets never reach Redis: tokens are keyed by the SHA-256 of the secret, and clients
//! carry only the hash of theirs.
//!
//! # Atomicity
//!
//! Every operation is one Redis command or one Lua script, and Redis runs each script to the end
//! before serving any other command, so no other client (of this instance or any other) observes
//! or interleaves with a half-done operation:
//!
//! - token `insert`: one script checks for a live record, writes the hash, sets its expiry, adds
//!   it to the grant's set and extends the set's expiry;
//! - token `consume`: one script increments the record's `uses`; the caller whose increment made
//!   it 1 is the only winner ([`Consumed::First`]), every later one gets [`Consumed::Replayed`];
//! - token `delete` and `revoke_grant`: one script each, removing records and set membership
//!   together;
//! - client `insert`: one script drops the lapsed ids from the unapproved set, counts it against
//!   the cap (for an unapproved client), and writes the client (with `EXAT` when it expires) and
//!   its id in the set, so concurrent registrations on every instance never exceed the cap and a
//!   refused one changes nothing; `mark_approved`: a compare-and-set script (the record as read,
//!   replaced with its approved form, the id taken out of the set), retried if the record
//!   changed meanwhile; `delete` and `delete_unapproved`: one script each, removing the record and
//!   its id in the set together (the latter only if the record has no `approved_at`);
//! - passkey `insert`: `HSETNX`; with a setup token, one script that checks the credential id and
//!   the setup token, then adds the token to the used set and writes the passkey; `modify`: `HGET`,
//!   then a compare-and-swap script on the text read (retried if it changed meanwhile), nothing
//!   written when nothing changes; `delete`: `HDEL` (the used set keeps the setup token).
//!
//! Passkeys stored by earlier versions, before the used set existed, carry their setup token only
//! in their record: both scripts that ask whether a setup token was used look there too.
//!
//! # Expiry
//!
//! Records expire natively (`EXPIREAT` at the record's absolute `expires_at`), and every read also
//! compares `expires_at` with the current time itself, so an expired record is never returned
//! whenever Redis actually drops it. An already expired record is never written (Redis rejects a
//! non-positive TTL), which makes it invisible at once. `delete_expired` therefore has nothing to
//! do and returns `Ok(0)`.
//!
//! # Outages
//!
//! The store holds a [`ConnectionManager`], which reconnects by itself: while Redis is down every
//! operation fails within a few seconds with [`StoreError::Backend`] (the HTTP layer answers with
//! an error, never with a wrong grant), and once Redis is back the same store works again without
//! being rebuilt.

/// The `redis` crate this backend is built on, for [`ConnectionManager`] and its configuration.
pub use redis;

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};

use crate::store::{
    ClientRecord, ClientStore, Consumed, GrantId, MAX_SWAP_ATTEMPTS, PasskeyChange, PasskeyRecord,
    PasskeyStore, StoreError, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime,
    apply_to_json,
};

const BACKEND: &str = "redis";

/// The latest time handed to `EXPIREAT`, 9999-12-31T23:59:59Z. Later (say saturated) expiries are
/// capped here for Redis, which rejects times that overflow its millisecond clock; the record
/// keeps its own `expires_at`.
const MAX_EXPIRE_AT: u64 = 253_402_300_799;

/// Insert if absent.
///
/// KEYS: token key, grant set key. ARGV: now, expires_at, expire-at for Redis, grant id, payload.
/// Returns 1 when inserted (or when the record is already expired and so not written), 0 when a
/// live record holds the key.
///
/// Atomic because it is one script: the check for a live record, the write, its expiry and the
/// grant's membership happen with no other command in between, so of concurrent inserts of one key
/// exactly one sees the key free, and a concurrent `revoke_grant` either runs before (and the new
/// record survives it, as it did not exist when the revocation started) or after (and finds the
/// record in the set).
static INSERT_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local old = redis.call('HGET', KEYS[1], 'exp')
if old and tonumber(old) > now then
  return 0
end
redis.call('DEL', KEYS[1])
if tonumber(ARGV[2]) <= now then
  return 1
end
redis.call('HSET', KEYS[1], 'grant', ARGV[4], 'exp', ARGV[2], 'payload', ARGV[5], 'uses', '0')
redis.call('EXPIREAT', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], KEYS[1])
redis.call('EXPIREAT', KEYS[2], ARGV[3], 'NX')
redis.call('EXPIREAT', KEYS[2], ARGV[3], 'GT')
for _, member in ipairs(redis.call('SRANDMEMBER', KEYS[2], 4)) do
  if member ~= KEYS[1] and redis.call('HGET', member, 'grant') ~= ARGV[4] then
    redis.call('SREM', KEYS[2], member)
  end
end
return 1
",
    )
});

/// Mark consumed.
///
/// KEYS: token key. ARGV: now (the store's, for liveness), the caller's now (recorded once).
/// Returns nil when absent or expired, else
/// `{outcome, grant, exp, payload, consumed_at}` with outcome 1 for the first consume and 2 for a
/// replay (then `consumed_at` is the first consume's).
///
/// Atomic because it is one script: the increment of `uses` and the read of the result are not
/// separable, so among any number of concurrent callers, on any number of instances, exactly one
/// sees `uses == 1`.
static CONSUME_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'grant', 'exp', 'payload', 'consumed_at')
if not v[1] or not v[2] or not v[3] or tonumber(v[2]) <= tonumber(ARGV[1]) then
  return false
end
local uses = redis.call('HINCRBY', KEYS[1], 'uses', 1)
if uses == 1 then
  redis.call('HSET', KEYS[1], 'consumed_at', ARGV[2])
  return {1, v[1], v[2], v[3], ARGV[2]}
end
return {2, v[1], v[2], v[3], v[4] or ARGV[2]}
",
    )
});

/// Delete one token and its grant membership.
///
/// KEYS: token key. ARGV: grant set key prefix, now. Returns 1 when a live record was removed.
///
/// Atomic because it is one script: the record's grant is read and the record and its membership
/// removed with no other command in between.
static DELETE_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'grant', 'exp')
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
if v[1] then
  redis.call('SREM', ARGV[1] .. v[1], KEYS[1])
end
if v[2] and tonumber(v[2]) > tonumber(ARGV[2]) then
  return 1
end
return 0
",
    )
});

/// Delete every token of a grant, and the grant's set.
///
/// KEYS: grant set key. ARGV: grant id. Returns how many token keys were deleted.
///
/// Atomic because it is one script: every member that exists when it starts is deleted before any
/// other command runs. A member whose key now holds another grant's record (the key was freed and
/// reused) is left alone.
static REVOKE_GRANT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('HGET', member, 'grant') == ARGV[1] then
    n = n + redis.call('DEL', member)
  end
end
redis.call('DEL', KEYS[1])
return n
",
    )
});

/// Insert a client if absent; an unapproved one only below the cap.
///
/// KEYS: client key, unapproved set key. ARGV: record JSON, expire-at for Redis (empty: never),
/// 1 if unapproved, the cap, client id, its expiry as a score, now. Returns 1 when inserted, 0
/// when a live client holds the id, -1 when the cap is reached (and nothing changed).
///
/// Atomic because it is one script: the lapsed unapproved ids are dropped from the set, the set
/// is counted, and the client written and added to it with no other command in between, so
/// concurrent registrations on any number of instances never exceed the cap.
static INSERT_CLIENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if ARGV[3] == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[7])
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
    return -1
  end
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5])
end
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
end
return 1
",
    )
});

/// Replace a client's record if it is still exactly what the caller read (compare and set), and
/// take it out of the unapproved set.
///
/// KEYS: client key, unapproved set key. ARGV: the record read, the new record, expire-at for
/// Redis (empty: never), client id. Returns 1 when replaced, 0 when the record changed or went.
static APPROVE_CLIENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[3])
end
redis.call('ZREM', KEYS[2], ARGV[4])
return 1
",
    )
});

/// Delete a client, and its place in the unapproved set; only a never-approved one when ARGV[2]
/// is 1 (its record has no `approved_at`).
///
/// KEYS: client key, unapproved set key. ARGV: client id, 1 for never-approved only. Returns the
/// deleted record, or nil.
static DELETE_CLIENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local json = redis.call('GET', KEYS[1])
if not json then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return false
end
if ARGV[2] == '1' then
  local approved = cjson.decode(json)['approved_at']
  if approved ~= nil and approved ~= cjson.null then
    return false
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return json
",
    )
});

/// Replace a passkey's record only if it is still the one read: a compare-and-swap.
///
/// KEYS: passkey hash key. ARGV: credential id, record JSON as read, new record JSON. Returns 1
/// when replaced, 0 when the record changed or went meanwhile.
///
/// Atomic because it is one script: neither a concurrent change nor a `delete` can slip between
/// the comparison and the write and be undone by it.
static SWAP_PASSKEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
",
    )
});

/// Lua: whether a setup token was used. KEYS: passkeys hash, used setup tokens set. A record
/// that does not decode fails the script (closed) rather than hiding a use.
const SETUP_TOKEN_USED_LUA: &str = r"
local function setup_token_used(passkeys, used, hash)
  if redis.call('SISMEMBER', used, hash) == 1 then
    return true
  end
  for _, json in ipairs(redis.call('HVALS', passkeys)) do
    if cjson.decode(json).setup_token_hash == hash then
      return true
    end
  end
  return false
end
";

/// Whether a setup token was used.
///
/// KEYS: passkeys hash, used setup tokens set. ARGV: setup token hash (hex). Returns 1 or 0.
static SETUP_TOKEN_USED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{SETUP_TOKEN_USED_LUA}
if setup_token_used(KEYS[1], KEYS[2], ARGV[1]) then
  return 1
end
return 0
"
    ))
});

/// Register a passkey with a setup token.
///
/// KEYS: passkeys hash, used setup tokens set. ARGV: credential id, record JSON, setup token hash
/// (hex). Returns 1 when registered, 0 when the credential id is taken, 2 when the setup token was
/// used.
///
/// Atomic because it is one script: of concurrent registrations with one setup token exactly one
/// finds it unused, and the token's use and the passkey are written together.
static INSERT_PASSKEY_WITH_SETUP_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{SETUP_TOKEN_USED_LUA}
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
if setup_token_used(KEYS[1], KEYS[2], ARGV[3]) then
  return 2
end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"
    ))
});

fn backend(e: RedisError) -> StoreError {
    StoreError::backend(BACKEND, e)
}

fn codec(e: impl Into<crate::store::BoxError>) -> StoreError {
    StoreError::codec(BACKEND, e)
}

/// A decimal number stored by this backend.
fn parse_time(text: &str) -> Result<UnixTime, StoreError> {
    text.parse()
        .map(UnixTime)
        .map_err(|_| codec(format!("not a time: {text:?}")))
}

/// The version in an `INFO server` reply when it is older than 7.0, which lacks `EXPIREAT … NX|GT`.
/// `None` when it is recent enough or does not say (a proxy, a Redis-compatible server).
fn too_old(info: &str) -> Option<&str> {
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))?
        .trim();
    let major: u32 = version.split('.').next()?.parse().ok()?;
    (major < 7).then_some(version)
}

/// `at` as handed to `EXPIREAT`: capped so Redis accepts it.
fn expire_at(at: UnixTime) -> u64 {
    at.0.min(MAX_EXPIRE_AT)
}

/// Tokens, clients and passkeys in Redis; see the [module documentation](crate::backends::redis)
/// for keys, atomicity and what Redis must provide.
///
/// Cloning is cheap: clones share one [`ConnectionManager`], a single multiplexed connection that
/// reconnects by itself after an outage.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: Arc<str>,
}

impl fmt::Debug for RedisStore {
    // The connection's own `Debug` shows its connection info, which may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The key prefix unless [`with_prefix`](Self::with_prefix) sets another.
    pub const DEFAULT_PREFIX: &'static str = "mcp_oauth:";

    /// How long [`connect`](Self::connect)'s connection waits for a TCP connection to Redis.
    pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

    /// How long [`connect`](Self::connect)'s connection waits for Redis to answer a command.
    pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

    /// Connect to the Redis at `url` (`redis://[user:password@]host[:port][/db]`), with the
    /// [default prefix](Self::DEFAULT_PREFIX).
    ///
    /// The first connection is made here, so a wrong address fails at start-up rather than at the
    /// first request. Afterwards the connection is re-established by itself whenever it drops:
    /// while Redis is unreachable each operation fails within a few seconds
    /// ([`CONNECTION_TIMEOUT`](Self::CONNECTION_TIMEOUT), one retry,
    /// [`RESPONSE_TIMEOUT`](Self::RESPONSE_TIMEOUT)) with [`StoreError::Backend`], and the same
    /// store works again once Redis is back. For other timeouts, a lazy first connection or TLS,
    /// build a [`ConnectionManager`] yourself and use [`from_connection`](Self::from_connection).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if `url` is not a Redis URL, Redis cannot be reached, or it reports a
    /// version older than 7.0.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(backend)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Self::CONNECTION_TIMEOUT))
            .set_response_timeout(Some(Self::RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let mut connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(backend)?;
        // Best effort: a server that does not answer INFO is left to fail (or not) on use.
        let info: Result<String, _> = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection)
            .await;
        if let Some(version) = info.as_deref().ok().and_then(too_old) {
            return Err(StoreError::backend(
                BACKEND,
                format!("Redis {version} is too old: RedisStore needs Redis 7.0 or later"),
            ));
        }
        Ok(Self::from_connection(connection))
    }

    /// A store on a connection you configured, with the [default prefix](Self::DEFAULT_PREFIX).
    pub fn from_connection(connection: ConnectionManager) -> Self {
        Self {
            connection,
            prefix: Arc::from(Self::DEFAULT_PREFIX),
        }
    }

    /// Use `prefix` before every key instead of [`DEFAULT_PREFIX`](Self::DEFAULT_PREFIX), for
    /// example to keep two servers apart in one Redis database. End it with a separator such as
    /// `:`. Every instance sharing the data must use the same prefix.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A handle on the store's connection (shared, not a new one), for inspection or for the
    /// application's own use of Redis.
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    fn token_key(&self, kind: TokenKind, hash: &TokenHash) -> String {
        format!("{}t:{}:{}", self.prefix, kind.as_str(), hash.to_hex())
    }

    fn grant_prefix(&self) -> String {
        format!("{}g:", self.prefix)
    }

    fn grant_key(&self, grant_id: &GrantId) -> String {
        format!("{}g:{}", self.prefix, grant_id.0)
    }

    fn client_key(&self, client_id: &str) -> String {
        format!("{}c:{client_id}", self.prefix)
    }

    fn unapproved_key(&self) -> String {
        format!("{}cu", self.prefix)
    }

    /// Delete a client (`never_approved_only`: only if never approved); whether a live one went.
    async fn delete_client(
        &self,
        client_id: &str,
        never_approved_only: bool,
    ) -> Result<bool, StoreError> {
        let now = UnixTime::now();
        let json: Option<String> = DELETE_CLIENT
            .key(self.client_key(client_id))
            .key(self.unapproved_key())
            .arg(client_id)
            .arg(if never_approved_only { "1" } else { "0" })
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        Ok(match json {
            // A record that no longer parses was still removed.
            Some(json) => {
                serde_json::from_str::<ClientRecord>(&json).map_or(true, |c| c.is_live(now))
            }
            None => false,
        })
    }

    fn passkey_key(&self) -> String {
        format!("{}p", self.prefix)
    }

    fn used_setup_tokens_key(&self) -> String {
        format!("{}s", self.prefix)
    }

    /// Every key matching `prefix` + `tail` (a glob), by `SCAN`: never blocks Redis, and only the
    /// owner console calls it. The prefix is escaped, so glob characters in it match themselves.
    async fn scan(&self, tail: &str) -> Result<Vec<String>, StoreError> {
        let mut pattern = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(tail);
        let mut connection = self.connection();
        let mut keys = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(backend)?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may return a key twice.
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

/// A token record as the consume script returns it: outcome, grant, exp, payload, consumed_at.
type ConsumeReply = (i64, String, String, Vec<u8>, String);

#[async_trait]
impl TokenStore for RedisStore {
    fn backend_name(&self) -> &'static str {
        "redis"
    }

    /// One script: check for a live record, write it with `EXPIREAT`, add it to the grant's set
    /// and extend the set's expiry. An already expired record is not written.
    async fn insert(&self, record: TokenRecord) -> Result<(), StoreError> {
        let now = UnixTime::now();
        let inserted: i64 = INSERT_TOKEN
            .key(self.token_key(record.kind, &record.hash))
            .key(self.grant_key(&record.grant_id))
            .arg(now.0)
            .arg(record.expires_at.0)
            .arg(expire_at(record.expires_at))
            .arg(&record.grant_id.0)
            .arg(&record.payload)
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        if inserted == 1 {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists { what: "token" })
        }
    }

    /// One `HMGET`, filtered here: `None` unless `expires_at` is after now and `uses` is 0.
    async fn get(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let now = UnixTime::now();
        let (grant, exp, payload, uses): (
            Option<String>,
            Option<String>,
            Option<Vec<u8>>,
            Option<String>,
        ) = redis::cmd("HMGET")
            .arg(self.token_key(kind, hash))
            .arg(&["grant", "exp", "payload", "uses"])
            .query_async(&mut self.connection())
            .await
            .map_err(backend)?;
        let (Some(grant), Some(exp), Some(payload)) = (grant, exp, payload) else {
            return Ok(None);
        };
        let expires_at = parse_time(&exp)?;
        let unconsumed = uses.as_deref().unwrap_or("0") == "0";
        if !expires_at.is_after(now) || !unconsumed {
            return Ok(None);
        }
        Ok(Some(TokenRecord {
            kind,
            hash: *hash,
            grant_id: GrantId(grant),
            expires_at,
            payload,
        }))
    }

    /// `SCAN` for grant records, then one pipelined `HMGET` each, filtered as in `get`.
    async fn list_grants(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let keys = self
            .scan(&format!("t:{}:*", TokenKind::Grant.as_str()))
            .await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("HMGET")
                .arg(key)
                .arg(&["grant", "exp", "payload", "uses"]);
        }
        type Fields = (
            Option<String>,
            Option<String>,
            Option<Vec<u8>>,
            Option<String>,
        );
        let rows: Vec<Fields> = pipe
            .query_async(&mut self.connection())
            .await
            .map_err(backend)?;
        let now = UnixTime::now();
        let mut grants = Vec::new();
        for (key, (grant, exp, payload, uses)) in keys.iter().zip(rows) {
            let (Some(grant), Some(exp), Some(payload)) = (grant, exp, payload) else {
                continue;
            };
            let expires_at = parse_time(&exp)?;
            if !expires_at.is_after(now) || uses.as_deref().unwrap_or("0") != "0" {
                continue;
            }
            let hash = key
                .rsplit(':')
                .next()
                .and_then(TokenHash::from_hex)
                .ok_or_else(|| codec("a grant key does not end in a token hash"))?;
            grants.push(TokenRecord {
                kind: TokenKind::Grant,
                hash,
                grant_id: GrantId(grant),
                expires_at,
                payload,
            });
        }
        Ok(grants)
    }

    /// One script: `HINCRBY uses 1` on a live record; the caller that made it 1 wins. The record
    /// stays (consumed) until it expires, so later callers learn of the replay.
    async fn consume(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        consumed_at_now: UnixTime,
    ) -> Result<Option<Consumed>, StoreError> {
        let reply: Option<ConsumeReply> = CONSUME_TOKEN
            .key(self.token_key(kind, hash))
            .arg(UnixTime::now().0)
            .arg(consumed_at_now.0)
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        let Some((outcome, grant, exp, payload, consumed_at)) = reply else {
            return Ok(None);
        };
        let record = TokenRecord {
            kind,
            hash: *hash,
            grant_id: GrantId(grant),
            expires_at: parse_time(&exp)?,
            payload,
        };
        Ok(Some(if outcome == 1 {
            Consumed::First(record)
        } else {
            Consumed::Replayed {
                record,
                consumed_at: parse_time(&consumed_at)?,
            }
        }))
    }

    /// One script: delete the record and take it out of its grant's set.
    async fn delete(&self, kind: TokenKind, hash: &TokenHash) -> Result<bool, StoreError> {
        let removed: i64 = DELETE_TOKEN
            .key(self.token_key(kind, hash))
            .arg(self.grant_prefix())
            .arg(UnixTime::now().0)
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        Ok(removed == 1)
    }

    /// One script: delete every record in the grant's set that still belongs to the grant, then
    /// the set. Returns how many records were deleted.
    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<u64, StoreError> {
        REVOKE_GRANT
            .key(self.grant_key(grant_id))
            .arg(&grant_id.0)
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)
    }

    /// Returns `Ok(0)` without touching Redis: records expire natively (`EXPIREAT`), and reads
    /// ignore expired ones until Redis drops them.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[async_trait]
impl ClientStore for RedisStore {
    fn backend_name(&self) -> &'static str {
        "redis"
    }

    /// One script: count the live unapproved ids against the cap, write the client (with `EXAT`
    /// at `expires_at`, if any) and its id in the unapproved set. An already expired registration
    /// is not written (so it is invisible at once); it is refused only if a live one holds its id.
    async fn insert(&self, client: ClientRecord, max_unapproved: u64) -> Result<(), StoreError> {
        let now = UnixTime::now();
        if !client.is_live(now) {
            return match ClientStore::get(self, &client.client_id).await? {
                Some(_) => Err(StoreError::AlreadyExists { what: "client" }),
                None => Ok(()),
            };
        }
        let json = serde_json::to_string(&client).map_err(codec)?;
        let score = client
            .expires_at
            .map_or_else(|| "+inf".to_owned(), |at| at.0.to_string());
        let inserted: i64 = INSERT_CLIENT
            .key(self.client_key(&client.client_id))
            .key(self.unapproved_key())
            .arg(json)
            .arg(
                client
                    .expires_at
                    .map(expire_at)
                    .map(|at| at.to_string())
                    .unwrap_or_default(),
            )
            .arg(if client.is_approved() { "0" } else { "1" })
            .arg(max_unapproved)
            .arg(&client.client_id)
            .arg(score)
            .arg(now.0)
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        match inserted {
            1 => Ok(()),
            0 => Err(StoreError::AlreadyExists { what: "client" }),
            _ => Err(StoreError::CapacityReached {
                what: "unapproved client",
            }),
        }
    }

    /// Read, then a compare-and-set script; a record changed meanwhile (another approval) is read
    /// again.
    async fn mark_approved(
        &self,
        client_id: &str,
        approved_at: UnixTime,
        expires_at: Option<UnixTime>,
    ) -> Result<bool, StoreError> {
        const ATTEMPTS: usize = 8;
        let key = self.client_key(client_id);
        for _ in 0..ATTEMPTS {
            let read: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut self.connection())
                .await
                .map_err(backend)?;
            let Some(read) = read else {
                return Ok(false);
            };
            let mut client: ClientRecord = serde_json::from_str(&read).map_err(codec)?;
            if !client.is_live(UnixTime::now()) {
                return Ok(false);
            }
            client.approved_at = Some(approved_at);
            client.expires_at = expires_at;
            let replaced: i64 = APPROVE_CLIENT
                .key(&key)
                .key(self.unapproved_key())
                .arg(&read)
                .arg(serde_json::to_string(&client).map_err(codec)?)
                .arg(
                    expires_at
                        .map(expire_at)
                        .map(|at| at.to_string())
                        .unwrap_or_default(),
                )
                .arg(client_id)
                .invoke_async(&mut self.connection())
                .await
                .map_err(backend)?;
            if replaced == 1 {
                return Ok(true);
            }
        }
        Err(StoreError::backend(
            BACKEND,
            format!("client record kept changing during {ATTEMPTS} approval attempts"),
        ))
    }

    /// One script: delete the record and its id in the unapproved set.
    async fn delete(&self, client_id: &str) -> Result<bool, StoreError> {
        self.delete_client(client_id, false).await
    }

    /// One script: as `delete`, if the record has no `approved_at`.
    async fn delete_unapproved(&self, client_id: &str) -> Result<bool, StoreError> {
        self.delete_client(client_id, true).await
    }

    async fn get(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let now = UnixTime::now();
        let json: Option<String> = redis::cmd("GET")
            .arg(self.client_key(client_id))
            .query_async(&mut self.connection())
            .await
            .map_err(backend)?;
        let Some(json) = json else {
            return Ok(None);
        };
        let client: ClientRecord = serde_json::from_str(&json).map_err(codec)?;
        Ok(client.is_live(now).then_some(client))
    }

    /// `SCAN` for client keys, then one `MGET`.
    async fn list(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let keys = self.scan("c:*").await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.connection())
            .await
            .map_err(backend)?;
        let now = UnixTime::now();
        let mut clients = Vec::new();
        for json in rows.into_iter().flatten() {
            let client: ClientRecord = serde_json::from_str(&json).map_err(codec)?;
            if client.is_live(now) {
                clients.push(client);
            }
        }
        Ok(clients)
    }

    /// Returns `Ok(0)` without touching Redis: registrations expire natively (`EXAT`), and `get`
    /// ignores expired ones until Redis drops them.
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[async_trait]
impl PasskeyStore for RedisStore {
    /// Every passkey, oldest first (`HVALS`, sorted by `created_at`, then credential id).
    async fn list(&self) -> Result<Vec<PasskeyRecord>, StoreError> {
        let values: Vec<String> = redis::cmd("HVALS")
            .arg(self.passkey_key())
            .query_async(&mut self.connection())
            .await
            .map_err(backend)?;
        let mut records = values
            .iter()
            .map(|json| serde_json::from_str::<PasskeyRecord>(json).map_err(codec))
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| {
            (a.created_at, &a.credential_id).cmp(&(b.created_at, &b.credential_id))
        });
        Ok(records)
    }

    async fn get(&self, credential_id: &str) -> Result<Option<PasskeyRecord>, StoreError> {
        let json: Option<String> = redis::cmd("HGET")
            .arg(self.passkey_key())
            .arg(credential_id)
            .query_async(&mut self.connection())
            .await
            .map_err(backend)?;
        json.map(|json| serde_json::from_str(&json).map_err(codec))
            .transpose()
    }

    /// `HSETNX`: of concurrent inserts of one credential id exactly one writes. With a setup
    /// token, one script that also uses it up (see the module documentation).
    async fn insert(&self, record: PasskeyRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(&record).map_err(codec)?;
        let written: i64 = match &record.setup_token_hash {
            None => redis::cmd("HSETNX")
                .arg(self.passkey_key())
                .arg(&record.credential_id)
                .arg(json)
                .query_async(&mut self.connection())
                .await
                .map_err(backend)?,
            Some(setup_token) => INSERT_PASSKEY_WITH_SETUP_TOKEN
                .key(self.passkey_key())
                .key(self.used_setup_tokens_key())
                .arg(&record.credential_id)
                .arg(json)
                .arg(setup_token.to_hex())
                .invoke_async(&mut self.connection())
                .await
                .map_err(backend)?,
        };
        match written {
            1 => Ok(()),
            2 => Err(StoreError::AlreadyExists {
                what: "setup token",
            }),
            _ => Err(StoreError::AlreadyExists { what: "passkey" }),
        }
    }

    /// One script: the used set, then (for passkeys stored before it existed) the records.
    async fn setup_token_used(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let used: i64 = SETUP_TOKEN_USED
            .key(self.passkey_key())
            .key(self.used_setup_tokens_key())
            .arg(hash.to_hex())
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        Ok(used == 1)
    }

    /// `HGET`, then a compare-and-swap script on the text read, retried when another writer
    /// changed the record in between; nothing is written when nothing changes.
    async fn modify(
        &self,
        credential_id: &str,
        change: &PasskeyChange,
    ) -> Result<Option<bool>, StoreError> {
        for _ in 0..MAX_SWAP_ATTEMPTS {
            let stored: Option<String> = redis::cmd("HGET")
                .arg(self.passkey_key())
                .arg(credential_id)
                .query_async(&mut self.connection())
                .await
                .map_err(backend)?;
            let Some(stored) = stored else {
                return Ok(None);
            };
            let Some(next) = apply_to_json(&stored, change, BACKEND)? else {
                return Ok(Some(false));
            };
            let replaced: i64 = SWAP_PASSKEY
                .key(self.passkey_key())
                .arg(credential_id)
                .arg(&stored)
                .arg(next)
                .invoke_async(&mut self.connection())
                .await
                .map_err(backend)?;
            if replaced == 1 {
                return Ok(Some(true));
            }
        }
        Err(StoreError::backend(
            BACKEND,
            format!("passkey record kept changing during {MAX_SWAP_ATTEMPTS} attempts"),
        ))
    }

    async fn delete(&self, credential_id: &str) -> Result<bool, StoreError> {
        let removed: i64 = redis::cmd("HDEL")
            .arg(self.passkey_key())
            .arg(credential_id)
            .query_async(&mut self.connection())
            .await
            .map_err(backend)?;
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_capped_for_redis_only_when_absurd() {
        assert_eq!(expire_at(UnixTime(1_800_000_000)), 1_800_000_000);
        assert_eq!(expire_at(UnixTime(u64::MAX)), MAX_EXPIRE_AT);
    }

    #[test]
    fn only_a_reported_version_below_7_is_too_old() {
        let info = |v: &str| format!("# Server\r\nredis_version:{v}\r\nredis_mode:standalone\r\n");
        assert_eq!(too_old(&info("6.2.14")), Some("6.2.14"));
        assert_eq!(too_old(&info("7.0.15")), None);
        assert_eq!(too_old(&info("8.0.0")), None);
        assert_eq!(too_old("# Server\r\n"), None);
        assert_eq!(too_old(&info("unknown")), None);
    }

    #[test]
    fn stored_times_parse_or_are_codec_errors() {
        assert_eq!(parse_time("1700000000").ok(), Some(UnixTime(1_700_000_000)));
        assert!(matches!(parse_time("soon"), Err(StoreError::Codec { .. })));
    }
}
