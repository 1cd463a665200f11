//! Redis: the conformance suite, plus what only Redis has (keys, native expiry, several
//! instances on one Redis, surviving an outage).
//!
//! Opt-in: set `MCP_OAUTH_TEST_REDIS_URL=redis://127.0.0.1:PORT/`. Without it every test here
//! passes after one skip line, unless `MCP_OAUTH_REQUIRE_REDIS=1` (CI), which makes a missing URL
//! (or a missing `redis-server` for the outage test) a failure. Each test uses its own key prefix,
//! so tests run in parallel on one Redis and leave it as they found it.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use mcp_oauth::backends::RedisStore;
use mcp_oauth::backends::redis::redis;
use mcp_oauth::store::conformance::{live_client, live_token, passkey_record};
use mcp_oauth::store::{
    ClientRecord, ClientStore, Consumed, GrantId, PasskeyStore, StoreError, TokenKind, TokenRecord,
    TokenStore, UnixTime,
};
use redis::AsyncCommands;
use tokio::sync::Barrier;

const URL_VAR: &str = "MCP_OAUTH_TEST_REDIS_URL";
const REQUIRE_VAR: &str = "MCP_OAUTH_REQUIRE_REDIS";

fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// Say once per test binary why Redis tests are skipped. Written straight to stderr, past the
/// test harness' output capture, so it shows in a normal `cargo test` run.
fn skip(why: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(std::io::stderr(), "skipping Redis tests: {why}");
    });
}

/// Print a line past the output capture (for timings worth seeing in CI logs).
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The Redis to test against, or `None` (after the skip line) when there is none and none is
/// required.
fn redis_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if required() => panic!(
            "{REQUIRE_VAR}=1 but {URL_VAR} is not set: the Redis tests need a server \
             (e.g. {URL_VAR}=redis://127.0.0.1:6379/)"
        ),
        _ => {
            skip(&format!(
                "set {URL_VAR} (e.g. redis://127.0.0.1:6379/) to run them"
            ));
            None
        }
    }
}

/// A prefix no other test (in this run or another) uses.
fn unique_prefix(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one((std::process::id(), n));
    format!("mcp_oauth_test:{label}:{random:016x}:")
}

async fn connect(url: &str) -> RedisStore {
    RedisStore::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url} ({URL_VAR}): {e:?}"))
}

/// A store on the test Redis with a prefix of its own, or `None` when skipping.
async fn store(label: &str) -> Option<RedisStore> {
    let url = redis_url()?;
    Some(connect(&url).await.with_prefix(unique_prefix(label)))
}

/// Every key under the store's prefix.
async fn keys(store: &RedisStore) -> BTreeSet<String> {
    let mut connection = store.connection();
    let mut iter: redis::AsyncIter<'_, String> = connection
        .scan_match(format!("{}*", store.prefix()))
        .await
        .unwrap();
    let mut keys = BTreeSet::new();
    while let Some(key) = iter.next_item().await {
        keys.insert(key.unwrap());
    }
    keys
}

/// Remove everything under the store's prefix (clients without expiry and passkeys never expire).
async fn cleanup(store: &RedisStore) {
    let keys = keys(store).await;
    if !keys.is_empty() {
        let _: () = store
            .connection()
            .del(keys.into_iter().collect::<Vec<_>>())
            .await
            .unwrap();
    }
}

async fn ttl(store: &RedisStore, key: &str) -> i64 {
    store.connection().ttl(key).await.unwrap()
}

async fn expire_time(store: &RedisStore, key: &str) -> i64 {
    redis::cmd("EXPIRETIME")
        .arg(key)
        .query_async(&mut store.connection())
        .await
        .unwrap()
}

async fn exists(store: &RedisStore, key: &str) -> bool {
    store.connection().exists(key).await.unwrap()
}

fn token_key(store: &RedisStore, record: &TokenRecord) -> String {
    format!(
        "{}t:{}:{}",
        store.prefix(),
        record.kind.as_str(),
        record.hash.to_hex()
    )
}

fn grant_key(store: &RedisStore, grant: &GrantId) -> String {
    format!("{}g:{}", store.prefix(), grant.0)
}

