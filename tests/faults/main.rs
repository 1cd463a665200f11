//! Fault injection: Redis killed mid-load and restarted, PostgreSQL stopped mid-load and restarted, SQLite under concurrent writers on two
//! pools, a passkey writer killed at random moments, an unwritable passkey directory, a corrupt
//! passkey file at start. Each test asserts what the owner and the clients see: a 503 while a
//! backend is down (never a 401 that makes clients forget their tokens, never a 500), and no state
//! lost or duplicated afterwards.

// The harness's helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../flows/common/mod.rs"]
mod common;

mod flow;
mod passkey_file;
mod passkey_kill;
#[cfg(feature = "postgres")]
mod postgres_outage;
#[cfg(feature = "postgres")]
#[path = "../stores/postgres_support.rs"]
mod postgres_support;
mod redis_outage;
mod redis_process;
mod sqlite_busy;
