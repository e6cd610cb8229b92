//! Sessions: stored as SHA-256 of the token, with a sliding idle expiry under an
//! absolute cap.

use rusqlite::{params, Connection, OptionalExtension};

use super::users::{Terms, User, MAX_CODE_REPLAYS};
use super::{Result, Sqlite};

/// How often, at most, a session's sliding expiry is written back: a verify is a read,
/// and writing on every request would make the hot path a write path.
pub const SLIDE_EVERY_SECONDS: i64 = 60;

/// How long an expired session is kept so that its token still answers `session_expired`
/// (telling the client to log in again) rather than `unauthorized`.
pub const KEEP_EXPIRED_SECONDS: i64 = 7 * 86_400;

#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub user: User,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub max_expires_at: i64,
}

pub enum Lookup {
    Live(Box<SessionInfo>),
    Expired,
    Unknown,
}

/// A session as the admin commands list it (never the token).
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub token_hash_prefix: String,
    pub user_id: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

pub(super) fn insert(tx: &Connection, token_hash: &[u8; 32], user_id: i64, terms: &Terms) -> Result<i64> {
    let now = terms.now;
    let max_expires_at = now + terms.max_lifetime;
    let expires_at = (now + terms.ttl).min(max_expires_at);
    tx.prepare_cached(
        "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at, max_expires_at)
         VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
    )?
    .execute(params![&token_hash[..], user_id, now, expires_at, max_expires_at])?;
    end_least_recently_used(tx, token_hash, user_id, terms.max_per_user)?;
    Ok(expires_at)
}

/// Keeps the user to `max` sessions, the new one and the most recently used others,
/// counting expired ones too (they go first, being the least recently used). "Recently"
/// is as exact as `last_seen_at`, which sliding writes at most once a minute. One
/// statement on the (user_id, last_seen_at) index, which covers it.
fn end_least_recently_used(tx: &Connection, new: &[u8; 32], user_id: i64, max: i64) -> Result<()> {
    // Nearly every user holds far fewer sessions than the cap. A probe for a session past
    // it reads at most `max + 1` index entries and builds nothing; the DELETE's IN-subquery
    // builds an ephemeral table each time (measured: 10% of login throughput when run on
    // every login).
    let over = tx
        .prepare_cached("SELECT 1 FROM sessions WHERE user_id = ?1 ORDER BY last_seen_at DESC LIMIT 1 OFFSET ?2")?
        .query_row(params![user_id, max.max(1)], |_| Ok(()))
        .optional()?;
    if over.is_none() {
        return Ok(());
    }
    tx.prepare_cached(
        "DELETE FROM sessions WHERE token_hash IN
         (SELECT token_hash FROM sessions WHERE user_id = ?1 AND token_hash <> ?2
          ORDER BY last_seen_at DESC LIMIT -1 OFFSET ?3)",
    )?
    .execute(params![user_id, &new[..], (max - 1).max(0)])?;
    Ok(())
}

impl Sqlite {
    /// The verify path: two primary-key reads on one connection.
    ///
    /// Deliberately not a JOIN: rusqlite's statement cache clears a statement's bindings
    /// when it is returned, and SQLite then re-compiles a JOIN of these tables on its next
    /// use (measured: every use, 32 us against 11 us for the two reads).
    pub fn lookup_session(&self, token_hash: &[u8; 32], now: i64) -> Result<Lookup> {
        self.read_snapshot(|c| {
            let mut st = c.prepare_cached(
                "SELECT user_id, created_at, last_seen_at, expires_at, max_expires_at FROM sessions WHERE token_hash = ?1",
            )?;
            let row = st
                .query_row([&token_hash[..]], |r| Ok((r.get::<_, i64>(0)?, [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?])))
                .optional()?;
            let Some((user_id, [created_at, last_seen_at, expires_at, max_expires_at])) = row else {
                return Ok(Lookup::Unknown);
            };
            if now >= expires_at {
                return Ok(Lookup::Expired);
            }
            // One snapshot: a session's user is there unless the database is damaged.
            let Some(user) = super::users::user_by_id(c, user_id)? else {
                return Ok(Lookup::Unknown);
            };
            Ok(Lookup::Live(Box::new(SessionInfo { user, created_at, last_seen_at, expires_at, max_expires_at })))
        })
    }

    /// Slides the idle expiry to `now + ttl` (never past the absolute cap); returns the new expiry.
    pub fn touch_session(&self, token_hash: &[u8; 32], now: i64, ttl: i64) -> Result<i64> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE sessions SET last_seen_at = ?2, expires_at = MIN(?2 + ?3, max_expires_at)
                 WHERE token_hash = ?1 AND expires_at > ?2",
            )?
            .execute(params![&token_hash[..], now, ttl])?;
            Ok(tx
                .prepare_cached("SELECT expires_at FROM sessions WHERE token_hash = ?1")?
                .query_row([&token_hash[..]], |r| r.get(0))
                .optional()?
                .unwrap_or(now))
        })
    }

    /// Ends one session; true when there was one.
    pub fn delete_session(&self, token_hash: &[u8; 32]) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM sessions WHERE token_hash = ?1", [&token_hash[..]])? > 0))
    }

    /// Revokes every session of a user, or of everyone; returns how many. The replays
    /// left of their recently used codes are spent in the same transaction: otherwise a
    /// used code would bring a revoked user back for the rest of its window.
    pub fn revoke_sessions(&self, user_id: Option<i64>) -> Result<usize> {
        self.write(|tx| {
            Ok(match user_id {
                Some(id) => {
                    tx.execute("UPDATE used_codes SET replays = ?2 WHERE user_id = ?1", params![id, MAX_CODE_REPLAYS])?;
                    tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?
                }
                None => {
                    tx.execute("UPDATE used_codes SET replays = ?1", [MAX_CODE_REPLAYS])?;
                    tx.execute("DELETE FROM sessions", [])?
                }
            })
        })
    }

    pub fn list_sessions(&self, user_id: i64, now: i64) -> Result<Vec<SessionRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT hex(substr(token_hash, 1, 4)), user_id, created_at, last_seen_at, expires_at
                 FROM sessions WHERE user_id = ?1 AND expires_at > ?2 ORDER BY created_at DESC",
            )?;
            let rows = st.query_map(params![user_id, now], |r| {
                Ok(SessionRow {
                    token_hash_prefix: r.get::<_, String>(0)?.to_lowercase(),
                    user_id: r.get(1)?,
                    created_at: r.get(2)?,
                    last_seen_at: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub fn live_sessions(&self, now: i64) -> Result<i64> {
        self.read(|c| Ok(c.query_row("SELECT count(*) FROM sessions WHERE expires_at > ?1", [now], |r| r.get(0))?))
    }

    /// Deletes long-expired sessions and used-code records older than `code_window`,
    /// in small batches so that no single transaction holds the writer for long.
    pub fn purge(&self, now: i64, code_window: i64) -> Result<usize> {
        let mut total = 0;
        loop {
            let n = self.write(|tx| {
                let a = tx.execute(
                    "DELETE FROM sessions WHERE token_hash IN
                     (SELECT token_hash FROM sessions WHERE expires_at < ?1 LIMIT 500)",
                    [now - KEEP_EXPIRED_SECONDS],
                )?;
                let b = tx.execute(
                    "DELETE FROM used_codes WHERE (app, code_hash) IN
                     (SELECT app, code_hash FROM used_codes WHERE used_at < ?1 LIMIT 500)",
                    [now - code_window.max(300)],
                )?;
                Ok(a + b)
            })?;
            total += n;
            if n == 0 || total > 1_000_000 {
                return Ok(total);
            }
        }
    }
}