fn in_grant(kind: TokenKind, grant: &GrantId, expires_at: UnixTime) -> TokenRecord {
    TokenRecord {
        grant_id: grant.clone(),
        expires_at,
        ..live_token(kind)
    }
}

fn is_backend<T>(result: &Result<T, StoreError>) -> bool {
    matches!(
        result,
        Err(StoreError::Backend {
            backend: "redis",
            ..
        })
    )
}

// ---------------------------------------------------------------------------------------------
// The conformance suite.
//
// `mcp_oauth::*_store_conformance!` call their factory for a store and cannot skip, so this local
// macro expands the same checks (the lists below mirror those macros) with the skip in front and
// a cleanup behind.

macro_rules! redis_conformance {
    ($trait:ident: $($check:ident),* ; concurrent: $($concurrent:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let Some(store) = store(stringify!($check)).await else { return };
                mcp_oauth::store::conformance::$check(
                    &store as &dyn mcp_oauth::store::$trait,
                )
                .await;
                cleanup(&store).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $concurrent() {
                let Some(store) = store(stringify!($concurrent)).await else { return };
                let shared: Arc<dyn mcp_oauth::store::$trait> = Arc::new(store.clone());
                mcp_oauth::store::conformance::$concurrent(shared).await;
                cleanup(&store).await;
            }
        )*
    };
}

redis_conformance!(TokenStore:
    token_round_trip, token_unknown_is_none, token_insert_never_overwrites,
    token_kinds_are_separate, token_expired_is_invisible, token_consume_then_replayed,
    token_revoke_grant, token_delete_is_idempotent, token_delete_expired_keeps_live;
    concurrent: token_concurrent_insert_has_one_winner, token_concurrent_consume_has_one_winner);

redis_conformance!(ClientStore:
    client_round_trip, client_insert_never_overwrites, client_expired_is_invisible,
    client_delete_is_idempotent, client_delete_expired_keeps_live, client_list,
    client_unapproved_cap_refuses_without_evicting, client_lapsed_unapproved_do_not_count,
    client_mark_approved, client_delete_unapproved_spares_approved;
    concurrent: client_concurrent_insert_has_one_winner,
    client_concurrent_unapproved_inserts_respect_the_cap);

redis_conformance!(PasskeyStore:
    passkey_round_trip, passkey_duplicate_is_refused, passkey_modify,
    passkey_delete_is_idempotent, passkey_setup_token_stays_used,
    passkey_refused_insert_uses_no_setup_token;
    concurrent: passkey_concurrent_insert_has_one_winner,
    passkey_concurrent_setup_token_use_has_one_winner,
    passkey_concurrent_uses_and_a_rename_are_all_kept);

// ---------------------------------------------------------------------------------------------
// Keys and native expiry

