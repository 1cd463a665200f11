//! The JSON passkey file.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use mcp_oauth::PasskeyFileStore;
use std::os::unix::fs::MetadataExt;

use mcp_oauth::store::conformance::{passkey_record, passkey_use};
use mcp_oauth::store::{PasskeyChange, PasskeyStore, StoreError, UnixTime};

/// A store in a directory that lives as long as the test process; each store gets its own.
fn fresh() -> PasskeyFileStore {
    let dir = tempfile::tempdir().unwrap().keep();
    PasskeyFileStore::open(dir.join("passkeys.json")).unwrap()
}

mcp_oauth::passkey_store_conformance!(|| async { fresh() });

#[tokio::test]
async fn survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("passkeys.json");
    let record = passkey_record();
    {
        let store = PasskeyFileStore::open(&path).unwrap();
        store.insert(record.clone()).await.unwrap();
        let renamed = PasskeyChange::Renamed {
            label: "Used".into(),
        };
        store.modify(&record.credential_id, &renamed).await.unwrap();
    }
    let reopened = PasskeyFileStore::open(&path).unwrap();
    let listed = reopened.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].credential_id, record.credential_id);
    assert_eq!(listed[0].label, "Used");
    let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(raw["version"], 2);
}

#[tokio::test]
async fn a_use_that_changes_nothing_does_not_rewrite_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkeys.json");
    let store = PasskeyFileStore::open(&path).unwrap();
    let record = passkey_record();
    store.insert(record.clone()).await.unwrap();
    let now = UnixTime::now();
    let id = &record.credential_id;
    assert_eq!(
        store.modify(id, &passkey_use(0, now)).await.unwrap(),
        Some(true)
    );
    // Each write renames a new file over the old one: a new inode.
    let written = std::fs::metadata(&path).unwrap().ino();
    // Approvals in a row with a passkey that keeps its counter at 0, and a rename to the same label.
    for second in 1..5 {
        let again = passkey_use(0, now.plus(second));
        assert_eq!(store.modify(id, &again).await.unwrap(), Some(false));
    }
    let same = PasskeyChange::Renamed {
        label: record.label.clone(),
    };
    assert_eq!(store.modify(id, &same).await.unwrap(), Some(false));
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        written,
        "the file was not rewritten"
    );
}

#[tokio::test]
async fn the_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkeys.json");
    let store = PasskeyFileStore::open(&path).unwrap();
    store.insert(passkey_record()).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["passkeys.json"]);
}

#[test]
fn a_corrupt_file_is_a_startup_error_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    for corrupt in [
        &b"{not json"[..],
        b"[]",
        b"{\"version\":1,\"passkeys\":[{\"x\":1}]}",
        b"{\"version\":9,\"passkeys\":[]}",
        b"",
    ] {
        let path = dir.path().join("passkeys.json");
        std::fs::write(&path, corrupt).unwrap();
        let error = PasskeyFileStore::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::Codec { .. }), "{error:?}");
        let message = format!("{}", std::error::Error::source(&error).unwrap());
        assert!(
            message.contains("passkeys.json"),
            "names the file: {message}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), corrupt, "never overwritten");
    }
}

#[tokio::test]
async fn a_failed_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkeys.json");
    let store = PasskeyFileStore::open(&path).unwrap();
    let first = passkey_record();
    store.insert(first.clone()).await.unwrap();
    let before = std::fs::read(&path).unwrap();
    // Make the rename fail: the target becomes a non-empty directory (root ignores permission
    // bits, so permissions cannot provoke a failure here).
    let aside = dir.path().join("aside.json");
    std::fs::rename(&path, &aside).unwrap();
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("block"), b"x").unwrap();

    let error = store.insert(passkey_record()).await.unwrap_err();
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1, "the in-memory list did not change");

    std::fs::remove_dir_all(&path).unwrap();
    std::fs::rename(&aside, &path).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file did not change"
    );
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "the temporary file was cleaned up");
}

