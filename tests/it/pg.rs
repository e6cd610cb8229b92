//! The suite that matters again, on PostgreSQL: each file below is compiled a second
//! time here, so its tests run as `pg::FILE::TEST`, a name that makes the harness give
//! them a fresh database on the test cluster (support::Engine). And what only PostgreSQL
//! has: several instances on one database.

macro_rules! sqlite_only {
    ($($item:item)*) => {};
}

#[path = "crash.rs"]
mod crash;
#[path = "decrypt.rs"]
mod decrypt;
#[path = "log_guard.rs"]
mod log_guard;
#[path = "login.rs"]
mod login;
#[path = "ops.rs"]
mod ops;
#[path = "pay.rs"]
mod pay;
#[path = "pay_cli.rs"]
mod pay_cli;
#[path = "pay_refunds.rs"]
mod pay_refunds;
#[path = "session.rs"]
mod session;
#[path = "token.rs"]
mod token;
#[path = "two_instances.rs"]
mod two_instances;
#[path = "webhook.rs"]
mod webhook;