#[tokio::test]
async fn keys_carry_the_prefix_and_expire_at_the_records_expiry() {
    let Some(store) = store("keys").await else {
        return;
    };
    let now = UnixTime::now();
    let grant = GrantId::generate();
    let mut tokens = Vec::new();
    for (i, kind) in TokenKind::ALL.iter().copied().enumerate() {
        // Expiries differ per kind; the latest is the refresh token's.
        let lifetime = if kind == TokenKind::RefreshToken {
            7200
        } else {
            600 + i as u64
        };
        let record = in_grant(kind, &grant, now.plus(lifetime));
        TokenStore::insert(&store, record.clone()).await.unwrap();
        tokens.push(record);
    }
    let latest = now.plus(7200);
    // A later, shorter-lived member does not shorten the grant set's life.
    let short = in_grant(TokenKind::AccessToken, &grant, now.plus(60));
    TokenStore::insert(&store, short.clone()).await.unwrap();
    tokens.push(short);
    store
        .consume(
            TokenKind::AuthorizationCode,
            &tokens[1].hash,
            UnixTime::now(),
        )
        .await
        .unwrap();

    let expiring_client = live_client();
    let permanent_client = ClientRecord {
        expires_at: None,
        ..live_client()
    };
    ClientStore::insert(&store, expiring_client.clone(), 1_000)
        .await
        .unwrap();
    ClientStore::insert(&store, permanent_client.clone(), 1_000)
        .await
        .unwrap();
    let passkey = passkey_record();
    PasskeyStore::insert(&store, passkey.clone()).await.unwrap();

    let prefix = store.prefix().to_owned();
    let mut expected: BTreeMap<String, Option<UnixTime>> = tokens
        .iter()
        .map(|t| (token_key(&store, t), Some(t.expires_at)))
        .collect();
    expected.insert(grant_key(&store, &grant), Some(latest));
    expected.insert(
        format!("{prefix}c:{}", expiring_client.client_id),
        expiring_client.expires_at,
    );
    expected.insert(format!("{prefix}c:{}", permanent_client.client_id), None);
    // The ids of the clients nobody approved yet, for the cap: lapsed members are dropped by
    // registrations, so the set itself never expires.
    expected.insert(format!("{prefix}cu"), None);
    expected.insert(format!("{prefix}p"), None);
    expected.insert(format!("{prefix}s"), None);

    let found = keys(&store).await;
    assert_eq!(
        found,
        expected.keys().cloned().collect::<BTreeSet<_>>(),
        "exactly the documented keys, all under the prefix"
    );
    for (key, expires_at) in &expected {
        let ttl = ttl(&store, key).await;
        match expires_at {
            Some(at) => {
                assert!(ttl > 0, "{key} has a positive TTL, not {ttl}");
                assert_eq!(
                    expire_time(&store, key).await,
                    at.0 as i64,
                    "{key} expires exactly at its record's expires_at"
                );
            }
            None => assert_eq!(ttl, -1, "{key} is permanent"),
        }
    }
    cleanup(&store).await;
}

#[tokio::test]
async fn an_expired_insert_leaves_no_key() {
    let Some(store) = store("expired").await else {
        return;
    };
    let past = UnixTime(UnixTime::now().0 - 60);
    let grant = GrantId::generate();
    for &kind in TokenKind::ALL {
        TokenStore::insert(&store, in_grant(kind, &grant, past))
            .await
            .unwrap();
    }
    // Expiring right now counts as expired too (never a zero TTL).
    TokenStore::insert(
        &store,
        in_grant(TokenKind::AccessToken, &grant, UnixTime::now()),
    )
    .await
    .unwrap();
    let client = ClientRecord {
        expires_at: Some(past),
        ..live_client()
    };
    ClientStore::insert(&store, client.clone(), 1_000)
        .await
        .unwrap();
    assert!(
        keys(&store).await.is_empty(),
        "no token, grant set or client key was written"
    );
    assert!(!exists(&store, &grant_key(&store, &grant)).await);
}

#[tokio::test]
async fn revoke_and_delete_clean_up_the_grant_set() {
    let Some(store) = store("revoke").await else {
        return;
    };
    let grant = GrantId::generate();
    let live = UnixTime::now().plus(3600);
    let records: Vec<_> = [
        TokenKind::AuthorizationCode,
        TokenKind::AccessToken,
        TokenKind::RefreshToken,
    ]
    .into_iter()
    .map(|kind| in_grant(kind, &grant, live))
    .collect();
    for record in &records {
        TokenStore::insert(&store, record.clone()).await.unwrap();
    }
    let set = grant_key(&store, &grant);
    let members: BTreeSet<String> = store.connection().smembers(&set).await.unwrap();
    assert_eq!(
        members,
        records.iter().map(|r| token_key(&store, r)).collect(),
        "the grant set lists the grant's token keys"
    );

    // delete takes its key out of the set.
    assert!(
        TokenStore::delete(&store, records[0].kind, &records[0].hash)
            .await
            .unwrap()
    );
    let member: bool = store
        .connection()
        .sismember(&set, token_key(&store, &records[0]))
        .await
        .unwrap();
    assert!(!member, "a deleted token leaves the grant set");

    assert_eq!(store.revoke_grant(&grant).await.unwrap(), 2);
    assert!(!exists(&store, &set).await, "revoke_grant removes the set");
    assert!(
        keys(&store).await.is_empty(),
        "and every token of the grant"
    );
}

