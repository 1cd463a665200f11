//! HTTP flow tests: the whole journey in process, and one test attacking each protocol rule.

// The harness's helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod attacks;
mod audit;
mod authorize;
mod bearer;
mod budgets;
#[cfg(feature = "caching")]
mod caching;
#[cfg(feature = "cimd")]
mod cimd;
mod client_deletion;
mod client_keys;
#[cfg(feature = "cimd")]
mod configured_key_uris;
mod console;
mod cors;
mod discovery;
mod fallback;
mod floods;
mod instances;
mod introspect;
mod journey;
mod limits;
mod machine_clients;
mod malformed;
mod outside_review;
mod outside_review_architecture;
mod passkeys;
#[cfg(feature = "postgres")]
#[path = "../stores/postgres_support.rs"]
mod postgres_support;
#[cfg(feature = "cimd")]
mod private_key_jwt;
mod properties;
mod proxies;
mod races;
mod rate_limits;
mod refresh_chain;
mod register;
mod registered_private_key_jwt;
mod registrations;
mod review3;
mod review4;
mod review5;
mod review6;
mod review7;
#[cfg(feature = "cimd")]
mod review8;
mod review_machine_clients;
mod revoke;
mod rmcp_server;
mod secrets;
mod step_up;
mod sweeper;
mod token;
