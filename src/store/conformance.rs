//! Reusable checks for custom store implementations: every rule of the three trait contracts, as
//! plain async functions, and macros that turn them into one `#[tokio::test]` each.
//!
//! **Not a stable part of the public API**: checks are added and sharpened as the contracts are,
//! and that may happen in any release, patch releases included.
//!
//! # Running the suite against your backend
//!
//! Add to your `[dev-dependencies]` `mcp-oauth` with the feature `test-suite`, and `tokio` with the
//! features `macros` and `rt-multi-thread` (the macros expand to `#[tokio::test]` functions that
//! name the `tokio` crate). Then, in a test file, one line per trait, each in its own module or
//! together (test names are prefixed by trait). Here they run against the built-in
//! [`MemoryStore`](crate::MemoryStore):
//!
//! ```
//! # #[cfg(feature = "memory")]
//! # mod memory {
//! use mcp_oauth::MemoryStore;
//!
//! mcp_oauth::token_store_conformance!(|| async { MemoryStore::new() });
//! mcp_oauth::client_store_conformance!(|| async { MemoryStore::new() });
//! mcp_oauth::passkey_store_conformance!(|| async { MemoryStore::new() });
//! # }
//! # fn main() {}
//! ```
//!
//! The argument is a closure returning a future of the store; it is called once per test, so each
//! check gets a fresh store. A store that shares state between calls (one database) also works:
//! every check uses fresh random keys and looks only at its own records. A failure reads as
//! `token_concurrent_consume_has_one_winner` with a message saying which rule broke.
//!
//! Timestamps are far from now (an hour ahead for live records, a minute behind for expired ones),
//! so nothing sleeps. The concurrency checks run 32 tasks released together on a 4-thread runtime.
//!
//! The checks can also be called directly, for a runner other than tokio's test macro: each takes
//! `&dyn Trait`, or `Arc<dyn Trait>` when it spawns tasks (and then needs a tokio runtime).

// A test suite: failing loudly, with a message, is its job.
#![allow(clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Barrier;
use webauthn_rs::prelude::{Passkey, Uuid};

use super::{
    AssertionKeys, ClientKeys, ClientRecord, ClientStore, Consumed, GrantId,
    LAST_USED_RESOLUTION_SECS, PasskeyChange, PasskeyRecord, PasskeyStore, StoreError,
    TokenEndpointAuthMethod, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime,
};

/// A real passkey (a P-256 credential made by webauthn-authenticator-rs' software authenticator
/// and registered through webauthn-rs 0.6.2), so checks need no browser. Records built from it
/// differ by `credential_id`, which is what stores key on.
const PASSKEY_JSON: &str = include_str!("conformance_passkey.json");

/// How many tasks the concurrency checks race.
const RACERS: usize = 32;

fn unique(label: &str) -> String {
    let n: u64 = rand::random();
    format!("{label}-{n:016x}")
}

fn an_hour_from_now() -> UnixTime {
    UnixTime::now().plus(3600)
}

fn a_minute_ago() -> UnixTime {
    UnixTime(UnixTime::now().0.saturating_sub(60))
}

/// A live token record (an hour to go) with a fresh random key and grant.
pub fn live_token(kind: TokenKind) -> TokenRecord {
    TokenRecord {
        kind,
        hash: TokenHash::of(&unique("secret")),
        grant_id: GrantId(unique("grant")),
        expires_at: an_hour_from_now(),
        payload: b"{\"payload\":true}".to_vec(),
    }
}

/// A token record that expired a minute ago, with a fresh random key and grant.
pub fn expired_token(kind: TokenKind) -> TokenRecord {
    TokenRecord {
        expires_at: a_minute_ago(),
        ..live_token(kind)
    }
}

/// A live client record (an hour to go) with a fresh random id and every field set.
pub fn live_client() -> ClientRecord {
    ClientRecord {
        client_id: unique("client"),
        secret_hash: Some(TokenHash::of(&unique("client-secret"))),
        auth_method: TokenEndpointAuthMethod::ClientSecretPost,
        redirect_uris: vec![
            "https://app.example.com/cb".into(),
            "http://127.0.0.1/cb".into(),
        ],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        client_name: Some("Conformance \u{1F512} client \"<quoted>\"".into()),
        client_uri: Some("https://app.example.com".into()),
        scope: Some("mcp offline_access".into()),
        application_type: Some("native".into()),
        issued_at: UnixTime::now(),
        expires_at: Some(an_hour_from_now()),
        approved_at: None,
        assertion_keys: None,
    }
}

/// A live client the owner approved (an hour ago), otherwise as [`live_client`].
pub fn approved_client() -> ClientRecord {
    ClientRecord {
        approved_at: Some(UnixTime(UnixTime::now().0.saturating_sub(3600))),
        ..live_client()
    }
}

/// A cap on unapproved clients that checks not about the cap never reach.
const NO_CAP: u64 = 1 << 40;

/// A passkey record with a fresh random credential id and user handle.
///
/// # Panics
///
/// If the embedded passkey fixture no longer parses (a webauthn-rs format change).
pub fn passkey_record() -> PasskeyRecord {
    let passkey: Passkey = serde_json::from_str(PASSKEY_JSON)
        .expect("the embedded passkey fixture parses as a webauthn-rs Passkey");
    PasskeyRecord {
        credential_id: unique("credential"),
        user_id: Uuid::from_u128(rand::random()),
        passkey,
        label: "Conformance key \u{1F511}".into(),
        created_at: UnixTime::now(),
        last_used_at: None,
        setup_token_hash: Some(TokenHash::of(&unique("setup"))),
    }
}

/// How many concurrent inserts succeeded; every other one must be `AlreadyExists`.
fn insert_winners(results: Vec<Result<(), StoreError>>, what: &str) -> usize {
    let mut won = 0;
    for result in results {
        match result {
            Ok(()) => won += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("a concurrent {what} insert failed with a backend error: {e:?}"),
        }
    }
    won
}

fn is_already_exists<T>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::AlreadyExists { .. }))
}

