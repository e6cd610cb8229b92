//! What several instances agree on through the database: who asks WeChat for a login
//! code, who refreshes an app's access token, who runs a maintenance pass.
//!
//! Locks are PostgreSQL advisory locks, keyed `(NAMESPACE, hash of the name)`. A lock
//! taken for a caller is held on a connection of its own, returned to the pool (after
//! an unlock) when the [`Held`] is dropped; if the instance dies, PostgreSQL ends the
//! session and the lock with it, so none is ever left behind.

use super::{Conn, Postgres};
use crate::store::{CodeClaim, Held, Result};

/// The first half of every wxlogin advisory lock key ("wxlg"), so that other programs'
/// advisory locks on the same database do not collide with ours.
pub const NAMESPACE: i32 = 0x7778_6c67;

/// FNV-1a of the lock's name, as PostgreSQL's int4 second key.
fn key(name: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as i32
}

/// A session-level advisory lock and the connection that holds it.
struct AdvisoryLock {
    conn: Conn,
    key: i32,
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        if let Err(e) = self.conn.execute("SELECT pg_advisory_unlock($1, $2)", &[&NAMESPACE, &self.key]) {
            // The connection is broken, and with it the session that held the lock:
            // PostgreSQL has let go of it already. The pool drops a closed connection.
            log::warn!("could not release a database lock: {e}");
        }
    }
}

impl Postgres {
    pub fn claim_code(&self, app: &str, code_hash: &[u8; 32], now: i64, stale_before: i64) -> Result<CodeClaim> {
        let won = self.conn()?.query_opt(
            "INSERT INTO code_claims (app, code_hash, claimed_at) VALUES ($1, $2, $3)
             ON CONFLICT (app, code_hash) DO UPDATE SET claimed_at = excluded.claimed_at
             WHERE code_claims.claimed_at < $4
             RETURNING 1",
            &[&app, &&code_hash[..], &now, &stale_before],
        )?;
        Ok(if won.is_some() { CodeClaim::Won } else { CodeClaim::Held })
    }

    pub fn code_claim(&self, app: &str, code_hash: &[u8; 32], used_since: i64) -> Result<CodeClaim> {
        let row = self.conn()?.query_one(
            "SELECT EXISTS (SELECT 1 FROM used_codes WHERE app = $1 AND code_hash = $2 AND used_at > $3),
                    EXISTS (SELECT 1 FROM code_claims WHERE app = $1 AND code_hash = $2)",
            &[&app, &&code_hash[..], &used_since],
        )?;
        Ok(match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
            (true, _) => CodeClaim::Used,
            (false, true) => CodeClaim::Held,
            (false, false) => CodeClaim::Released,
        })
    }

    pub fn release_code(&self, app: &str, code_hash: &[u8; 32]) -> Result<()> {
        self.conn()?.execute("DELETE FROM code_claims WHERE app = $1 AND code_hash = $2", &[&app, &&code_hash[..]])?;
        Ok(())
    }

    /// Waits for the lock (the refresh it waits for is one WeChat call).
    pub fn token_refresh_lock(&self, app: &str) -> Result<Held> {
        let mut conn = self.conn()?;
        let key = key(&format!("access_token\0{app}"));
        conn.execute("SELECT pg_advisory_lock($1, $2)", &[&NAMESPACE, &key])?;
        Ok(Held::keep(AdvisoryLock { conn, key }))
    }

    pub fn try_task_lock(&self, task: &str) -> Result<Option<Held>> {
        let mut conn = self.conn()?;
        let key = key(&format!("task\0{task}"));
        let got: bool = conn.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&NAMESPACE, &key])?.get(0);
        Ok(got.then(|| Held::keep(AdvisoryLock { conn, key })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_by_name() {
        assert_ne!(key("task\0purge"), key("task\0pay"));
        assert_eq!(key("task\0purge"), key("task\0purge"));
    }
}
