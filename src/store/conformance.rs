//! Reusable checks for store implementations: every rule of the three trait contracts, as plain
//! async functions, and macros that turn them into one `#[tokio::test]` each.
//!
//! Not a stable part of the public API: checks are added as contracts are sharpened, in any release.
//!
//! In your backend's tests (dev-dependencies: mcp-oauth with feature `test-suite`, and tokio with
//! `macros` and `rt-multi-thread`), one line per trait; here run against the built-in
//! [`MemoryStore`](crate::MemoryStore):
//!
//! ```
//! use mcp_oauth::MemoryStore;
//!
//! mcp_oauth::token_store_conformance!(|| async { MemoryStore::new() });
//! mcp_oauth::client_store_conformance!(|| async { MemoryStore::new() });
//! mcp_oauth::passkey_store_conformance!(|| async { MemoryStore::new() });
//! # fn main() {}
//! ```
//!
//! Each check builds a fresh store from the factory. Timestamps are far from now (an hour ahead, a
//! minute behind), so nothing sleeps.

// A test suite: failing loudly, with a message, is its job.
#![allow(clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use webauthn_rs::prelude::{Passkey, Uuid};

use super::{
    ClientRecord, ClientStore, Consumed, GrantId, PasskeyRecord, PasskeyStore, StoreError,
    TokenEndpointAuthMethod, TokenHash, TokenKind, TokenRecord, TokenStore, UnixTime,
};

/// A real passkey (a P-256 credential from a software authenticator), so checks need no browser.
const PASSKEY_JSON: &str = include_str!("conformance_passkey.json");

fn unique(label: &str) -> String {
    let n: u64 = rand::random();
    format!("{label}-{n:016x}")
}

/// A live token record with a fresh key and grant.
pub fn live_token(kind: TokenKind) -> TokenRecord {
    TokenRecord {
        kind,
        hash: TokenHash::of(&unique("secret")),
        grant_id: GrantId(unique("grant")),
        expires_at: UnixTime::now().plus(3600),
        payload: b"{\"payload\":true}".to_vec(),
    }
}

fn expired_token(kind: TokenKind) -> TokenRecord {
    TokenRecord {
        expires_at: UnixTime(UnixTime::now().0 - 60),
        ..live_token(kind)
    }
}

/// A live client record with a fresh id.
pub fn live_client() -> ClientRecord {
    ClientRecord {
        client_id: unique("client"),
        secret_hash: Some(TokenHash::of("secret")),
        auth_method: TokenEndpointAuthMethod::ClientSecretPost,
        redirect_uris: vec![
            "https://app.example.com/cb".into(),
            "http://127.0.0.1/cb".into(),
        ],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        client_name: Some("Conformance \u{1F512} client".into()),
        client_uri: Some("https://app.example.com".into()),
        scope: Some("mcp".into()),
        application_type: Some("native".into()),
        issued_at: UnixTime::now(),
        expires_at: Some(UnixTime::now().plus(3600)),
    }
}

/// A passkey record with a fresh credential id.
///
/// # Panics
///
/// If the embedded passkey fixture no longer parses (a webauthn-rs format change).
pub fn passkey_record() -> PasskeyRecord {
    let passkey: Passkey = serde_json::from_str(PASSKEY_JSON).expect("the passkey fixture parses");
    PasskeyRecord {
        credential_id: unique("credential"),
        user_id: Uuid::from_u128(rand::random()),
        passkey,
        label: "Conformance key".into(),
        created_at: UnixTime::now(),
        last_used_at: None,
        setup_token_hash: Some(TokenHash::of("setup")),
    }
}

fn already_exists<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::AlreadyExists { .. }))
}

// ---------------------------------------------------------------------------------------------
// TokenStore

/// Insert, then read back byte for byte, for every kind and a 16 KiB payload.
pub async fn token_round_trip(store: &dyn TokenStore) {
    for kind in TokenKind::ALL {
        let mut record = live_token(kind);
        record.payload = (0..16 * 1024).map(|i| (i % 251) as u8).collect();
        store.insert(record.clone()).await.expect("insert");
        let read = store.get(kind, &record.hash).await.expect("get");
        assert_eq!(
            read.as_ref(),
            Some(&record),
            "{kind:?} reads back exactly as inserted"
        );
    }
}

/// Unknown keys are `Ok(None)` everywhere.
pub async fn token_unknown_is_none(store: &dyn TokenStore) {
    let record = live_token(TokenKind::AccessToken);
    assert_eq!(
        store.get(record.kind, &record.hash).await.expect("get"),
        None
    );
    assert_eq!(
        store
            .consume(record.kind, &record.hash)
            .await
            .expect("consume"),
        None
    );
    assert!(
        !store
            .delete(record.kind, &record.hash)
            .await
            .expect("delete")
    );
    assert_eq!(
        store.revoke_grant(&record.grant_id).await.expect("revoke"),
        0
    );
}