/// Run `RACERS` copies of `op` released at once; their results in spawn order.
async fn race<S, T, F, Fut>(store: Arc<S>, op: F) -> Vec<T>
where
    S: ?Sized + Send + Sync + 'static,
    T: Send + 'static,
    F: Fn(Arc<S>, usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let task = op(Arc::clone(&store), i);
            tokio::spawn(async move {
                barrier.wait().await;
                task.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(RACERS);
    for task in tasks {
        results.push(task.await.expect("a racing task panicked"));
    }
    results
}

// ---------------------------------------------------------------------------------------------
// TokenStore

/// Insert, then read back byte for byte: every kind, a 16 KiB binary payload and an empty one.
/// `get` has no side effect: a record read twice can still be consumed.
pub async fn token_round_trip(store: &dyn TokenStore) {
    for &kind in TokenKind::ALL {
        let mut record = live_token(kind);
        record.payload = (0..16 * 1024).map(|i| (i % 251) as u8).collect();
        store.insert(record.clone()).await.expect("insert");
        for _ in 0..2 {
            let read = store.get(kind, &record.hash).await.expect("get");
            assert_eq!(
                read.as_ref(),
                Some(&record),
                "a {kind:?} record reads back exactly as inserted (16 KiB payload)"
            );
        }
        assert_eq!(
            store
                .consume(kind, &record.hash, UnixTime::now())
                .await
                .expect("consume"),
            Some(Consumed::First(record)),
            "`get` has no side effect: the record is still unconsumed"
        );
    }
    let empty = TokenRecord {
        payload: Vec::new(),
        ..live_token(TokenKind::AccessToken)
    };
    store.insert(empty.clone()).await.expect("insert");
    assert_eq!(
        store.get(empty.kind, &empty.hash).await.expect("get"),
        Some(empty),
        "an empty payload reads back empty"
    );
}

/// Unknown keys are `Ok(None)` (or `false`, or 0) everywhere, never an error.
pub async fn token_unknown_is_none(store: &dyn TokenStore) {
    let record = live_token(TokenKind::AccessToken);
    assert_eq!(
        store.get(record.kind, &record.hash).await.expect("get"),
        None,
        "get of an unknown key is None"
    );
    assert_eq!(
        store
            .consume(record.kind, &record.hash, UnixTime::now())
            .await
            .expect("consume"),
        None,
        "consume of an unknown key is None"
    );
    assert!(
        !store
            .delete(record.kind, &record.hash)
            .await
            .expect("delete"),
        "delete of an unknown key removes nothing"
    );
    assert_eq!(
        store.revoke_grant(&record.grant_id).await.expect("revoke"),
        0,
        "revoking an unknown grant removes nothing"
    );
}

/// A second insert of a live key is `AlreadyExists` and does not overwrite.
pub async fn token_insert_never_overwrites(store: &dyn TokenStore) {
    let record = live_token(TokenKind::RefreshToken);
    store.insert(record.clone()).await.expect("insert");
    let other = TokenRecord {
        payload: b"other".to_vec(),
        grant_id: GrantId(unique("grant")),
        expires_at: an_hour_from_now().plus(60),
        ..record.clone()
    };
    assert!(
        is_already_exists(&store.insert(other).await),
        "a duplicate insert is StoreError::AlreadyExists"
    );
    assert_eq!(
        store.get(record.kind, &record.hash).await.expect("get"),
        Some(record),
        "the first record is intact after a duplicate insert"
    );
}

/// Of 32 concurrent inserts of one key, exactly one succeeds; the others are `AlreadyExists`.
pub async fn token_concurrent_insert_has_one_winner(store: Arc<dyn TokenStore>) {
    let record = live_token(TokenKind::AuthorizationCode);
    let results = race(Arc::clone(&store), |store, i| {
        let record = TokenRecord {
            payload: vec![i as u8],
            ..record.clone()
        };
        async move { store.insert(record).await }
    })
    .await;
    let mut winners = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(()) => winners.push(i as u8),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("a concurrent insert failed with a backend error: {e:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {RACERS} concurrent inserts of one key succeeds"
    );
    let stored = store.get(record.kind, &record.hash).await.expect("get");
    assert_eq!(
        stored.map(|r| r.payload),
        Some(winners),
        "the stored record is the winner's"
    );
}

/// The same hash under two kinds is two records: insert, consume and delete one, the other stays.
pub async fn token_kinds_are_separate(store: &dyn TokenStore) {
    let access = live_token(TokenKind::AccessToken);
    let refresh = TokenRecord {
        kind: TokenKind::RefreshToken,
        payload: b"refresh".to_vec(),
        ..access.clone()
    };
    store.insert(access.clone()).await.expect("insert access");
    store
        .insert(refresh.clone())
        .await
        .expect("the same hash under another kind is not a duplicate");
    assert_eq!(
        store.get(refresh.kind, &refresh.hash).await.expect("get"),
        Some(refresh.clone()),
        "each kind reads back its own record"
    );
    store
        .consume(refresh.kind, &refresh.hash, UnixTime::now())
        .await
        .expect("consume");
    assert_eq!(
        store.get(access.kind, &access.hash).await.expect("get"),
        Some(access.clone()),
        "consuming one kind leaves the other kind's record unconsumed"
    );
    assert!(
        store
            .delete(refresh.kind, &refresh.hash)
            .await
            .expect("delete"),
        "delete removes the refresh record"
    );
    assert_eq!(
        store.get(access.kind, &access.hash).await.expect("get"),
        Some(access),
        "deleting one kind leaves the other kind's record"
    );
}

/// An expired record is accepted, never visible to `get` or `consume`, and does not block a new
/// record with its key.
pub async fn token_expired_is_invisible(store: &dyn TokenStore) {
    for &kind in TokenKind::ALL {
        let record = expired_token(kind);
        store
            .insert(record.clone())
            .await
            .expect("inserting an already expired record succeeds");
        assert_eq!(
            store.get(kind, &record.hash).await.expect("get"),
            None,
            "an expired {kind:?} record is invisible to get"
        );
        assert_eq!(
            store
                .consume(kind, &record.hash, UnixTime::now())
                .await
                .expect("consume"),
            None,
            "an expired {kind:?} record is invisible to consume"
        );
        let fresh = TokenRecord {
            expires_at: an_hour_from_now(),
            ..record
        };
        store
            .insert(fresh.clone())
            .await
            .expect("an expired record does not block an insert of its key");
        assert_eq!(
            store.get(kind, &fresh.hash).await.expect("get"),
            Some(fresh),
            "the new record replaced the expired one"
        );
    }
}

/// Consume gives `First` with the record, then `Replayed` with the record and the first
/// consume's `now` (the caller's time, not the backend's: here ten minutes ahead of it), until
/// expiry; a consumed record is invisible to `get` and still blocks an insert of its key.
pub async fn token_consume_then_replayed(store: &dyn TokenStore) {
    let record = live_token(TokenKind::AuthorizationCode);
    store.insert(record.clone()).await.expect("insert");
    let first_use = UnixTime::now().plus(600);
    let first = store
        .consume(record.kind, &record.hash, first_use)
        .await
        .expect("consume");
    assert_eq!(
        first,
        Some(Consumed::First(record.clone())),
        "the first consume wins and returns the record"
    );
    assert_eq!(
        store.get(record.kind, &record.hash).await.expect("get"),
        None,
        "a consumed record is invisible to get"
    );
    for attempt in 0..2 {
        match store
            .consume(record.kind, &record.hash, first_use.plus(30))
            .await
            .expect("consume again")
        {
            Some(Consumed::Replayed {
                record: replayed,
                consumed_at,
            }) => {
                assert_eq!(
                    replayed, record,
                    "a replay (attempt {attempt}) carries the original record"
                );
                assert_eq!(
                    consumed_at, first_use,
                    "consumed_at is the `now` the first consume was given, not the replay's \
                     nor the backend's own time"
                );
            }
            other => panic!("a second consume must be Replayed, got {other:?}"),
        }
    }
    let again = TokenRecord {
        payload: b"again".to_vec(),
        ..record.clone()
    };
    assert!(
        is_already_exists(&store.insert(again).await),
        "a consumed record is still live: an insert of its key is AlreadyExists"
    );
}

/// Of 32 concurrent consumers of one record, exactly one gets `First` and 31 get `Replayed`.
pub async fn token_concurrent_consume_has_one_winner(store: Arc<dyn TokenStore>) {
    let record = live_token(TokenKind::RefreshToken);
    store.insert(record.clone()).await.expect("insert");
    let (kind, hash) = (record.kind, record.hash);
    let results = race(store, |store, _| async move {
        store.consume(kind, &hash, UnixTime::now()).await
    })
    .await;
    let (mut first, mut replayed) = (0, 0);
    for result in results {
        match result.expect("consume") {
            Some(Consumed::First(got)) => {
                assert_eq!(got, record, "the winner gets the record");
                first += 1;
            }
            Some(Consumed::Replayed { record: got, .. }) => {
                assert_eq!(got, record, "a loser learns which record it replayed");
                replayed += 1;
            }
            None => panic!("a live record vanished during concurrent consumes"),
        }
    }
    assert_eq!(
        (first, replayed),
        (1, RACERS - 1),
        "exactly one of {RACERS} concurrent consumers gets First, the rest Replayed"
    );
}

/// `revoke_grant` removes every kind of the grant, consumed records too, counts them, and leaves
/// other grants alone.
pub async fn token_revoke_grant(store: &dyn TokenStore) {
    let grant = GrantId(unique("grant"));
    let mut records = Vec::new();
    for &kind in TokenKind::ALL {
        let record = TokenRecord {
            grant_id: grant.clone(),
            ..live_token(kind)
        };
        store.insert(record.clone()).await.expect("insert");
        records.push(record);
    }
    store
        .consume(records[0].kind, &records[0].hash, UnixTime::now())
        .await
        .expect("consume");
    let bystanders: Vec<_> = TokenKind::ALL.iter().copied().map(live_token).collect();
    for bystander in &bystanders {
        store
            .insert(bystander.clone())
            .await
            .expect("insert bystander");
    }

    assert_eq!(
        store.revoke_grant(&grant).await.expect("revoke"),
        records.len() as u64,
        "revoke_grant counts every record of the grant, the consumed one included"
    );
    for record in &records {
        assert_eq!(
            store.get(record.kind, &record.hash).await.expect("get"),
            None,
            "a revoked {:?} record is gone",
            record.kind
        );
        assert_eq!(
            store
                .consume(record.kind, &record.hash, UnixTime::now())
                .await
                .expect("consume"),
            None,
            "a revoked {:?} record leaves no replay marker",
            record.kind
        );
    }
    for bystander in bystanders {
        assert_eq!(
            store
                .get(bystander.kind, &bystander.hash)
                .await
                .expect("get"),
            Some(bystander),
            "records of other grants are untouched"
        );
    }
    assert_eq!(
        store.revoke_grant(&grant).await.expect("revoke again"),
        0,
        "revoking a revoked grant removes nothing"
    );
}

/// `delete` removes one record, consumed or not, and is idempotent.
pub async fn token_delete_is_idempotent(store: &dyn TokenStore) {
    let record = live_token(TokenKind::AccessToken);
    store.insert(record.clone()).await.expect("insert");
    assert!(
        store
            .delete(record.kind, &record.hash)
            .await
            .expect("delete"),
        "delete of a live record reports a removal"
    );
    assert!(
        !store
            .delete(record.kind, &record.hash)
            .await
            .expect("delete again"),
        "a second delete removes nothing"
    );
    assert_eq!(
        store.get(record.kind, &record.hash).await.expect("get"),
        None,
        "a deleted record is gone"
    );

    let consumed = live_token(TokenKind::AuthorizationCode);
    store.insert(consumed.clone()).await.expect("insert");
    store
        .consume(consumed.kind, &consumed.hash, UnixTime::now())
        .await
        .expect("consume");
    assert!(
        store
            .delete(consumed.kind, &consumed.hash)
            .await
            .expect("delete consumed"),
        "delete removes a consumed record"
    );
    assert_eq!(
        store
            .consume(consumed.kind, &consumed.hash, UnixTime::now())
            .await
            .expect("consume"),
        None,
        "a deleted consumed record leaves no replay marker"
    );
}

/// `delete_expired` keeps live records, consumed or not.
pub async fn token_delete_expired_keeps_live(store: &dyn TokenStore) {
    let live = live_token(TokenKind::RefreshToken);
    let consumed = live_token(TokenKind::AuthorizationCode);
    store.insert(live.clone()).await.expect("insert");
    store.insert(consumed.clone()).await.expect("insert");
    store
        .consume(consumed.kind, &consumed.hash, UnixTime::now())
        .await
        .expect("consume");
    for &kind in TokenKind::ALL {
        store
            .insert(expired_token(kind))
            .await
            .expect("insert expired");
    }
    store.delete_expired().await.expect("delete_expired");
    assert_eq!(
        store.get(live.kind, &live.hash).await.expect("get"),
        Some(live),
        "delete_expired keeps a live record"
    );
    assert!(
        matches!(
            store
                .consume(consumed.kind, &consumed.hash, UnixTime::now())
                .await
                .expect("consume"),
            Some(Consumed::Replayed { .. })
        ),
        "delete_expired keeps a live consumed record's replay marker"
    );
}

/// `list_grants` returns the live grant records, byte for byte, and nothing of another kind, nothing
/// expired, nothing deleted or revoked.
pub async fn token_list_grants(store: &dyn TokenStore) {
    let live = live_token(TokenKind::Grant);
    let revoked = live_token(TokenKind::Grant);
    let deleted = live_token(TokenKind::Grant);
    let expired = expired_token(TokenKind::Grant);
    let other_kind = TokenRecord {
        kind: TokenKind::AccessToken,
        ..live_token(TokenKind::Grant)
    };
    for record in [&live, &revoked, &deleted, &expired, &other_kind] {
        store.insert(record.clone()).await.expect("insert");
    }
    store
        .revoke_grant(&revoked.grant_id)
        .await
        .expect("revoke_grant");
    store
        .delete(deleted.kind, &deleted.hash)
        .await
        .expect("delete");
    let listed = store.list_grants().await.expect("list_grants");
    let find = |hash: &TokenHash| listed.iter().find(|r| &r.hash == hash);
    assert_eq!(
        find(&live.hash),
        Some(&live),
        "a live grant is listed as inserted"
    );
    for (record, why) in [
        (&revoked, "a revoked grant"),
        (&deleted, "a deleted grant"),
        (&expired, "an expired grant"),
        (&other_kind, "a record of another kind"),
    ] {
        assert!(find(&record.hash).is_none(), "{why} is not listed");
    }
    assert!(
        listed.iter().all(|r| r.kind == TokenKind::Grant),
        "only grant records are listed"
    );
}

// ---------------------------------------------------------------------------------------------
// ClientStore

/// Insert, then read back equal: a confidential client with every field, a public one with
/// none of the optional fields and no expiry, and two that sign their assertions (`private_key_jwt`)
/// with keys registered inline and at a URL.
pub async fn client_round_trip(store: &dyn ClientStore) {
    let client = live_client();
    store.insert(client.clone(), NO_CAP).await.expect("insert");
    assert_eq!(
        store.get(&client.client_id).await.expect("get"),
        Some(client),
        "a client reads back exactly as inserted"
    );
    let public = ClientRecord {
        secret_hash: None,
        auth_method: TokenEndpointAuthMethod::None,
        redirect_uris: vec!["http://localhost/callback".into()],
        grant_types: vec!["authorization_code".into()],
        client_name: None,
        client_uri: None,
        scope: None,
        application_type: None,
        expires_at: None,
        ..approved_client()
    };
    store.insert(public.clone(), NO_CAP).await.expect("insert");
    assert_eq!(
        store.get(&public.client_id).await.expect("get"),
        Some(public),
        "an approved public client without optional fields or expiry reads back exactly"
    );
    let inline = ClientKeys::Jwks(serde_json::json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "k\u{1F511} \"1\"",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    }] }));
    let at_url = ClientKeys::JwksUri("https://app.example.com/.well-known/jwks.json".into());
    for (keys, signing_alg) in [(inline, Some("ES256".to_owned())), (at_url, None)] {
        let signing = ClientRecord {
            client_id: unique("client"),
            secret_hash: None,
            auth_method: TokenEndpointAuthMethod::PrivateKeyJwt,
            assertion_keys: Some(AssertionKeys { keys, signing_alg }),
            ..live_client()
        };
        store.insert(signing.clone(), NO_CAP).await.expect("insert");
        assert_eq!(
            store.get(&signing.client_id).await.expect("get"),
            Some(signing),
            "a private_key_jwt client reads back with its keys and signing algorithm"
        );
    }
    assert_eq!(
        store.get("no-such-client").await.expect("get"),
        None,
        "an unknown client is None"
    );
}

