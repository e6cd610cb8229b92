//! The PostgreSQL engine: one database shared by several wxlogin instances.
//!
//! Every write runs at READ COMMITTED and is written to be right when two instances run
//! it at once: a conditional `UPDATE ... RETURNING`, `INSERT ... ON CONFLICT`, or a row
//! locked with `FOR UPDATE` before the decision that depends on it; never "read, decide
//! in Rust, write" on an unlocked row. A transaction PostgreSQL aborts as a
//! serialization failure or a deadlock is run again (see [`Postgres::tx`]).
//!
//! The connection is plain TCP or a Unix socket (no TLS in this version: PostgreSQL on
//! the same host or a private network, as deploy/README.md says).

pub(super) mod admin;
mod coordination;
mod copy;
mod login_counts;
mod migrate;
mod orders;
mod pay_events;
mod pool;
mod refunds;
mod sessions;
mod stats;
mod tokens;
mod users;

use std::time::Duration;

use postgres::error::SqlState;

use super::{Bell, Result, StoreError};
use crate::secrets::Secret;
pub(super) use pool::{Conn, Tx};

/// How many times a transaction aborted by a serialization failure or a deadlock is
/// tried in all: such aborts are PostgreSQL's way of saying "run it again".
const ATTEMPTS: u32 = 5;

pub struct Postgres {
    pool: pool::Pool,
    /// host:port/database, for logs (the URL minus user and password).
    shown: String,
    outbox_bell: Bell,
    login_counts: login_counts::LoginCounts,
}

impl Postgres {
    /// Connects, and brings the schema up to date (under an advisory lock, so that two
    /// instances starting at once do not both migrate).
    pub fn connect(url: &Secret, max_connections: u32) -> Result<Postgres> {
        let config = admin::config_of(url, "wxlogin")?;
        let shown = admin::target_of(&config).shown();
        let pool = pool::Pool::new(config, max_connections as usize);
        // Named here: start-up is where an operator meets a wrong host or password.
        let at = |e: StoreError| match e {
            StoreError::Unavailable(m) => StoreError::Unavailable(format!("{shown}: {m}")),
            other => other,
        };
        let mut conn = pool.get().map_err(at)?;
        migrate::migrate(&mut conn).map_err(at)?;
        drop(conn);
        Ok(Postgres { pool, shown, outbox_bell: Bell::default(), login_counts: Default::default() })
    }

    pub fn describe(&self) -> String {
        self.shown.clone()
    }

    pub fn ping(&self) -> Result<()> {
        self.conn()?.query_one("SELECT 1", &[])?;
        Ok(())
    }

    pub fn outbox_bell(&self) -> &Bell {
        &self.outbox_bell
    }

    /// A connection from the pool, for reads and single statements (each its own
    /// transaction).
    pub(super) fn conn(&self) -> Result<Conn> {
        self.pool.get()
    }

    /// Runs `f` in one transaction and commits it; runs it again when PostgreSQL aborts
    /// it as a serialization failure or a deadlock, so `f` must only touch the database.
    pub(super) fn tx<T>(&self, mut f: impl FnMut(&mut Tx) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        let mut attempt = 1;
        loop {
            match conn.in_transaction(&mut f) {
                Err(StoreError::Retry(why)) if attempt < ATTEMPTS => {
                    log::debug!("a transaction was aborted ({why}); running it again");
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(u64::from(attempt) * 5));
                }
                Err(StoreError::Retry(why)) => return Err(StoreError::Postgres(why)),
                other => return other,
            }
        }
    }
}

/// postgres' error texts name no password (nor any other part of the URL).
impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        let Some(code) = e.code() else {
            // No SQLSTATE: the connection failed or broke.
            return StoreError::Unavailable(e.to_string());
        };
        if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
            StoreError::Retry(e.to_string())
        } else if *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::TOO_MANY_CONNECTIONS {
            StoreError::Busy
        } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION || *code == SqlState::DISK_FULL {
            StoreError::ReadOnly
        } else if code.code().starts_with("08") || code.code().starts_with("57P") {
            // Connection exceptions, and the server shutting down.
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Postgres(e.to_string())
        }
    }
}

/// `usize` limits as PostgreSQL's BIGINT.
pub(super) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
