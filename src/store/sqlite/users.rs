//! Users, keyed by (app, openid), and the login transaction that creates them.

use std::net::IpAddr;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{sessions, Result, Sqlite};
use crate::secrets::Secret;

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub app: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub nickname: Option<String>,
    pub avatar_url: Option<String>,
    pub gender: Option<i64>,
    pub phone_number: Option<String>,
    pub country_code: Option<String>,
    pub created_at: i64,
    pub last_login_at: i64,
}

/// The User columns, as a macro so that queries can be built with `concat!` at compile
/// time (the verify path should not format SQL on every request).
macro_rules! user_columns {
    () => {
        "id, app, openid, unionid, nickname, avatar_url, gender, phone_number, country_code, created_at, last_login_at"
    };
}

pub(super) fn user_from_row(r: &Row, at: usize) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(at)?,
        app: r.get(at + 1)?,
        openid: r.get(at + 2)?,
        unionid: r.get(at + 3)?,
        nickname: r.get(at + 4)?,
        avatar_url: r.get(at + 5)?,
        gender: r.get(at + 6)?,
        phone_number: r.get(at + 7)?,
        country_code: r.get(at + 8)?,
        created_at: r.get(at + 9)?,
        last_login_at: r.get(at + 10)?,
    })
}

/// What a successful code exchange brings to the database.
pub struct NewLogin<'a> {
    pub app: &'a str,
    pub openid: &'a str,
    pub unionid: Option<&'a str>,
    pub session_key: &'a Secret,
    pub code_hash: [u8; 32],
    pub token_hash: [u8; 32],
    pub terms: Terms,
    /// Who exchanged the code: the only caller its replays will answer.
    pub caller: Caller,
}

/// A login's caller, as far as replays of its code are concerned. With a key, only the
/// same key replays (a client behind a changing address still gets its answer); without
/// one, only the same client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// SHA-256 of the request's `Idempotency-Key`, when it sent one.
    pub key_hash: Option<[u8; 32]>,
    pub ip: IpAddr,
}

/// Replays answered per used code, at most: enough for a client that lost an answer or
/// two, too few for a used code to be worth stealing.
pub const MAX_CODE_REPLAYS: i64 = 3;

/// What a retried code gets (`T`: what a replay brings; the API layer adds the token).
#[derive(Debug)]
pub enum Replay<T = LoginOutcome> {
    /// No successful exchange of the code inside the window: WeChat decides.
    NotFound,
    /// There was one, but not for this caller, or its replays are spent (also by revoking
    /// the user's sessions): to be answered as WeChat's 40163 would be.
    Refused,
    /// A new session for the code's user.
    Answered(T),
}

/// When a new session starts and how long it may live.
#[derive(Debug, Clone, Copy)]
pub struct Terms {
    pub now: i64,
    /// Idle lifetime.
    pub ttl: i64,
    /// Absolute lifetime from login.
    pub max_lifetime: i64,
    /// Sessions a user may hold; a new one beyond it ends the least recently used.
    pub max_per_user: i64,
}

#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub user: User,
    pub new_user: bool,
    pub expires_at: i64,
}