/// A second insert of a live id is `AlreadyExists` and does not overwrite.
pub async fn client_insert_never_overwrites(store: &dyn ClientStore) {
    let client = live_client();
    store.insert(client.clone(), NO_CAP).await.expect("insert");
    let other = ClientRecord {
        client_id: client.client_id.clone(),
        ..live_client()
    };
    assert!(
        is_already_exists(&store.insert(other, NO_CAP).await),
        "a duplicate client id is StoreError::AlreadyExists"
    );
    assert_eq!(
        store.get(&client.client_id).await.expect("get"),
        Some(client),
        "the first client is intact after a duplicate insert"
    );
}

/// Of 32 concurrent registrations of one id, exactly one succeeds; the others are `AlreadyExists`.
pub async fn client_concurrent_insert_has_one_winner(store: Arc<dyn ClientStore>) {
    let client = live_client();
    let results = race(store, |store, i| {
        let client = ClientRecord {
            client_name: Some(format!("racer {i}")),
            ..client.clone()
        };
        async move { store.insert(client, NO_CAP).await }
    })
    .await;
    let won = insert_winners(results, "client");
    assert_eq!(
        won, 1,
        "exactly one of {RACERS} concurrent registrations of one client id succeeds"
    );
}

/// An expired registration is accepted, invisible, and does not block a new one with its id.
pub async fn client_expired_is_invisible(store: &dyn ClientStore) {
    let client = ClientRecord {
        expires_at: Some(a_minute_ago()),
        ..live_client()
    };
    store
        .insert(client.clone(), NO_CAP)
        .await
        .expect("inserting an expired client succeeds");
    assert_eq!(
        store.get(&client.client_id).await.expect("get"),
        None,
        "an expired client is invisible"
    );
    let renewed = ClientRecord {
        expires_at: Some(an_hour_from_now()),
        ..client
    };
    store
        .insert(renewed.clone(), NO_CAP)
        .await
        .expect("an expired client does not block an insert of its id");
    assert_eq!(
        store.get(&renewed.client_id).await.expect("get"),
        Some(renewed),
        "the new registration replaced the expired one"
    );
}