#[tokio::test]
async fn a_write_into_a_vanished_directory_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    let path = dir.join("passkeys.json");
    let store = PasskeyFileStore::open(&path).unwrap();
    let first = passkey_record();
    store.insert(first.clone()).await.unwrap();
    let before = std::fs::read(&path).unwrap();
    // The directory is replaced by a plain file: the temporary file cannot even be created.
    let aside = root.path().join("aside");
    std::fs::rename(&dir, &aside).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();

    assert!(store.insert(passkey_record()).await.is_err());
    let renamed = PasskeyChange::Renamed {
        label: "Used".into(),
    };
    assert!(store.modify(&first.credential_id, &renamed).await.is_err());
    assert!(store.delete(&first.credential_id).await.is_err());
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1, "the in-memory list did not change");
    assert_eq!(listed[0].label, first.label, "nor did the record in it");
    assert_eq!(std::fs::read(aside.join("passkeys.json")).unwrap(), before);

    // Once the directory is back, writes work again and carry the unchanged list.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&aside, &dir).unwrap();
    let second = passkey_record();
    store.insert(second.clone()).await.unwrap();
    let reopened = PasskeyFileStore::open(&path).unwrap();
    let ids: Vec<_> = reopened
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.credential_id)
        .collect();
    assert_eq!(ids, [first.credential_id, second.credential_id]);
}

#[tokio::test]
async fn a_cancelled_write_still_completes_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkeys.json");
    let store = PasskeyFileStore::open(&path).unwrap();
    let record = passkey_record();
    // Polled once, then dropped: the write has started and must not be torn in two.
    let _ = tokio::time::timeout(Duration::ZERO, store.insert(record.clone())).await;
    let mut listed = Vec::new();
    for _ in 0..500 {
        listed = store.list().await.unwrap();
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(listed.len(), 1, "the dropped insert completed in memory");
    let reopened = PasskeyFileStore::open(&path).unwrap();
    let on_disk = reopened.list().await.unwrap();
    assert_eq!(on_disk.len(), 1, "and on disk");
    assert_eq!(on_disk[0].credential_id, record.credential_id);
}

#[tokio::test]
async fn the_file_is_versioned_pretty_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkeys.json");
    let store = PasskeyFileStore::open(&path).unwrap();
    assert_eq!(store.path(), path);
    assert_eq!(store.try_len(), Some(0));
    let record = passkey_record();
    store.insert(record.clone()).await.unwrap();
    assert_eq!(store.try_len(), Some(1));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("{\n  \"version\": 2,"), "{text}");
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        raw["passkeys"][0]["credential_id"],
        record.credential_id.as_str()
    );
    let setup_token = record.setup_token_hash.unwrap();
    assert_eq!(
        raw["used_setup_tokens"],
        serde_json::json!([setup_token.to_hex()])
    );
    // Deleting the last passkey leaves an empty, still valid file that remembers its setup token.
    assert!(store.delete(&record.credential_id).await.unwrap());
    let reopened = PasskeyFileStore::open(&path).unwrap();
    assert!(reopened.list().await.unwrap().is_empty());
    assert!(reopened.setup_token_used(&setup_token).await.unwrap());
}

/// A file written before used setup tokens had their own list: its passkeys' setup tokens count
/// as used, and stay used once the passkeys are removed and the file is rewritten.
#[tokio::test]
async fn a_version_1_file_is_read_and_its_setup_tokens_stay_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkeys.json");
    let registered = passkey_record();
    let setup_token = registered.setup_token_hash.unwrap();
    let version_1 = serde_json::json!({ "version": 1, "passkeys": [registered] });
    std::fs::write(&path, serde_json::to_vec_pretty(&version_1).unwrap()).unwrap();

    let store = PasskeyFileStore::open(&path).unwrap();
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].credential_id, registered.credential_id);
    assert!(store.setup_token_used(&setup_token).await.unwrap());
    assert!(store.delete(&registered.credential_id).await.unwrap());

    let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(raw["version"], 2, "rewritten in the current version");
    let reopened = PasskeyFileStore::open(&path).unwrap();
    assert!(reopened.setup_token_used(&setup_token).await.unwrap());
    let again = mcp_oauth::store::PasskeyRecord {
        setup_token_hash: Some(setup_token),
        ..passkey_record()
    };
    assert!(matches!(
        reopened.insert(again).await,
        Err(StoreError::AlreadyExists { .. })
    ));
}

#[tokio::test]
async fn a_missing_file_is_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = PasskeyFileStore::open(dir.path().join("absent.json")).unwrap();
    assert!(store.list().await.unwrap().is_empty());
    assert!(
        !dir.path().join("absent.json").exists(),
        "nothing is written until a change"
    );
}