/// A second insert of a live key fails and does not overwrite.
pub async fn token_insert_never_overwrites(store: &dyn TokenStore) {
    let record = live_token(TokenKind::RefreshToken);
    store.insert(record.clone()).await.expect("insert");
    let mut other = record.clone();
    other.payload = b"other".to_vec();
    other.grant_id = GrantId(unique("grant"));
    assert!(
        already_exists(store.insert(other).await),
        "duplicate insert is AlreadyExists"
    );
    let read = store.get(record.kind, &record.hash).await.expect("get");
    assert_eq!(read, Some(record), "the first record is intact");
}

/// Of 32 concurrent inserts of one key, exactly one succeeds.
pub async fn token_concurrent_insert_has_one_winner(store: Arc<dyn TokenStore>) {
    let record = live_token(TokenKind::AuthorizationCode);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = Arc::clone(&store);
            let mut record = record.clone();
            record.payload = vec![i];
            tokio::spawn(async move { store.insert(record).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => won += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("insert failed: {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one concurrent insert wins");
}

/// The same hash under two kinds is two records.
pub async fn token_kinds_are_separate(store: &dyn TokenStore) {
    let access = live_token(TokenKind::AccessToken);
    let mut refresh = access.clone();
    refresh.kind = TokenKind::RefreshToken;
    refresh.payload = b"refresh".to_vec();
    store.insert(access.clone()).await.expect("insert access");
    store
        .insert(refresh.clone())
        .await
        .expect("same hash, other kind");
    assert_eq!(
        store.get(access.kind, &access.hash).await.expect("get"),
        Some(access.clone())
    );
    assert!(
        store
            .delete(TokenKind::RefreshToken, &refresh.hash)
            .await
            .expect("delete")
    );
    assert_eq!(
        store.get(access.kind, &access.hash).await.expect("get"),
        Some(access)
    );
}

/// An expired record is accepted and never visible, to `get` or `consume`.
pub async fn token_expired_is_invisible(store: &dyn TokenStore) {
    let record = expired_token(TokenKind::AccessToken);
    store
        .insert(record.clone())
        .await
        .expect("inserting an expired record succeeds");
    assert_eq!(
        store.get(record.kind, &record.hash).await.expect("get"),
        None
    );
    assert_eq!(
        store
            .consume(record.kind, &record.hash)
            .await
            .expect("consume"),
        None
    );
    // And an expired record does not block a new one with its key.
    let fresh = TokenRecord {
        expires_at: UnixTime::now().plus(3600),
        ..record
    };
    store
        .insert(fresh.clone())
        .await
        .expect("insert over an expired record");
    assert_eq!(
        store.get(fresh.kind, &fresh.hash).await.expect("get"),
        Some(fresh)
    );
}

/// Consume: `First` with the record, then `Replayed` with the record and when; `get` is `None`.
pub async fn token_consume_then_replayed(store: &dyn TokenStore) {
    let record = live_token(TokenKind::AuthorizationCode);
    store.insert(record.clone()).await.expect("insert");
    let before = UnixTime::now();
    let first = store
        .consume(record.kind, &record.hash)
        .await
        .expect("consume");
    assert_eq!(first, Some(Consumed::First(record.clone())));
    assert_eq!(
        store.get(record.kind, &record.hash).await.expect("get"),
        None,
        "consumed records are not readable"
    );
    for _ in 0..2 {
        match store
            .consume(record.kind, &record.hash)
            .await
            .expect("consume again")
        {
            Some(Consumed::Replayed {
                record: replayed,
                consumed_at,
            }) => {
                assert_eq!(replayed, record, "the replay carries the original record");
                assert!(consumed_at >= before && consumed_at <= UnixTime::now().plus(1));
            }
            other => panic!("expected Replayed, got {other:?}"),
        }
    }
}

/// Of 32 concurrent consumers, exactly one gets `First` and the rest `Replayed`.
pub async fn token_concurrent_consume_has_one_winner(store: Arc<dyn TokenStore>) {
    let record = live_token(TokenKind::AuthorizationCode);
    store.insert(record.clone()).await.expect("insert");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = Arc::clone(&store);
            let (kind, hash) = (record.kind, record.hash);
            tokio::spawn(async move { store.consume(kind, &hash).await })
        })
        .collect();
    let (mut first, mut replayed) = (0, 0);
    for task in tasks {
        match task.await.expect("task").expect("consume") {
            Some(Consumed::First(_)) => first += 1,
            Some(Consumed::Replayed { .. }) => replayed += 1,
            None => panic!("a live record vanished during consume"),
        }
    }
    assert_eq!((first, replayed), (1, 31), "exactly one consumer wins");
}