/// `delete` removes a client and is idempotent.
pub async fn client_delete_is_idempotent(store: &dyn ClientStore) {
    let client = live_client();
    store.insert(client.clone(), NO_CAP).await.expect("insert");
    assert!(
        store.delete(&client.client_id).await.expect("delete"),
        "delete of a live client reports a removal"
    );
    assert!(
        !store.delete(&client.client_id).await.expect("delete again"),
        "a second delete removes nothing"
    );
    assert_eq!(
        store.get(&client.client_id).await.expect("get"),
        None,
        "a deleted client is gone"
    );
}

/// `delete_expired` keeps live clients, including those that never expire.
pub async fn client_delete_expired_keeps_live(store: &dyn ClientStore) {
    let live = live_client();
    let forever = ClientRecord {
        expires_at: None,
        ..live_client()
    };
    let expired = ClientRecord {
        expires_at: Some(a_minute_ago()),
        ..live_client()
    };
    for client in [&live, &forever, &expired] {
        store.insert(client.clone(), NO_CAP).await.expect("insert");
    }
    store.delete_expired().await.expect("delete_expired");
    assert_eq!(
        store.get(&live.client_id).await.expect("get"),
        Some(live),
        "delete_expired keeps a live client"
    );
    assert_eq!(
        store.get(&forever.client_id).await.expect("get"),
        Some(forever),
        "delete_expired keeps a client without expiry"
    );
}