#[tokio::test]
async fn inserts_prune_dead_members_from_the_grant_set() {
    let Some(store) = store("prune").await else {
        return;
    };
    // A long-lived grant whose rotated-away tokens expired: their keys are gone, the set still
    // names them (simulated by adding 20 names of absent keys).
    let grant = GrantId::generate();
    let set = grant_key(&store, &grant);
    let dead: Vec<String> = (0..20)
        .map(|i| format!("{}t:access:dead{i}", store.prefix()))
        .collect();
    let _: () = store.connection().sadd(&set, &dead).await.unwrap();
    let live = in_grant(TokenKind::RefreshToken, &grant, UnixTime::now().plus(3600));
    TokenStore::insert(&store, live.clone()).await.unwrap();
    // Each insert samples 4 distinct members; of 21, at least 3 are dead.
    let size: usize = store.connection().scard(&set).await.unwrap();
    assert!(
        size <= 18,
        "an insert pruned dead members: {size} left of 21"
    );
    for _ in 0..30 {
        let more = in_grant(TokenKind::AccessToken, &grant, UnixTime::now().plus(3600));
        TokenStore::insert(&store, more).await.unwrap();
    }
    let members: BTreeSet<String> = store.connection().smembers(&set).await.unwrap();
    let left = dead.iter().filter(|d| members.contains(*d)).count();
    assert!(
        left < 10,
        "the set does not keep growing with dead members: {left} left"
    );
    assert!(
        members.contains(&token_key(&store, &live)),
        "live members stay"
    );
    assert_eq!(store.revoke_grant(&grant).await.unwrap(), 31);
    cleanup(&store).await;
}

#[tokio::test]
async fn a_reused_key_is_not_revoked_with_its_old_grant() {
    let Some(store) = store("reuse").await else {
        return;
    };
    // An expired leftover (written directly: the store would not write it) of grant A, then a
    // live record of grant B on the same key.
    let old_grant = GrantId::generate();
    let new_grant = GrantId::generate();
    let record = in_grant(
        TokenKind::AccessToken,
        &new_grant,
        UnixTime::now().plus(3600),
    );
    let key = token_key(&store, &record);
    let past = UnixTime::now().0 - 1;
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg(&[
            "grant",
            &old_grant.0,
            "exp",
            &past.to_string(),
            "payload",
            "",
            "uses",
            "0",
        ])
        .query_async(&mut store.connection())
        .await
        .unwrap();
    let _: () = store
        .connection()
        .sadd(grant_key(&store, &old_grant), &key)
        .await
        .unwrap();
    assert_eq!(
        TokenStore::get(&store, record.kind, &record.hash)
            .await
            .unwrap(),
        None,
        "a leftover Redis has not dropped yet is filtered by its exp"
    );
    TokenStore::insert(&store, record.clone()).await.unwrap();
    assert_eq!(store.revoke_grant(&old_grant).await.unwrap(), 0);
    assert_eq!(
        TokenStore::get(&store, record.kind, &record.hash)
            .await
            .unwrap(),
        Some(record),
        "revoking the old grant leaves the new grant's record"
    );
    cleanup(&store).await;
}

#[tokio::test]
async fn a_malformed_record_is_a_codec_error() {
    let Some(store) = store("codec").await else {
        return;
    };
    let client = live_client();
    let _: () = store
        .connection()
        .set(
            format!("{}c:{}", store.prefix(), client.client_id),
            "{not json",
        )
        .await
        .unwrap();
    let error = ClientStore::get(&store, &client.client_id)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Codec {
                backend: "redis",
                ..
            }
        ),
        "{error:?}"
    );
    let _: () = store
        .connection()
        .hset(format!("{}p", store.prefix()), "broken", "[]")
        .await
        .unwrap();
    assert!(matches!(
        PasskeyStore::list(&store).await,
        Err(StoreError::Codec { .. })
    ));
    cleanup(&store).await;
}

