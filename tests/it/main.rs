//! The one integration-test crate: every test starts real servers on ephemeral ports
//! (in-process, or the real binary) against the fake WeChat and speaks HTTP to them.
//!
//! The suite that matters runs twice: as below on SQLite, and again under `pg::` on
//! PostgreSQL (a temporary cluster, see pg_cluster.rs). The harness picks the engine from
//! the test's name (support::Engine) and asserts that the server really runs on it.

// Deliberate: pg.rs compiles the same test files a second time, for PostgreSQL.
#![allow(clippy::duplicate_mod)]

mod support;

/// Tests the PostgreSQL copy of a file leaves out: slow, and nothing in them touches the
/// store beyond what the rest of the file covers on both engines. pg.rs redefines it
/// to drop them.
macro_rules! sqlite_only {
    ($($item:item)*) => { $($item)* };
}

mod cli;
mod crash;
mod decrypt;
mod docs;
mod file_modes;
mod hardening;
mod hostile;
mod hostile_wechat;
mod js_client;
mod log_guard;
mod login;
mod methods;
mod ops;
mod pay;
mod pay_certificates;
mod pay_cli;
mod pay_refunds;
mod pg;
mod pg_cli;
mod pg_cluster;
mod pg_pay_store;
mod pg_store;
mod session;
mod tiny_http_limits;
mod token;
mod webhook;