/// `list` returns live clients as inserted, and neither expired nor deleted ones.
pub async fn client_list(store: &dyn ClientStore) {
    let live = live_client();
    let forever = ClientRecord {
        expires_at: None,
        ..live_client()
    };
    let deleted = live_client();
    let expired = ClientRecord {
        expires_at: Some(a_minute_ago()),
        ..live_client()
    };
    for client in [&live, &forever, &deleted, &expired] {
        store.insert(client.clone(), NO_CAP).await.expect("insert");
    }
    store.delete(&deleted.client_id).await.expect("delete");
    let listed = store.list().await.expect("list");
    let find = |id: &str| listed.iter().find(|c| c.client_id == id);
    assert_eq!(
        find(&live.client_id),
        Some(&live),
        "a live client is listed"
    );
    assert_eq!(
        find(&forever.client_id),
        Some(&forever),
        "a client without expiry is listed"
    );
    assert!(
        find(&deleted.client_id).is_none(),
        "a deleted client is not listed"
    );
    assert!(
        find(&expired.client_id).is_none(),
        "an expired client is not listed"
    );
}

/// How many live unapproved clients the store lists: the baseline the cap checks count from, so
/// they need no other writer of unapproved clients while they run (each check gets its own store
/// from the macros).
async fn unapproved_count(store: &dyn ClientStore) -> u64 {
    let listed = store.list().await.expect("list");
    listed.iter().filter(|c| !c.is_approved()).count() as u64
}

fn is_capacity_reached<T>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::CapacityReached { .. }))
}

/// At the cap, an unapproved client is refused with `CapacityReached` and nothing is evicted;
/// an approved client is admitted whatever the count.
pub async fn client_unapproved_cap_refuses_without_evicting(store: &dyn ClientStore) {
    let approved = approved_client();
    store
        .insert(approved.clone(), NO_CAP)
        .await
        .expect("insert approved");
    let cap = unapproved_count(store).await + 3;
    let mut admitted = Vec::new();
    for _ in 0..3 {
        let client = live_client();
        store
            .insert(client.clone(), cap)
            .await
            .expect("an unapproved client below the cap is admitted");
        admitted.push(client);
    }
    let refused = live_client();
    assert!(
        is_capacity_reached(&store.insert(refused.clone(), cap).await),
        "an unapproved client at the cap is StoreError::CapacityReached"
    );
    assert_eq!(
        store.get(&refused.client_id).await.expect("get"),
        None,
        "a refused client is not stored"
    );
    for client in admitted.iter().chain([&approved]) {
        assert_eq!(
            store.get(&client.client_id).await.expect("get"),
            Some(client.clone()),
            "a refused registration evicts nobody"
        );
    }
    let late_approved = approved_client();
    store
        .insert(late_approved.clone(), cap)
        .await
        .expect("an approved client is admitted at the cap");
    assert!(
        is_capacity_reached(&store.insert(live_client(), 0).await),
        "a cap of 0 admits no unapproved client"
    );
}

/// Of 32 concurrent unapproved registrations with room for 5, exactly 5 are admitted; the others
/// are `CapacityReached`.
pub async fn client_concurrent_unapproved_inserts_respect_the_cap(store: Arc<dyn ClientStore>) {
    const ROOM: u64 = 5;
    let cap = unapproved_count(&*store).await + ROOM;
    let results = race(Arc::clone(&store), move |store, _| async move {
        store.insert(live_client(), cap).await
    })
    .await;
    let mut admitted = 0;
    for result in results {
        match result {
            Ok(()) => admitted += 1,
            Err(StoreError::CapacityReached { .. }) => {}
            Err(e) => panic!("a concurrent registration failed with another error: {e:?}"),
        }
    }
    assert_eq!(
        admitted, ROOM,
        "{RACERS} concurrent registrations with room for {ROOM} admit exactly {ROOM}"
    );
}

/// Lapsed unapproved clients do not count toward the cap.
pub async fn client_lapsed_unapproved_do_not_count(store: &dyn ClientStore) {
    let cap = unapproved_count(store).await + 1;
    for _ in 0..3 {
        let lapsed = ClientRecord {
            expires_at: Some(a_minute_ago()),
            ..live_client()
        };
        store
            .insert(lapsed, cap)
            .await
            .expect("a lapsed client is accepted (and invisible)");
    }
    store
        .insert(live_client(), cap)
        .await
        .expect("lapsed unapproved clients leave the room to a live one");
}

