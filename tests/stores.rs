//! The storage conformance suite against every backend, and what is particular to each.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod memory {
    use mcp_oauth::MemoryStore;

    mcp_oauth::token_store_conformance!(|| async { MemoryStore::new() });
    mcp_oauth::client_store_conformance!(|| async { MemoryStore::new() });
    mcp_oauth::passkey_store_conformance!(|| async { MemoryStore::new() });
}

mod passkey_file {
    use std::os::unix::fs::PermissionsExt;

    use mcp_oauth::PasskeyFileStore;
    use mcp_oauth::store::conformance::passkey_record;
    use mcp_oauth::store::{PasskeyStore, StoreError};

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
            let mut used = record.clone();
            used.label = "Used".into();
            store.update(used).await.unwrap();
        }
        let reopened = PasskeyFileStore::open(&path).unwrap();
        let listed = reopened.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].credential_id, record.credential_id);
        assert_eq!(listed[0].label, "Used");
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["version"], 1);
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
    async fn a_missing_file_is_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = PasskeyFileStore::open(dir.path().join("absent.json")).unwrap();
        assert!(store.list().await.unwrap().is_empty());
        assert!(
            !dir.path().join("absent.json").exists(),
            "nothing is written until a change"
        );
    }
}
