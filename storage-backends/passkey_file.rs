//! [`PasskeyFileStore`]: the owner's passkeys in a JSON file, written atomically.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::passkey_list::PasskeyList;
use crate::store::{PasskeyChange, PasskeyRecord, PasskeyStore, StoreError, TokenHash};

const BACKEND: &str = "passkey file";
/// The version this build writes.
const VERSION: u32 = 2;
/// Version 1 had no `used_setup_tokens`: a used setup token was known only by its passkey.
const VERSION_WITHOUT_USED_SETUP_TOKENS: u32 = 1;

#[derive(Deserialize)]
struct FileContents {
    version: u32,
    passkeys: Vec<PasskeyRecord>,
    #[serde(default)]
    used_setup_tokens: Vec<TokenHash>,
}

#[derive(Serialize)]
struct FileContentsRef<'a> {
    version: u32,
    passkeys: &'a [PasskeyRecord],
    used_setup_tokens: &'a BTreeSet<TokenHash>,
}

/// Passkeys in a JSON file: `{"version": 2, "passkeys": […], "used_setup_tokens": […]}`,
/// pretty-printed. `used_setup_tokens` holds the hash of every setup token that registered a
/// passkey, kept when the passkey is removed. A version 1 file (no such list) is read with the
/// setup tokens of its passkeys counted as used, and rewritten as version 2 at the first change.
///
/// - **Atomic writes.** Every change rewrites the whole file: a temporary file in the same
///   directory, created with mode 0600, written and fsynced, renamed over the old file, then the
///   directory fsynced. A crash leaves the old file or the new one, never a torn one.
/// - **Never loses the file.** A file that cannot be read as passkeys is an error at
///   [`open`](PasskeyFileStore::open) and is never overwritten.
/// - **Memory follows the file.** A change is applied in memory only once its file is in place, so
///   a failed write leaves both as they were. A change whose caller stops waiting (a dropped
///   future) still completes, so the two never drift apart.
/// - **One process.** The file is read once, at `open`; two processes (or two stores) on the same
///   file would overwrite each other's changes. Use a shared backend for several instances. For
///   the same reason `open` removes the temporary files a killed process left beside the file.
pub struct PasskeyFileStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    passkeys: Mutex<PasskeyList>,
}

impl std::fmt::Debug for PasskeyFileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyFileStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// What a mutation decided, given the current list.
enum Change<T> {
    /// Nothing to write; answer `T`.
    None(T),
    /// Write this list, then answer `T`.
    Write(PasskeyList, T),
}

impl PasskeyFileStore {
    /// Open the file at `path`, creating its directory if needed. A missing file is an empty store;
    /// nothing is written until the first change.
    ///
    /// Synchronous: it reads one small file, and is meant for start-up.
    ///
    /// # Errors
    ///
    /// [`StoreError::Codec`] if the file is not a passkey file (the message names the file, which
    /// is left untouched), or [`StoreError::Backend`] if the directory cannot be created or the
    /// file cannot be read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = parent(&path) {
            fs::create_dir_all(dir).map_err(|e| io_error(&path, "create the directory of", e))?;
        }
        let passkeys = match fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes)?,
            Err(e) if e.kind() == ErrorKind::NotFound => PasskeyList::default(),
            Err(e) => return Err(io_error(&path, "read", e)),
        };
        remove_stale_temp_files(&path);
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                passkeys: Mutex::new(passkeys),
            }),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many passkeys are registered, without waiting: `None` while a change is being written.
    /// For synchronous start-up code (say, deciding whether to print a setup token).
    pub fn try_len(&self) -> Option<usize> {
        self.inner
            .passkeys
            .try_lock()
            .ok()
            .map(|list| list.records().len())
    }

    /// Apply `change` to the list under the lock, writing the file when it asks to.
    ///
    /// The whole step runs on a blocking task that the caller only waits for, so dropping the
    /// caller's future cannot stop it between writing the file and updating the list.
    async fn mutate<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&PasskeyList) -> Result<Change<T>, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // A blocking task is not an async context, so waiting for the lock here is allowed.
            let mut current = inner.passkeys.blocking_lock();
            match change(&current)? {
                Change::None(answer) => Ok(answer),
                Change::Write(next, answer) => {
                    let mut bytes = serde_json::to_vec_pretty(&FileContentsRef {
                        version: VERSION,
                        passkeys: next.records(),
                        used_setup_tokens: next.used_setup_tokens(),
                    })
                    .map_err(|e| StoreError::codec(BACKEND, e))?;
                    bytes.push(b'\n');
                    let outcome = write_atomically(&inner.path, &bytes);
                    if outcome.renamed {
                        // The file now holds the new list, whatever happened after: follow it.
                        *current = next;
                    }
                    outcome.result.map(|()| answer)
                }
            }
        })
        .await
        .map_err(|e| StoreError::backend(BACKEND, e))?
    }
}

fn parent(path: &Path) -> Option<&Path> {
    path.parent().filter(|dir| !dir.as_os_str().is_empty())
}

fn parse(path: &Path, bytes: &[u8]) -> Result<PasskeyList, StoreError> {
    let contents: FileContents = serde_json::from_slice(bytes).map_err(|e| {
        StoreError::codec(
            BACKEND,
            format!(
                "{} is not a valid passkey file ({e}); it was left untouched: fix or move it",
                path.display()
            ),
        )
    })?;
    if !(VERSION_WITHOUT_USED_SETUP_TOKENS..=VERSION).contains(&contents.version) {
        return Err(StoreError::codec(
            BACKEND,
            format!(
                "{} has version {}, this build reads versions \
                 {VERSION_WITHOUT_USED_SETUP_TOKENS} to {VERSION}; it was left untouched",
                path.display(),
                contents.version
            ),
        ));
    }
    // In a version 1 file the passkeys' own setup tokens are all there is; `new` counts them.
    Ok(PasskeyList::new(
        contents.passkeys,
        contents.used_setup_tokens,
    ))
}