/// `mark_approved` records the approval and the new lifetime, and the client stops counting
/// toward the cap; an unknown or lapsed client is not approved.
pub async fn client_mark_approved(store: &dyn ClientStore) {
    let cap = unapproved_count(store).await + 1;
    let client = live_client();
    store.insert(client.clone(), cap).await.expect("insert");
    assert!(
        is_capacity_reached(&store.insert(live_client(), cap).await),
        "the cap is reached"
    );
    let approved_at = UnixTime::now();
    assert!(
        store
            .mark_approved(&client.client_id, approved_at, None)
            .await
            .expect("mark_approved"),
        "a live client is approved"
    );
    assert_eq!(
        store.get(&client.client_id).await.expect("get"),
        Some(ClientRecord {
            approved_at: Some(approved_at),
            expires_at: None,
            ..client
        }),
        "an approved client carries its approval and its new lifetime"
    );
    store
        .insert(live_client(), cap)
        .await
        .expect("an approved client no longer counts toward the cap");
    assert!(
        !store
            .mark_approved("no-such-client", approved_at, None)
            .await
            .expect("mark_approved"),
        "an unknown client is not approved"
    );
    let lapsed = ClientRecord {
        expires_at: Some(a_minute_ago()),
        ..live_client()
    };
    store.insert(lapsed.clone(), NO_CAP).await.expect("insert");
    assert!(
        !store
            .mark_approved(&lapsed.client_id, approved_at, None)
            .await
            .expect("mark_approved"),
        "a lapsed client is not approved"
    );
    assert_eq!(
        store.get(&lapsed.client_id).await.expect("get"),
        None,
        "a lapsed client stays invisible"
    );
}

/// `delete_unapproved` removes a never-approved client and frees its place, and leaves an
/// approved one alone.
pub async fn client_delete_unapproved_spares_approved(store: &dyn ClientStore) {
    let cap = unapproved_count(store).await + 1;
    let unapproved = live_client();
    let approved = approved_client();
    store.insert(unapproved.clone(), cap).await.expect("insert");
    store.insert(approved.clone(), cap).await.expect("insert");
    assert!(
        !store
            .delete_unapproved(&approved.client_id)
            .await
            .expect("delete_unapproved"),
        "an approved client is not removed"
    );
    assert_eq!(
        store.get(&approved.client_id).await.expect("get"),
        Some(approved),
        "the approved client is intact"
    );
    assert!(
        store
            .delete_unapproved(&unapproved.client_id)
            .await
            .expect("delete_unapproved"),
        "a never-approved client is removed"
    );
    assert_eq!(
        store.get(&unapproved.client_id).await.expect("get"),
        None,
        "the removed client is gone"
    );
    assert!(
        !store
            .delete_unapproved(&unapproved.client_id)
            .await
            .expect("delete_unapproved again"),
        "a second removal removes nothing"
    );
    store
        .insert(live_client(), cap)
        .await
        .expect("a removed client's place is free again");
}

// ---------------------------------------------------------------------------------------------
// PasskeyStore

/// `Passkey` has no `PartialEq`; compare records through their serialised form.
fn same_passkey(a: &PasskeyRecord, b: &PasskeyRecord) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

/// Insert, then read back equal through `get` and `list`.
pub async fn passkey_round_trip(store: &dyn PasskeyStore) {
    let record = passkey_record();
    let bare = PasskeyRecord {
        last_used_at: None,
        setup_token_hash: None,
        label: String::new(),
        ..passkey_record()
    };
    let used = PasskeyRecord {
        last_used_at: Some(UnixTime::now()),
        ..passkey_record()
    };
    for r in [&record, &bare, &used] {
        store.insert(r.clone()).await.expect("insert");
    }
    for r in [&record, &bare, &used] {
        let read = store
            .get(&r.credential_id)
            .await
            .expect("get")
            .expect("an inserted passkey is found by its credential id");
        assert!(
            same_passkey(&read, r),
            "a passkey reads back exactly as inserted through get: {read:?} != {r:?}"
        );
    }
    let listed = store.list().await.expect("list");
    for r in [&record, &bare, &used] {
        assert!(
            listed.iter().any(|p| same_passkey(p, r)),
            "list contains every inserted passkey exactly as inserted"
        );
    }
    assert!(
        store
            .get("no-such-credential")
            .await
            .expect("get")
            .is_none(),
        "an unknown credential id is None"
    );
}

/// A credential id is never registered twice, and the first registration is kept.
pub async fn passkey_duplicate_is_refused(store: &dyn PasskeyStore) {
    let record = passkey_record();
    store.insert(record.clone()).await.expect("insert");
    let again = PasskeyRecord {
        label: "Impostor".into(),
        ..record.clone()
    };
    assert!(
        is_already_exists(&store.insert(again).await),
        "a duplicate credential id is StoreError::AlreadyExists"
    );
    let read = store
        .get(&record.credential_id)
        .await
        .expect("get")
        .expect("present");
    assert!(
        same_passkey(&read, &record),
        "the first registration is intact after a duplicate insert"
    );
    let copies = store
        .list()
        .await
        .expect("list")
        .iter()
        .filter(|p| p.credential_id == record.credential_id)
        .count();
    assert_eq!(copies, 1, "list shows a credential id once");
}

/// Of 32 concurrent registrations of one credential id, exactly one succeeds.
pub async fn passkey_concurrent_insert_has_one_winner(store: Arc<dyn PasskeyStore>) {
    let record = passkey_record();
    let results = race(Arc::clone(&store), |store, i| {
        let record = PasskeyRecord {
            label: format!("racer {i}"),
            ..record.clone()
        };
        async move { store.insert(record).await }
    })
    .await;
    let won = insert_winners(results, "passkey");
    assert_eq!(
        won, 1,
        "exactly one of {RACERS} concurrent registrations of one credential id succeeds"
    );
    let copies = store
        .list()
        .await
        .expect("list")
        .iter()
        .filter(|p| p.credential_id == record.credential_id)
        .count();
    assert_eq!(copies, 1, "list shows the credential id once");
}

/// A verified use of the fixture passkey at `at`, as webauthn-rs reports it after an assertion
/// with sign counter `counter`.
pub fn passkey_use(counter: u32, at: UnixTime) -> PasskeyChange {
    let fixture = serde_json::to_value(passkey_record().passkey).expect("passkey serializes");
    let result = serde_json::from_value(serde_json::json!({
        "cred_id": fixture["cred"]["cred_id"],
        "needs_update": true,
        "user_verified": true,
        "backup_state": false,
        "backup_eligible": false,
        "counter": counter,
        "extensions": {},
    }))
    .expect("an AuthenticationResult");
    PasskeyChange::Used { result, at }
}

