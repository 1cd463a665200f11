//! A process writing the passkey file, killed (SIGKILL) at random moments: the file is always a
//! complete version, the old one or the new one, never a torn one.
//!
//! The writer is this test binary run again with [`WRITER_ENV`] set, running only
//! [`child_writes_passkeys_until_killed`].

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mcp_oauth::PasskeyFileStore;
use mcp_oauth::store::PasskeyStore;
use mcp_oauth::store::conformance::passkey_record;

/// Set to the passkey file's path, it makes the child test write until it is killed.
const WRITER_ENV: &str = "MCP_OAUTH_FAULTS_PASSKEY_WRITER";
const KILLS: usize = 60;
/// The writer keeps at most this many passkeys, deleting the oldest to add one.
const KEEP: usize = 4;

/// The labels in the file, which the writer numbers 1, 2, 3, ….
fn numbers(store: &PasskeyFileStore) -> Vec<u64> {
    let list = futures::executor::block_on(store.list()).unwrap();
    list.iter().map(|p| p.label.parse().unwrap()).collect()
}

/// Not a test on its own: the body of the child process (a no-op without [`WRITER_ENV`]).
#[tokio::test]
async fn child_writes_passkeys_until_killed() {
    let Ok(path) = std::env::var(WRITER_ENV) else {
        return;
    };
    let store = PasskeyFileStore::open(&path).expect("the file the child finds is complete");
    let mut next = numbers(&store).last().copied().unwrap_or(0) + 1;
    loop {
        // Make room first, so that the file never holds more than KEEP, wherever a kill lands.
        let mut list = store.list().await.unwrap();
        while list.len() >= KEEP {
            store.delete(&list.remove(0).credential_id).await.unwrap();
        }
        let mut record = passkey_record();
        record.label = next.to_string();
        store.insert(record).await.unwrap();
        next += 1;
    }
}

/// Complete: it opens, carries consecutive numbers, ends as the writer ends it.
fn assert_complete(path: &Path) -> Option<u64> {
    if !path.exists() {
        return None;
    }
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.ends_with(b"}\n"),
        "torn: {}",
        String::from_utf8_lossy(&bytes)
    );
    let store = PasskeyFileStore::open(path)
        .unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&bytes)));
    let numbers = numbers(&store);
    assert!(numbers.len() <= KEEP, "{numbers:?}");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "a complete version: {numbers:?}"
    );
    numbers.last().copied()
}

#[test]
fn a_writer_killed_at_random_moments_never_leaves_a_torn_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkeys.json");
    let exe = std::env::current_exe().unwrap();
    let mut newest = 0;
    let mut leftovers = 0;
    for _ in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "passkey_kill::child_writes_passkeys_until_killed",
            ])
            .args(["--test-threads", "1", "--nocapture"])
            .env(WRITER_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rand::random_range(20..120)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the writer runs until killed");
        // A kill between creating the temporary file and renaming it leaves that file behind;
        // opening the store removes it (even before the first complete write).
        leftovers += temp_files(dir.path()).len();
        if let Some(last) = assert_complete(&path) {
            assert!(last >= newest, "no version goes back: {last} < {newest}");
            newest = last;
        }
        PasskeyFileStore::open(&path).unwrap();
        assert_eq!(
            temp_files(dir.path()),
            Vec::<String>::new(),
            "opening the store removes what a killed writer left"
        );
    }
    eprintln!(
        "passkey writer: killed {KILLS} times, the last passkey written was number {newest}, \
         {leftovers} kills landed between creating and renaming the temporary file"
    );
    assert!(newest > 0, "the writer made progress");
}

/// Every file in `dir` but the passkey file itself.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "passkeys.json")
        .collect()
}