impl Sqlite {
    /// Upserts the user (newest session_key wins, unionid kept), records the used code
    /// for the replay window and issues the session, all in one transaction: a crash
    /// leaves either all of it or none. Concurrent logins share a transaction (see
    /// `group_commit`), each in a savepoint of its own.
    pub fn record_login(&self, l: &NewLogin) -> Result<LoginOutcome> {
        self.commit_login(l)
    }
    /// A code exchanged successfully within `window` seconds: issue another session for
    /// the same user instead of asking WeChat again (which would answer 40163), if
    /// `caller` is the code's first caller and it has replays left.
    /// `new_token_hash` makes the session's token, only when there is a replay.
    pub fn replay_login(
        &self,
        app: &str,
        code_hash: &[u8; 32],
        caller: &Caller,
        window: i64,
        terms: &Terms,
        new_token_hash: &mut dyn FnMut() -> [u8; 32],
    ) -> Result<Replay> {
        let now = terms.now;
        // Nearly every login brings a fresh code: look on a reader first, so that those
        // do not take the writer (measured: a tenth of a login's CPU went to an empty
        // write transaction). The writer looks again, as the truth.
        if self.read(|c| used_code(c, app, code_hash, now - window))?.is_none() {
            return Ok(Replay::NotFound);
        }
        self.write(|tx| {
            let Some((user_id, new_user)) = spend_replay(tx, app, code_hash, caller, now - window)? else {
                return Ok(Replay::Refused);
            };
            let expires_at = sessions::insert(tx, &new_token_hash(), user_id, terms)?;
            count_logins(tx, app, now, 1)?;
            let user = user_by_id(tx, user_id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            Ok(Replay::Answered(LoginOutcome { user, new_user, expires_at }))
        })
    }

    pub fn user(&self, id: i64) -> Result<Option<User>> {
        self.read(|c| user_by_id(c, id))
    }

    pub fn user_by_openid(&self, openid: &str) -> Result<Vec<User>> {
        self.read(|c| {
            let mut st =
                c.prepare_cached(concat!("SELECT ", user_columns!(), " FROM users WHERE openid = ?1 ORDER BY id"))?;
            let rows = st.query_map([openid], |r| user_from_row(r, 0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub fn list_users(&self, app: Option<&str>, limit: i64) -> Result<Vec<User>> {
        self.read(|c| {
            let mut st = c.prepare_cached(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE (?1 IS NULL OR app = ?1) ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = st.query_map(params![app, limit], |r| user_from_row(r, 0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// The user's current WeChat session_key, for decrypting open data server-side.
    pub fn session_key(&self, user_id: i64) -> Result<Option<Secret>> {
        self.read(|c| {
            let key: Option<Option<String>> =
                c.query_row("SELECT session_key FROM users WHERE id = ?1", [user_id], |r| r.get(0)).optional()?;
            Ok(key.flatten().map(Secret::new))
        })
    }

    /// Sets the fields given (None leaves a field alone) and returns the updated user.
    pub fn update_profile(
        &self,
        user_id: i64,
        nickname: Option<&str>,
        avatar_url: Option<&str>,
        gender: Option<i64>,
    ) -> Result<Option<User>> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE users SET nickname = COALESCE(?2, nickname), avatar_url = COALESCE(?3, avatar_url),
                        gender = COALESCE(?4, gender) WHERE id = ?1",
            )?
            .execute(params![user_id, nickname, avatar_url, gender])?;
            user_by_id(tx, user_id)
        })
    }

    pub fn update_phone(&self, user_id: i64, phone_number: &str, country_code: Option<&str>) -> Result<Option<User>> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE users SET phone_number = ?2, country_code = COALESCE(?3, country_code) WHERE id = ?1",
            )?
            .execute(params![user_id, phone_number, country_code])?;
            user_by_id(tx, user_id)
        })
    }
}

/// One login's writes, on the writer inside an open transaction.
pub(super) fn write_login(tx: &Connection, l: &NewLogin) -> Result<LoginOutcome> {
    let now = l.terms.now;
    let key = l.session_key.expose();
    let existing: Option<(i64, Option<String>)> = tx
        .prepare_cached("SELECT id, unionid FROM users WHERE app = ?1 AND openid = ?2")?
        .query_row(params![l.app, l.openid], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let new_user = existing.is_none();
    let user = match existing {
        // The unionid is set only when it changes: naming it in the UPDATE would rewrite
        // its index entry (one more page in the WAL) on every login that carries it.
        Some((id, known)) if l.unionid.is_some() && l.unionid != known.as_deref() => tx
            .prepare_cached(concat!(
                "UPDATE users SET session_key = ?2, session_key_at = ?3, last_login_at = ?3, unionid = ?4
                 WHERE id = ?1 RETURNING ",
                user_columns!()
            ))?
            .query_row(params![id, key, now, l.unionid], |r| user_from_row(r, 0))?,
        Some((id, _)) => tx
            .prepare_cached(concat!(
                "UPDATE users SET session_key = ?2, session_key_at = ?3, last_login_at = ?3 WHERE id = ?1 RETURNING ",
                user_columns!()
            ))?
            .query_row(params![id, key, now], |r| user_from_row(r, 0))?,
        None => tx
            .prepare_cached(concat!(
                "INSERT INTO users (app, openid, unionid, session_key, session_key_at, created_at, last_login_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5) RETURNING ",
                user_columns!()
            ))?
            .query_row(params![l.app, l.openid, l.unionid, key, now], |r| user_from_row(r, 0))?,
    };
    tx.prepare_cached(
        "INSERT OR REPLACE INTO used_codes (app, code_hash, user_id, new_user, used_at, key_hash, client_ip, replays)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
    )?
    .execute(params![
        l.app,
        &l.code_hash[..],
        user.id,
        new_user,
        now,
        l.caller.key_hash.as_ref().map(|k| &k[..]),
        l.caller.ip.to_string()
    ])?;
    let expires_at = sessions::insert(tx, &l.token_hash, user.id, &l.terms)?;
    Ok(LoginOutcome { user, new_user, expires_at })
}

pub(super) fn used_code(c: &Connection, app: &str, code_hash: &[u8; 32], since: i64) -> Result<Option<(i64, bool)>> {
    Ok(c.prepare_cached("SELECT user_id, new_user FROM used_codes WHERE app = ?1 AND code_hash = ?2 AND used_at > ?3")?
        .query_row(params![app, &code_hash[..], since], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Counts one replay of the code for `caller`, in the write transaction and only while
/// fewer than [`MAX_CODE_REPLAYS`] have been answered, so that concurrent replays cannot
/// overspend it; None when it is not this caller's or has none left.
fn spend_replay(
    tx: &Connection,
    app: &str,
    code_hash: &[u8; 32],
    caller: &Caller,
    since: i64,
) -> Result<Option<(i64, bool)>> {
    Ok(tx
        .prepare_cached(
            "UPDATE used_codes SET replays = replays + 1
             WHERE app = ?1 AND code_hash = ?2 AND used_at > ?3 AND replays < ?4
               AND CASE WHEN key_hash IS NULL THEN client_ip = ?6 ELSE key_hash = ?5 END
             RETURNING user_id, new_user",
        )?
        .query_row(
            params![
                app,
                &code_hash[..],
                since,
                MAX_CODE_REPLAYS,
                caller.key_hash.as_ref().map(|k| &k[..]),
                caller.ip.to_string()
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

pub(super) fn user_by_id(c: &Connection, id: i64) -> Result<Option<User>> {
    let mut st = c.prepare_cached(concat!("SELECT ", user_columns!(), " FROM users WHERE id = ?1"))?;
    Ok(st.query_row([id], |r| user_from_row(r, 0)).optional()?)
}

/// Adds `n` logins to the app's count for the UTC day of `now`.
pub(super) fn count_logins(tx: &Connection, app: &str, now: i64, n: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO login_days (app, day, logins) VALUES (?1, date(?2, 'unixepoch'), ?3)
         ON CONFLICT (app, day) DO UPDATE SET logins = logins + ?3",
    )?
    .execute(params![app, now, n])?;
    Ok(())
}