/// The sign counter stored in a passkey record.
pub fn stored_counter(record: &PasskeyRecord) -> u64 {
    serde_json::to_value(&record.passkey).expect("passkey serializes")["cred"]["counter"]
        .as_u64()
        .expect("a counter")
}

/// `modify` applies a use (counter forward only, last use to the minute) and a rename to the
/// record as stored, reports whether anything changed, leaves other passkeys alone, and returns
/// `None` for an unknown one without adding it.
pub async fn passkey_modify(store: &dyn PasskeyStore) {
    let record = passkey_record();
    let other = passkey_record();
    store.insert(record.clone()).await.expect("insert");
    store.insert(other.clone()).await.expect("insert");
    let id = &record.credential_id;
    let read = || async { store.get(id).await.expect("get").expect("present") };
    let now = UnixTime::now();

    assert_eq!(
        store.modify(id, &passkey_use(5, now)).await.expect("use"),
        Some(true),
        "a first use is recorded"
    );
    let used = read().await;
    assert_eq!(stored_counter(&used), 5, "the counter moves forward");
    assert_eq!(used.last_used_at, Some(now), "the use is dated");
    assert_eq!(
        store
            .modify(id, &passkey_use(5, now.plus(1)))
            .await
            .expect("use"),
        Some(false),
        "the same counter a second later changes nothing"
    );
    assert_eq!(
        store
            .modify(id, &passkey_use(0, now.plus(2)))
            .await
            .expect("use"),
        Some(false),
        "a counter of 0 (a synced passkey) changes nothing within the minute"
    );
    assert!(
        same_passkey(&read().await, &used),
        "an unchanged use leaves the record as it was"
    );
    let later = now.plus(LAST_USED_RESOLUTION_SECS);
    assert_eq!(
        store.modify(id, &passkey_use(3, later)).await.expect("use"),
        Some(true),
        "a use a minute later moves the last use"
    );
    let after = read().await;
    assert_eq!(stored_counter(&after), 5, "the counter never goes back");
    assert_eq!(after.last_used_at, Some(later));

    let renamed = PasskeyChange::Renamed {
        label: "Renamed".into(),
    };
    assert_eq!(
        store.modify(id, &renamed).await.expect("rename"),
        Some(true)
    );
    assert_eq!(
        store.modify(id, &renamed).await.expect("rename"),
        Some(false),
        "the same label again changes nothing"
    );
    let after = read().await;
    assert_eq!(after.label, "Renamed");
    assert_eq!(stored_counter(&after), 5, "a rename keeps the counter");
    assert_eq!(
        after.last_used_at,
        Some(later),
        "a rename keeps the last use"
    );
    let listed = store.list().await.expect("list");
    assert!(
        listed.iter().any(|p| same_passkey(p, &other)),
        "modify leaves other passkeys alone"
    );

    let unknown = passkey_record();
    assert_eq!(
        store
            .modify(&unknown.credential_id, &renamed)
            .await
            .expect("modify unknown"),
        None,
        "modify of an unknown credential id returns None"
    );
    assert!(
        store
            .get(&unknown.credential_id)
            .await
            .expect("get")
            .is_none(),
        "modify never inserts"
    );
}

/// Of 31 uses (each a minute apart, counters 1 to 31) and one rename racing on one passkey, every
/// one lands: the label is the new one and the counter the highest, never an earlier one written
/// last from a stale read.
pub async fn passkey_concurrent_uses_and_a_rename_are_all_kept(store: Arc<dyn PasskeyStore>) {
    let record = passkey_record();
    store.insert(record.clone()).await.expect("insert");
    let start = UnixTime::now();
    let id = record.credential_id.clone();
    let results = race(Arc::clone(&store), |store, i| {
        let id = id.clone();
        let change = if i == 0 {
            PasskeyChange::Renamed {
                label: "Renamed during approvals".into(),
            }
        } else {
            let n = u32::try_from(i).expect("few racers");
            passkey_use(n, start.plus(u64::from(n) * LAST_USED_RESOLUTION_SECS))
        };
        async move { store.modify(&id, &change).await }
    })
    .await;
    for result in results {
        assert!(
            matches!(result, Ok(Some(_))),
            "every modify of a registered passkey succeeds: {result:?}"
        );
    }
    let after = store.get(&id).await.expect("get").expect("present");
    assert_eq!(
        after.label, "Renamed during approvals",
        "the rename is kept"
    );
    assert_eq!(
        stored_counter(&after),
        (RACERS - 1) as u64,
        "the highest counter is kept"
    );
}

/// `delete` removes one passkey, leaves the others, and is idempotent.
pub async fn passkey_delete_is_idempotent(store: &dyn PasskeyStore) {
    let keep = passkey_record();
    let gone = passkey_record();
    store.insert(keep.clone()).await.expect("insert");
    store.insert(gone.clone()).await.expect("insert");
    assert!(
        store.delete(&gone.credential_id).await.expect("delete"),
        "delete of a registered passkey reports a removal"
    );
    assert!(
        !store
            .delete(&gone.credential_id)
            .await
            .expect("delete again"),
        "a second delete removes nothing"
    );
    assert!(
        store.get(&gone.credential_id).await.expect("get").is_none(),
        "a deleted passkey is gone from get"
    );
    let listed = store.list().await.expect("list");
    assert!(
        listed.iter().any(|p| p.credential_id == keep.credential_id),
        "delete leaves other passkeys"
    );
    assert!(
        !listed.iter().any(|p| p.credential_id == gone.credential_id),
        "a deleted passkey is gone from list"
    );
}