// ---------------------------------------------------------------------------------------------
// Several instances

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_everything_at_once() {
    let Some(url) = redis_url() else {
        return;
    };
    let prefix = unique_prefix("shared");
    let a = connect(&url).await.with_prefix(&prefix);
    let b = connect(&url).await.with_prefix(&prefix);
    let id = |store: &RedisStore| {
        let mut connection = store.connection();
        async move {
            redis::cmd("CLIENT")
                .arg("ID")
                .query_async::<i64>(&mut connection)
                .await
                .unwrap()
        }
    };
    assert_ne!(
        id(&a).await,
        id(&b).await,
        "two connects are two connections"
    );

    let record = live_token(TokenKind::AuthorizationCode);
    TokenStore::insert(&a, record.clone()).await.unwrap();
    assert_eq!(
        TokenStore::get(&b, record.kind, &record.hash)
            .await
            .unwrap(),
        Some(record.clone()),
        "B sees A's insert at once"
    );
    assert!(matches!(
        b.consume(record.kind, &record.hash, UnixTime::now())
            .await
            .unwrap(),
        Some(Consumed::First(_))
    ));
    assert!(
        matches!(
            a.consume(record.kind, &record.hash, UnixTime::now())
                .await
                .unwrap(),
            Some(Consumed::Replayed { .. })
        ),
        "A sees B's consume"
    );

    let client = live_client();
    ClientStore::insert(&a, client.clone(), 1_000)
        .await
        .unwrap();
    assert_eq!(
        ClientStore::get(&b, &client.client_id).await.unwrap(),
        Some(client)
    );
    let passkey = passkey_record();
    PasskeyStore::insert(&b, passkey.clone()).await.unwrap();
    let listed = PasskeyStore::list(&a).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|p| p.credential_id.as_str())
            .collect::<Vec<_>>(),
        [passkey.credential_id.as_str()],
        "A lists the passkey B registered"
    );

    // 32 consumers, alternating between the instances, released together.
    let racers = 32;
    let contested = live_token(TokenKind::RefreshToken);
    TokenStore::insert(&b, contested.clone()).await.unwrap();
    let barrier = Arc::new(Barrier::new(racers));
    let tasks: Vec<_> = (0..racers)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let barrier = Arc::clone(&barrier);
            let (kind, hash) = (contested.kind, contested.hash);
            tokio::spawn(async move {
                barrier.wait().await;
                store.consume(kind, &hash, UnixTime::now()).await
            })
        })
        .collect();
    let (mut first, mut replayed) = (0, 0);
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Some(Consumed::First(got)) => {
                assert_eq!(got, contested);
                first += 1;
            }
            Some(Consumed::Replayed { record: got, .. }) => {
                assert_eq!(got, contested);
                replayed += 1;
            }
            None => panic!("the record vanished"),
        }
    }
    assert_eq!(
        (first, replayed),
        (1, racers - 1),
        "exactly one First across both instances"
    );
    cleanup(&a).await;
}

// ---------------------------------------------------------------------------------------------
// Connecting and outages

#[tokio::test]
async fn connect_fails_clearly() {
    for url in ["not a url", "http://127.0.0.1/"] {
        let error = RedisStore::connect(url).await.unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::Backend {
                    backend: "redis",
                    ..
                }
            ),
            "{url}: {error:?}"
        );
    }
    // Nothing listens there: refused, quickly.
    let port = free_port();
    let started = Instant::now();
    let result = RedisStore::connect(&format!("redis://127.0.0.1:{port}/")).await;
    assert!(is_backend(&result), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private `redis-server`, killed when dropped (on every exit path, panics included).
struct RedisServer {
    child: Child,
}

impl RedisServer {
    fn start(port: u16, dir: &Path) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child }
    }

    /// Freeze (`SIGSTOP`) or thaw (`SIGCONT`) the server: a hung Redis that accepts connections
    /// and never answers.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    fn kill(&mut self) {
        // A frozen process would not die of SIGKILL any later, but thaw it anyway for clarity.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_server_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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