/// `revoke_grant` removes every kind of the grant, consumed ones too, and nothing else.
pub async fn token_revoke_grant(store: &dyn TokenStore) {
    let grant = GrantId(unique("grant"));
    let mut records = Vec::new();
    for kind in [
        TokenKind::AuthorizationCode,
        TokenKind::AccessToken,
        TokenKind::RefreshToken,
    ] {
        let record = TokenRecord {
            grant_id: grant.clone(),
            ..live_token(kind)
        };
        store.insert(record.clone()).await.expect("insert");
        records.push(record);
    }
    store
        .consume(records[0].kind, &records[0].hash)
        .await
        .expect("consume");
    let bystander = live_token(TokenKind::AccessToken);
    store
        .insert(bystander.clone())
        .await
        .expect("insert bystander");

    assert_eq!(
        store.revoke_grant(&grant).await.expect("revoke"),
        3,
        "all three records counted"
    );
    for record in &records {
        assert_eq!(
            store.get(record.kind, &record.hash).await.expect("get"),
            None
        );
        assert_eq!(
            store
                .consume(record.kind, &record.hash)
                .await
                .expect("consume"),
            None,
            "revoked records leave no replay marker"
        );
    }
    assert_eq!(
        store
            .get(bystander.kind, &bystander.hash)
            .await
            .expect("get"),
        Some(bystander)
    );
    assert_eq!(store.revoke_grant(&grant).await.expect("revoke again"), 0);
}

/// `delete` removes one record and is idempotent.
pub async fn token_delete_is_idempotent(store: &dyn TokenStore) {
    let record = live_token(TokenKind::AccessToken);
    store.insert(record.clone()).await.expect("insert");
    assert!(
        store
            .delete(record.kind, &record.hash)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete(record.kind, &record.hash)
            .await
            .expect("delete again")
    );
    assert_eq!(
        store.get(record.kind, &record.hash).await.expect("get"),
        None
    );
}

/// `delete_expired` keeps live records.
pub async fn token_delete_expired_keeps_live(store: &dyn TokenStore) {
    let live = live_token(TokenKind::RefreshToken);
    store.insert(live.clone()).await.expect("insert");
    store
        .insert(expired_token(TokenKind::RefreshToken))
        .await
        .expect("insert expired");
    store.delete_expired().await.expect("delete_expired");
    assert_eq!(
        store.get(live.kind, &live.hash).await.expect("get"),
        Some(live)
    );
}

// ---------------------------------------------------------------------------------------------
// ClientStore

/// Insert, then read back equal.
pub async fn client_round_trip(store: &dyn ClientStore) {
    let client = live_client();
    store.insert(client.clone()).await.expect("insert");
    assert_eq!(
        store.get(&client.client_id).await.expect("get"),
        Some(client)
    );
    let never_expires = ClientRecord {
        expires_at: None,
        secret_hash: None,
        auth_method: TokenEndpointAuthMethod::None,
        client_name: None,
        ..live_client()
    };
    store.insert(never_expires.clone()).await.expect("insert");
    assert_eq!(
        store.get(&never_expires.client_id).await.expect("get"),
        Some(never_expires)
    );
    assert_eq!(store.get("no-such-client").await.expect("get"), None);
}

/// A second insert of a live id fails and does not overwrite.
pub async fn client_insert_never_overwrites(store: &dyn ClientStore) {
    let client = live_client();
    store.insert(client.clone()).await.expect("insert");
    let other = ClientRecord {
        client_id: client.client_id.clone(),
        ..live_client()
    };
    assert!(already_exists(store.insert(other).await));
    assert_eq!(
        store.get(&client.client_id).await.expect("get"),
        Some(client)
    );
}