/// A setup token registers one passkey, ever: its use outlives every change to that passkey,
/// including its deletion, and a later insert carrying it is refused.
pub async fn passkey_setup_token_stays_used(store: &dyn PasskeyStore) {
    let first = passkey_record();
    let hash = first
        .setup_token_hash
        .expect("the fixture carries a setup token");
    let used = |hash| async move {
        store
            .setup_token_used(&hash)
            .await
            .expect("setup_token_used")
    };
    assert!(!used(hash).await, "a setup token never inserted is unused");
    store.insert(first.clone()).await.expect("insert");
    assert!(
        used(hash).await,
        "inserting a passkey with a setup token uses the token up"
    );
    assert!(
        !used(TokenHash::of(&unique("setup"))).await,
        "other setup tokens stay unused"
    );
    let renamed = PasskeyChange::Renamed {
        label: "Renamed".into(),
    };
    assert_eq!(
        store
            .modify(&first.credential_id, &renamed)
            .await
            .expect("modify"),
        Some(true)
    );
    assert!(
        used(hash).await,
        "a setup token stays used when its passkey's record is modified"
    );
    assert!(store.delete(&first.credential_id).await.expect("delete"));
    assert!(
        used(hash).await,
        "a setup token stays used when its passkey is deleted"
    );
    let again = PasskeyRecord {
        setup_token_hash: Some(hash),
        ..passkey_record()
    };
    assert!(
        is_already_exists(&store.insert(again.clone()).await),
        "a used setup token registers no further passkey, even once the first is deleted: StoreError::AlreadyExists"
    );
    assert!(
        store
            .get(&again.credential_id)
            .await
            .expect("get")
            .is_none(),
        "the refused passkey is not registered"
    );
}

/// A refused insert uses up no setup token: the token still registers a passkey afterwards.
pub async fn passkey_refused_insert_uses_no_setup_token(store: &dyn PasskeyStore) {
    let record = passkey_record();
    store.insert(record.clone()).await.expect("insert");
    let hash = TokenHash::of(&unique("setup"));
    let duplicate = PasskeyRecord {
        setup_token_hash: Some(hash),
        ..record.clone()
    };
    assert!(
        is_already_exists(&store.insert(duplicate).await),
        "a duplicate credential id is StoreError::AlreadyExists"
    );
    assert!(
        !store
            .setup_token_used(&hash)
            .await
            .expect("setup_token_used"),
        "an insert refused for its credential id uses up no setup token"
    );
    let fresh = PasskeyRecord {
        setup_token_hash: Some(hash),
        ..passkey_record()
    };
    store
        .insert(fresh)
        .await
        .expect("the setup token of a refused insert still registers a passkey");
}

/// Of 32 concurrent registrations of different credentials with one setup token, exactly one
/// succeeds.
pub async fn passkey_concurrent_setup_token_use_has_one_winner(store: Arc<dyn PasskeyStore>) {
    let hash = TokenHash::of(&unique("setup"));
    let results = race(Arc::clone(&store), |store, _| {
        let record = PasskeyRecord {
            setup_token_hash: Some(hash),
            ..passkey_record()
        };
        async move { store.insert(record).await }
    })
    .await;
    let won = insert_winners(results, "passkey");
    assert_eq!(
        won, 1,
        "exactly one of {RACERS} concurrent registrations with one setup token succeeds"
    );
    let registered = store
        .list()
        .await
        .expect("list")
        .iter()
        .filter(|p| p.setup_token_hash == Some(hash))
        .count();
    assert_eq!(
        registered, 1,
        "one passkey is registered with the setup token"
    );
}

// ---------------------------------------------------------------------------------------------
// Macros

/// Expands to one `#[tokio::test]` per [`TokenStore`] check, each named after the check.
///
/// `$make` is a closure returning a future of the store, called once per test:
/// `mcp_oauth::token_store_conformance!(|| async { MyStore::connect().await });`. Needs `tokio`
/// (features `macros`, `rt-multi-thread`) among the caller's dev-dependencies.
#[macro_export]
macro_rules! token_store_conformance {
    ($make:expr $(,)?) => {
        $crate::__conformance_tests!($make, TokenStore:
            token_round_trip, token_unknown_is_none, token_insert_never_overwrites,
            token_kinds_are_separate, token_expired_is_invisible, token_consume_then_replayed,
            token_revoke_grant, token_delete_is_idempotent, token_delete_expired_keeps_live,
            token_list_grants;
            concurrent: token_concurrent_insert_has_one_winner, token_concurrent_consume_has_one_winner);
    };
}

/// Expands to one `#[tokio::test]` per [`ClientStore`] check; used like
/// [`token_store_conformance!`](crate::token_store_conformance).
#[macro_export]
macro_rules! client_store_conformance {
    ($make:expr $(,)?) => {
        $crate::__conformance_tests!($make, ClientStore:
            client_round_trip, client_insert_never_overwrites, client_expired_is_invisible,
            client_delete_is_idempotent, client_delete_expired_keeps_live, client_list,
            client_unapproved_cap_refuses_without_evicting, client_lapsed_unapproved_do_not_count,
            client_mark_approved, client_delete_unapproved_spares_approved;
            concurrent: client_concurrent_insert_has_one_winner,
            client_concurrent_unapproved_inserts_respect_the_cap);
    };
}

/// Expands to one `#[tokio::test]` per [`PasskeyStore`] check; used like
/// [`token_store_conformance!`](crate::token_store_conformance).
#[macro_export]
macro_rules! passkey_store_conformance {
    ($make:expr $(,)?) => {
        $crate::__conformance_tests!($make, PasskeyStore:
            passkey_round_trip, passkey_duplicate_is_refused, passkey_modify,
            passkey_delete_is_idempotent, passkey_setup_token_stays_used,
            passkey_refused_insert_uses_no_setup_token;
            concurrent: passkey_concurrent_insert_has_one_winner,
            passkey_concurrent_setup_token_use_has_one_winner,
            passkey_concurrent_uses_and_a_rename_are_all_kept);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($make:expr, $trait:ident: $($check:ident),* ; concurrent: $($concurrent:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let store = ($make)().await;
                $crate::store::conformance::$check(&store as &dyn $crate::store::$trait).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $concurrent() {
                let store: ::std::sync::Arc<dyn $crate::store::$trait> =
                    ::std::sync::Arc::new(($make)().await);
                $crate::store::conformance::$concurrent(store).await;
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_passkey_fixture_parses_and_records_are_distinct() {
        let (a, b) = (passkey_record(), passkey_record());
        assert_ne!(a.credential_id, b.credential_id);
        assert!(same_passkey(&a, &a.clone()));
        assert!(!same_passkey(&a, &b));
    }

    #[test]
    fn fixtures_are_live_or_expired_as_named() {
        let now = UnixTime::now();
        assert!(live_token(TokenKind::AccessToken).expires_at.is_after(now));
        assert!(
            !expired_token(TokenKind::AccessToken)
                .expires_at
                .is_after(now)
        );
        assert!(live_client().is_live(now));
    }
}