#[tokio::test]
async fn the_same_store_survives_a_redis_outage() {
    if redis_url().is_none() {
        return;
    }
    if !redis_server_available() {
        assert!(
            !required(),
            "{REQUIRE_VAR}=1 but there is no redis-server binary for the outage test"
        );
        report("skipping the Redis outage test: no redis-server binary on PATH");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let mut server = RedisServer::start(port, dir.path());
    let limit = Duration::from_secs(10);
    // connect makes its first connection eagerly, so retry until the server listens.
    let started = Instant::now();
    let store = loop {
        match RedisStore::connect(&url).await {
            Ok(store) => break store.with_prefix(unique_prefix("outage")),
            Err(e) if started.elapsed() > limit => panic!("the private redis-server starts: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };

    let before = live_token(TokenKind::AccessToken);
    TokenStore::insert(&store, before.clone()).await.unwrap();
    assert!(
        TokenStore::get(&store, before.kind, &before.hash)
            .await
            .unwrap()
            .is_some()
    );

    // A hung Redis: the response timeout turns it into an error instead of a wait.
    server.signal("-STOP");
    let started = Instant::now();
    let hung = TokenStore::get(&store, before.kind, &before.hash).await;
    let hung_for = started.elapsed();
    assert!(is_backend(&hung), "get while Redis hangs: {hung:?}");
    assert!(hung_for < limit, "get took {hung_for:?} while Redis hung");
    server.signal("-CONT");
    let thawed = until_ok(limit, || TokenStore::get(&store, before.kind, &before.hash))
        .await
        .expect("the store works again once Redis answers");
    report(&format!(
        "Redis hang: get failed after {hung_for:?}; working again {thawed:?} after SIGCONT"
    ));
    assert!(
        TokenStore::get(&store, before.kind, &before.hash)
            .await
            .unwrap()
            .is_some(),
        "nothing was lost while Redis hung"
    );

    // A crashed Redis.
    server.kill();

    let mut timings = Vec::new();
    let started = Instant::now();
    let got = TokenStore::get(&store, before.kind, &before.hash).await;
    timings.push(("get", started.elapsed()));
    assert!(is_backend(&got), "get while Redis is down: {got:?}");
    let started = Instant::now();
    let inserted = TokenStore::insert(&store, live_token(TokenKind::AccessToken)).await;
    timings.push(("insert", started.elapsed()));
    assert!(
        is_backend(&inserted),
        "insert while Redis is down: {inserted:?}"
    );
    let started = Instant::now();
    let consumed = store
        .consume(before.kind, &before.hash, UnixTime::now())
        .await;
    timings.push(("consume", started.elapsed()));
    assert!(
        is_backend(&consumed),
        "consume while Redis is down: {consumed:?}"
    );
    for (op, took) in &timings {
        assert!(*took < limit, "{op} took {took:?} while Redis was down");
    }

    let _restarted = RedisServer::start(port, dir.path());
    let fresh = live_token(TokenKind::RefreshToken);
    let recovered = until_ok(limit, || TokenStore::insert(&store, fresh.clone()))
        .await
        .expect("the same store works again within 10 s of Redis coming back");
    report(&format!(
        "Redis outage: while down, get {:?}, insert {:?}, consume {:?}; working again {:?} after \
         the restart",
        timings[0].1, timings[1].1, timings[2].1, recovered
    ));
    // Nothing persisted across the restart (no AOF/RDB here), but everything works again.
    assert_eq!(
        TokenStore::get(&store, before.kind, &before.hash)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store
            .consume(fresh.kind, &fresh.hash, UnixTime::now())
            .await
            .unwrap(),
        Some(Consumed::First(_))
    ));
    let passkey = passkey_record();
    PasskeyStore::insert(&store, passkey.clone()).await.unwrap();
    assert!(
        PasskeyStore::get(&store, &passkey.credential_id)
            .await
            .unwrap()
            .is_some()
    );
}

/// Passkeys stored by an earlier version carry their setup token only in their record (the used
/// set did not exist): the token counts as used, and registers nothing more.
#[tokio::test]
async fn a_setup_token_on_a_passkey_stored_before_the_used_set_counts_as_used() {
    let Some(store) = store("legacy_setup").await else {
        return;
    };
    let registered = passkey_record();
    let setup_token = registered.setup_token_hash.unwrap();
    let _: () = store
        .connection()
        .hset(
            format!("{}p", store.prefix()),
            &registered.credential_id,
            serde_json::to_string(&registered).unwrap(),
        )
        .await
        .unwrap();
    assert!(store.setup_token_used(&setup_token).await.unwrap());
    let again = mcp_oauth::store::PasskeyRecord {
        setup_token_hash: Some(setup_token),
        ..passkey_record()
    };
    assert!(matches!(
        PasskeyStore::insert(&store, again).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(PasskeyStore::list(&store).await.unwrap().len(), 1);
    cleanup(&store).await;
}