/// Of 32 concurrent registrations of one id, exactly one succeeds.
pub async fn client_concurrent_insert_has_one_winner(store: Arc<dyn ClientStore>) {
    let client = live_client();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = Arc::clone(&store);
            let client = client.clone();
            tokio::spawn(async move { store.insert(client).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        if task.await.expect("task").is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

/// An expired registration is invisible.
pub async fn client_expired_is_invisible(store: &dyn ClientStore) {
    let client = ClientRecord {
        expires_at: Some(UnixTime(UnixTime::now().0 - 60)),
        ..live_client()
    };
    store.insert(client.clone()).await.expect("insert");
    assert_eq!(store.get(&client.client_id).await.expect("get"), None);
}

/// `delete` is idempotent.
pub async fn client_delete_is_idempotent(store: &dyn ClientStore) {
    let client = live_client();
    store.insert(client.clone()).await.expect("insert");
    assert!(store.delete(&client.client_id).await.expect("delete"));
    assert!(!store.delete(&client.client_id).await.expect("delete again"));
    assert_eq!(store.get(&client.client_id).await.expect("get"), None);
}

// ---------------------------------------------------------------------------------------------
// PasskeyStore

fn same_passkey(a: &PasskeyRecord, b: &PasskeyRecord) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

/// Insert, then read back through `get` and `list`.
pub async fn passkey_round_trip(store: &dyn PasskeyStore) {
    let record = passkey_record();
    store.insert(record.clone()).await.expect("insert");
    let read = store
        .get(&record.credential_id)
        .await
        .expect("get")
        .expect("present");
    assert!(same_passkey(&read, &record));
    let listed = store.list().await.expect("list");
    assert!(listed.iter().any(|p| same_passkey(p, &record)));
    assert!(
        store
            .get("no-such-credential")
            .await
            .expect("get")
            .is_none()
    );
}

/// A credential id is never registered twice.
pub async fn passkey_duplicate_is_refused(store: &dyn PasskeyStore) {
    let record = passkey_record();
    store.insert(record.clone()).await.expect("insert");
    let mut again = record.clone();
    again.label = "Impostor".into();
    assert!(already_exists(store.insert(again).await));
    let read = store
        .get(&record.credential_id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read.label, record.label);
}

/// `update` replaces an existing record and refuses an unknown one.
pub async fn passkey_update(store: &dyn PasskeyStore) {
    let mut record = passkey_record();
    store.insert(record.clone()).await.expect("insert");
    record.last_used_at = Some(UnixTime::now());
    record.label = "Renamed".into();
    assert!(store.update(record.clone()).await.expect("update"));
    let read = store
        .get(&record.credential_id)
        .await
        .expect("get")
        .expect("present");
    assert!(same_passkey(&read, &record));
    assert!(
        !store
            .update(passkey_record())
            .await
            .expect("update unknown")
    );
    assert!(
        store
            .get(&passkey_record().credential_id)
            .await
            .expect("get")
            .is_none()
    );
}

/// `delete` is idempotent and leaves the others.
pub async fn passkey_delete_is_idempotent(store: &dyn PasskeyStore) {
    let keep = passkey_record();
    let gone = passkey_record();
    store.insert(keep.clone()).await.expect("insert");
    store.insert(gone.clone()).await.expect("insert");
    assert!(store.delete(&gone.credential_id).await.expect("delete"));
    assert!(
        !store
            .delete(&gone.credential_id)
            .await
            .expect("delete again")
    );
    let listed = store.list().await.expect("list");
    assert!(listed.iter().any(|p| p.credential_id == keep.credential_id));
    assert!(!listed.iter().any(|p| p.credential_id == gone.credential_id));
}

/// Runs every [`TokenStore`] check as its own test. `$make` is a closure returning a future of
/// the store: `token_store_conformance!(|| async { MyStore::new() });`
#[macro_export]
macro_rules! token_store_conformance {
    ($make:expr) => {
        $crate::__conformance_tests!($make, TokenStore:
            token_round_trip, token_unknown_is_none, token_insert_never_overwrites,
            token_kinds_are_separate, token_expired_is_invisible, token_consume_then_replayed,
            token_revoke_grant, token_delete_is_idempotent, token_delete_expired_keeps_live;
            concurrent: token_concurrent_insert_has_one_winner, token_concurrent_consume_has_one_winner);
    };
}

/// Runs every [`ClientStore`] check as its own test.
#[macro_export]
macro_rules! client_store_conformance {
    ($make:expr) => {
        $crate::__conformance_tests!($make, ClientStore:
            client_round_trip, client_insert_never_overwrites, client_expired_is_invisible,
            client_delete_is_idempotent;
            concurrent: client_concurrent_insert_has_one_winner);
    };
}

/// Runs every [`PasskeyStore`] check as its own test.
#[macro_export]
macro_rules! passkey_store_conformance {
    ($make:expr) => {
        $crate::__conformance_tests!($make, PasskeyStore:
            passkey_round_trip, passkey_duplicate_is_refused, passkey_update,
            passkey_delete_is_idempotent;
            concurrent:);
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
                let store: ::std::sync::Arc<dyn $crate::store::$trait> = ::std::sync::Arc::new(($make)().await);
                $crate::store::conformance::$concurrent(store).await;
            }
        )*
    };
}
