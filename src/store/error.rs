use std::error::Error as StdError;

/// A boxed error from a backend's driver, kept as the source of a [`StoreError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a store operation failed. Protocol outcomes (an unknown token, a used code) are never errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An insert-if-absent found the key taken.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What was being inserted, e.g. `"token"` or `"passkey"`.
        what: &'static str,
    },
    /// The store holds as many records of this kind as it may: the insert was refused, and
    /// nothing was removed to make room. For registrations nobody approved yet
    /// ([`ClientStore::insert`](super::ClientStore::insert)).
    #[error("too many {what}s are stored")]
    CapacityReached {
        /// What was being inserted, e.g. `"unapproved client"`.
        what: &'static str,
    },
    /// A stored value could not be encoded or decoded.
    #[error("{backend}: malformed stored record: {source}")]
    Codec {
        /// The backend's name, e.g. `"sqlite"`.
        backend: &'static str,
        /// What the codec said.
        #[source]
        source: BoxError,
    },
    /// The backend itself failed: I/O, connection, SQL, Redis, file system.
    #[error("{backend} backend error: {source}")]
    Backend {
        /// The backend's name, e.g. `"redis"`.
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// A [`StoreError::Backend`] wrapping `source`.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            backend,
            source: source.into(),
        }
    }

    /// A [`StoreError::Codec`] wrapping `source`.
    pub fn codec(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Codec {
            backend,
            source: source.into(),
        }
    }
}
