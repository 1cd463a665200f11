//! The storage conformance suite against every backend, and what is particular to each.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod memory;
mod passkey_file;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod postgres_support;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_connect_forms;
