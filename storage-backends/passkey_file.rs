//! [`PasskeyFileStore`]: the owner's passkeys in a JSON file, written atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::store::{PasskeyRecord, PasskeyStore, StoreError};

const BACKEND: &str = "passkey file";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct FileContents {
    version: u32,
    passkeys: Vec<PasskeyRecord>,
}

/// Passkeys in a JSON file (`{"version":1,"passkeys":[…]}`).
///
/// Every change rewrites the whole file atomically: a temporary file in the same directory, created
/// with mode 0600, written and fsynced, then renamed over the old one, and the directory fsynced. A
/// crash leaves the old file or the new one, never a torn one. A file that cannot be read as
/// passkeys is an error at [`open`](PasskeyFileStore::open) and is never overwritten.
///
/// For one process: two processes writing the same file would lose each other's changes. Use a
/// shared backend for several instances.
pub struct PasskeyFileStore {
    path: PathBuf,
    passkeys: Mutex<Vec<PasskeyRecord>>,
}

impl std::fmt::Debug for PasskeyFileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyFileStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PasskeyFileStore {
    /// Open the file at `path`, creating its directory if needed. A missing file is an empty store.
    ///
    /// # Errors
    ///
    /// [`StoreError::Codec`] if the file is not a passkey file (it is left untouched), or
    /// [`StoreError::Backend`] if it cannot be read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| io_error(&path, "create the directory of", e))?;
        }
        let passkeys = match fs::read(&path) {
            Ok(bytes) => {
                let contents: FileContents = serde_json::from_slice(&bytes).map_err(|e| {
                    StoreError::codec(
                        BACKEND,
                        format!(
                            "{} is not a valid passkey file ({e}); it was left untouched: fix or move it",
                            path.display()
                        ),
                    )
                })?;
                if contents.version != VERSION {
                    return Err(StoreError::codec(
                        BACKEND,
                        format!(
                            "{} has unsupported version {}",
                            path.display(),
                            contents.version
                        ),
                    ));
                }
                contents.passkeys
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(&path, "read", e)),
        };
        Ok(Self {
            path,
            passkeys: Mutex::new(passkeys),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `passkeys` to the file, then make them the store's contents. On failure nothing
    /// changes, in memory or on disk.
    async fn commit(
        &self,
        current: &mut Vec<PasskeyRecord>,
        passkeys: Vec<PasskeyRecord>,
    ) -> Result<(), StoreError> {
        let contents = FileContents {
            version: VERSION,
            passkeys,
        };
        let bytes =
            serde_json::to_vec_pretty(&contents).map_err(|e| StoreError::codec(BACKEND, e))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| StoreError::backend(BACKEND, e))??;
        *current = contents.passkeys;
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: u64 = rand::random();
    let temp = dir.join(format!(".{name}.{suffix:016x}.tmp"));
    let result = (|| {
        let mut file = create_private(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|e| io_error(path, "write", e))
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

fn io_error(path: &Path, action: &str, error: std::io::Error) -> StoreError {
    StoreError::backend(
        BACKEND,
        format!("cannot {action} {}: {error}", path.display()),
    )
}

#[async_trait]
impl PasskeyStore for PasskeyFileStore {
    async fn list(&self) -> Result<Vec<PasskeyRecord>, StoreError> {
        Ok(self.passkeys.lock().await.clone())
    }

    async fn get(&self, credential_id: &str) -> Result<Option<PasskeyRecord>, StoreError> {
        Ok(self
            .passkeys
            .lock()
            .await
            .iter()
            .find(|p| p.credential_id == credential_id)
            .cloned())
    }

    async fn insert(&self, record: PasskeyRecord) -> Result<(), StoreError> {
        let mut current = self.passkeys.lock().await;
        if current
            .iter()
            .any(|p| p.credential_id == record.credential_id)
        {
            return Err(StoreError::AlreadyExists { what: "passkey" });
        }
        let mut next = current.clone();
        next.push(record);
        self.commit(&mut current, next).await
    }

    async fn update(&self, record: PasskeyRecord) -> Result<bool, StoreError> {
        let mut current = self.passkeys.lock().await;
        let Some(index) = current
            .iter()
            .position(|p| p.credential_id == record.credential_id)
        else {
            return Ok(false);
        };
        let mut next = current.clone();
        next[index] = record;
        self.commit(&mut current, next).await?;
        Ok(true)
    }

    async fn delete(&self, credential_id: &str) -> Result<bool, StoreError> {
        let mut current = self.passkeys.lock().await;
        if !current.iter().any(|p| p.credential_id == credential_id) {
            return Ok(false);
        }
        let next = current
            .iter()
            .filter(|p| p.credential_id != credential_id)
            .cloned()
            .collect();
        self.commit(&mut current, next).await?;
        Ok(true)
    }
}
