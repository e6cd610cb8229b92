//! Sessions, shared by every instance: a session made on one verifies, slides and ends
//! on all.

use super::{Postgres, Tx};
use crate::store::{
    Lookup, Result, SessionInfo, SessionRow, Terms, KEEP_EXPIRED_SECONDS, MAX_CODE_REPLAYS, SLIDE_EVERY_SECONDS,
};

/// Rows deleted per statement by `purge`, so that no transaction holds locks for long.
const PURGE_BATCH: i64 = 500;

/// A new session for `user_id`, and the user kept to `terms.max_per_user` sessions.
/// The caller holds the user's row lock, so two logins of one user never each miss the
/// other's session.
pub(super) fn insert(tx: &mut Tx, token_hash: &[u8; 32], user_id: i64, terms: &Terms) -> Result<i64> {
    let now = terms.now;
    let max_expires_at = now + terms.max_lifetime;
    let expires_at = (now + terms.ttl).min(max_expires_at);
    tx.execute(
        "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at, max_expires_at)
         VALUES ($1, $2, $3, $3, $4, $5)",
        &[&&token_hash[..], &user_id, &now, &expires_at, &max_expires_at],
    )?;
    // The new one and the most recently used others stay, expired ones counted too (they
    // go first, being the least recently used). Ties go as SQLite's index orders them.
    tx.execute(
        "DELETE FROM sessions WHERE token_hash IN
         (SELECT token_hash FROM sessions WHERE user_id = $1 AND token_hash <> $2
          ORDER BY last_seen_at DESC, token_hash DESC OFFSET $3)",
        &[&user_id, &&token_hash[..], &(terms.max_per_user - 1).max(0)],
    )?;
    Ok(expires_at)
}

impl Postgres {
    /// The verify path: one indexed read of the session and its user.
    pub fn lookup_session(&self, token_hash: &[u8; 32], now: i64) -> Result<Lookup> {
        let row = self.conn()?.query_opt(
            "SELECT s.created_at, s.last_seen_at, s.expires_at, s.max_expires_at,
                    u.id, u.app, u.openid, u.unionid, u.nickname, u.avatar_url, u.gender, u.phone_number,
                    u.country_code, u.created_at, u.last_login_at
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
            &[&&token_hash[..]],
        )?;
        let Some(r) = row else { return Ok(Lookup::Unknown) };
        let (created_at, last_seen_at, expires_at, max_expires_at) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        if now >= expires_at {
            return Ok(Lookup::Expired);
        }
        let user = super::users::user_from_row(&r, 4)?;
        Ok(Lookup::Live(Box::new(SessionInfo { user, created_at, last_seen_at, expires_at, max_expires_at })))
    }

    /// Slides the idle expiry to `now + ttl` (never past the absolute cap) when it is due
    /// ([`SLIDE_EVERY_SECONDS`] since the last slide); returns the expiry now stored. The
    /// condition is in the UPDATE: of two instances sliding at once, the second finds it
    /// done and writes nothing.
    pub fn touch_session(&self, token_hash: &[u8; 32], now: i64, ttl: i64) -> Result<i64> {
        let mut conn = self.conn()?;
        let slid = conn.query_opt(
            "UPDATE sessions SET last_seen_at = $2, expires_at = LEAST($2 + $3, max_expires_at)
             WHERE token_hash = $1 AND expires_at > $2 AND last_seen_at <= $2 - $4
             RETURNING expires_at",
            &[&&token_hash[..], &now, &ttl, &SLIDE_EVERY_SECONDS],
        )?;
        if let Some(r) = slid {
            return Ok(r.try_get(0)?);
        }
        // Not due, expired, or slid by another instance meanwhile: what is stored now.
        let row = conn.query_opt("SELECT expires_at FROM sessions WHERE token_hash = $1", &[&&token_hash[..]])?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(now))
    }

    /// Ends one session; true when there was one.
    pub fn delete_session(&self, token_hash: &[u8; 32]) -> Result<bool> {
        Ok(self.conn()?.execute("DELETE FROM sessions WHERE token_hash = $1", &[&&token_hash[..]])? > 0)
    }

    /// Revokes every session of a user, or of everyone; returns how many. The replays
    /// left of their codes are spent in the same transaction: otherwise a used code would
    /// bring a revoked user back for the rest of its window.
    pub fn revoke_sessions(&self, user_id: Option<i64>) -> Result<usize> {
        self.tx(|tx| {
            let n = match user_id {
                Some(id) => {
                    tx.execute("UPDATE used_codes SET replays = $2 WHERE user_id = $1", &[&id, &MAX_CODE_REPLAYS])?;
                    tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&id])?
                }
                None => {
                    tx.execute("UPDATE used_codes SET replays = $1", &[&MAX_CODE_REPLAYS])?;
                    tx.execute("DELETE FROM sessions", &[])?
                }
            };
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    pub fn list_sessions(&self, user_id: i64, now: i64) -> Result<Vec<SessionRow>> {
        let rows = self.conn()?.query(
            "SELECT encode(substring(token_hash FROM 1 FOR 4), 'hex'), user_id, created_at, last_seen_at, expires_at
             FROM sessions WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC",
            &[&user_id, &now],
        )?;
        let row = |r: &postgres::Row| -> Result<SessionRow> {
            Ok(SessionRow {
                token_hash_prefix: r.try_get(0)?,
                user_id: r.try_get(1)?,
                created_at: r.try_get(2)?,
                last_seen_at: r.try_get(3)?,
                expires_at: r.try_get(4)?,
            })
        };
        rows.iter().map(row).collect()
    }

    pub fn live_sessions(&self, now: i64) -> Result<i64> {
        Ok(self.conn()?.query_one("SELECT count(*) FROM sessions WHERE expires_at > $1", &[&now])?.get(0))
    }

    /// Deletes long-expired sessions, used-code records older than `code_window` and code
    /// claims as old (never one younger than 10 minutes: a slow exchange still holds it),
    /// in batches, each its own transaction.
    pub fn purge(&self, now: i64, code_window: i64) -> Result<usize> {
        let sessions_before = now - KEEP_EXPIRED_SECONDS;
        let codes_before = now - code_window.max(300);
        let claims_before = now - code_window.max(600);
        let mut total = 0;
        loop {
            let n = self.tx(|tx| {
                let a = tx.execute(
                    "DELETE FROM sessions WHERE token_hash IN
                     (SELECT token_hash FROM sessions WHERE expires_at < $1 LIMIT $2)",
                    &[&sessions_before, &PURGE_BATCH],
                )?;
                let b = tx.execute(
                    "DELETE FROM used_codes WHERE (app, code_hash) IN
                     (SELECT app, code_hash FROM used_codes WHERE used_at < $1 LIMIT $2)",
                    &[&codes_before, &PURGE_BATCH],
                )?;
                let c = tx.execute(
                    "DELETE FROM code_claims WHERE (app, code_hash) IN
                     (SELECT app, code_hash FROM code_claims WHERE claimed_at < $1 LIMIT $2)",
                    &[&claims_before, &PURGE_BATCH],
                )?;
                Ok(a + b + c)
            })?;
            total += usize::try_from(n).unwrap_or(usize::MAX);
            if n == 0 || total > 1_000_000 {
                return Ok(total);
            }
        }
    }
}
