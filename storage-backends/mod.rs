//! The storage backends: each maps the contracts of [`crate::store`] onto one technology.
//!
//! | backend | traits | persists | shared across instances |
//! |---|---|---|---|
//! | [`MemoryStore`] (feature `memory`, default) | token, client, passkey | no | no |
//! | [`PasskeyFileStore`] (always) | passkey | yes (JSON file) | no |
//! | `SqliteStore` (feature `sqlite`) | token, client, passkey | yes (SQLite file, WAL) | processes on one host, same file |
//! | `PostgresStore` (feature `postgres`) | token, client, passkey | yes (PostgreSQL) | yes |
//! | `RedisStore` (feature `redis`) | token, client, passkey | as Redis is configured (AOF/RDB) | yes |

#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub mod memory;
pub mod passkey_file;
mod passkey_list;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

#[cfg(feature = "memory")]
pub use memory::{MemoryLimits, MemoryStore};
pub use passkey_file::PasskeyFileStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