/// The temporary file of one write: `.{name}.{16 hex digits}.tmp` beside the file.
fn temp_path(path: &Path, suffix: u64) -> PathBuf {
    let dir = parent(path).unwrap_or(Path::new("."));
    dir.join(format!(".{}.{suffix:016x}.tmp", file_name(path)))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A process killed in the middle of a write leaves its temporary file behind (the passkey file
/// itself is whole). The file belongs to one process, so at `open` any such leftover is stale:
/// remove it, best effort, so crashes do not pile up copies of the passkey list.
fn remove_stale_temp_files(path: &Path) {
    let dir = parent(path).unwrap_or(Path::new("."));
    let prefix = format!(".{}.", file_name(path));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_ours = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".tmp"))
            .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if is_ours {
            let _ = fs::remove_file(entry.path());
        }
    }
}

struct WriteOutcome {
    /// Whether the new file replaced the old one (the commit point).
    renamed: bool,
    result: Result<(), StoreError>,
}

fn write_atomically(path: &Path, bytes: &[u8]) -> WriteOutcome {
    let dir = parent(path).unwrap_or(Path::new("."));
    let temp = temp_path(path, rand::random());
    let written = (|| {
        let mut file = create_private(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        // Best effort: the temporary file may not even exist.
        let _ = fs::remove_file(&temp);
        return WriteOutcome {
            renamed: false,
            result: Err(io_error(path, "write", e)),
        };
    }
    WriteOutcome {
        renamed: true,
        result: sync_dir(dir).map_err(|e| io_error(path, "make durable the rename of", e)),
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Make a rename in `dir` durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened as files here; the rename is as durable as the platform makes it.
#[cfg(not(unix))]
fn sync_dir(_: &Path) -> std::io::Result<()> {
    Ok(())
}

fn io_error(path: &Path, action: &str, error: std::io::Error) -> StoreError {
    StoreError::backend(
        BACKEND,
        format!("cannot {action} {}: {error}", path.display()),
    )
}

#[async_trait]
impl PasskeyStore for PasskeyFileStore {
    async fn list(&self) -> Result<Vec<PasskeyRecord>, StoreError> {
        Ok(self.inner.passkeys.lock().await.records().to_vec())
    }

    async fn get(&self, credential_id: &str) -> Result<Option<PasskeyRecord>, StoreError> {
        Ok(self.inner.passkeys.lock().await.get(credential_id).cloned())
    }

    /// The passkey and its setup token's use are written in one file, so both land or neither.
    async fn insert(&self, record: PasskeyRecord) -> Result<(), StoreError> {
        self.mutate(move |current| {
            let mut next = current.clone();
            next.insert(record)?;
            Ok(Change::Write(next, ()))
        })
        .await
    }

    async fn setup_token_used(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        Ok(self.inner.passkeys.lock().await.setup_token_used(hash))
    }

    /// Under the lock, on the list as it is: the file is written only when something changed.
    async fn modify(
        &self,
        credential_id: &str,
        change: &PasskeyChange,
    ) -> Result<Option<bool>, StoreError> {
        let (credential_id, change) = (credential_id.to_owned(), change.clone());
        self.mutate(move |current| {
            let mut next = current.clone();
            Ok(match next.modify(&credential_id, &change) {
                Some(true) => Change::Write(next, Some(true)),
                unchanged => Change::None(unchanged),
            })
        })
        .await
    }

    async fn delete(&self, credential_id: &str) -> Result<bool, StoreError> {
        let credential_id = credential_id.to_owned();
        self.mutate(move |current| {
            let mut next = current.clone();
            Ok(if next.delete(&credential_id) {
                Change::Write(next, true)
            } else {
                Change::None(false)
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_the_file_and_the_problem() {
        let path = Path::new("/somewhere/passkeys.json");
        let error = parse(path, b"{\"version\":3,\"passkeys\":[]}").unwrap_err();
        let source = std::error::Error::source(&error).unwrap().to_string();
        assert!(source.contains("/somewhere/passkeys.json"), "{source}");
        assert!(source.contains("version 3"), "{source}");
        for readable in [
            &b"{\"version\":1,\"passkeys\":[]}"[..],
            b"{\"version\":2,\"passkeys\":[],\"used_setup_tokens\":[]}",
        ] {
            assert!(parse(path, readable).unwrap().records().is_empty());
        }
    }

    #[test]
    fn open_removes_the_temporary_files_of_interrupted_writes_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        let stale = temp_path(&path, 0x0123_4567_89ab_cdef);
        let keep = [
            ".p.json.not-hex-digits!.tmp",
            ".other.json.0123456789abcdef.tmp",
            "p.json.tmp",
        ];
        fs::write(&stale, b"{\"version\":1,").unwrap();
        for name in keep {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        PasskeyFileStore::open(&path).unwrap();
        assert!(!stale.exists());
        for name in keep {
            assert!(dir.path().join(name).exists(), "{name}");
        }
    }

    #[test]
    fn a_write_into_a_missing_directory_fails_before_the_commit_point() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = write_atomically(&dir.path().join("missing").join("p.json"), b"{}");
        assert!(!outcome.renamed);
        assert!(outcome.result.is_err());
    }
}
