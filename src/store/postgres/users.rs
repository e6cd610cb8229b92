//! Users and the login transaction, shared by every instance.
//!
//! A login takes the user's row lock (its UPDATE or INSERT) before it writes the session,
//! and a replay takes it too: two logins of one user on two instances are serialized, so
//! the cap on a user's sessions counts the other's new session.

use postgres::Row;

use super::{sessions, Postgres, Tx};
use crate::secrets::Secret;
use crate::store::{Caller, LoginOutcome, NewLogin, Replay, Result, StoreError, Terms, User, MAX_CODE_REPLAYS};

/// The User columns (as `concat!` pieces: statements are prepared once per connection).
macro_rules! user_columns {
    () => {
        "id, app, openid, unionid, nickname, avatar_url, gender, phone_number, country_code, created_at, last_login_at"
    };
}

pub(super) fn user_from_row(r: &Row, at: usize) -> Result<User> {
    Ok(User {
        id: r.try_get(at)?,
        app: r.try_get(at + 1)?,
        openid: r.try_get(at + 2)?,
        unionid: r.try_get(at + 3)?,
        nickname: r.try_get(at + 4)?,
        avatar_url: r.try_get(at + 5)?,
        gender: r.try_get(at + 6)?,
        phone_number: r.try_get(at + 7)?,
        country_code: r.try_get(at + 8)?,
        created_at: r.try_get(at + 9)?,
        last_login_at: r.try_get(at + 10)?,
    })
}

impl Postgres {
    /// Upserts the user (newest session_key wins, unionid kept once set), records the
    /// used code for the replay window and issues the session, in one transaction. The
    /// code's claim (`code_claims`) stays: the login layer relies on it for the window.
    pub fn record_login(&self, l: &NewLogin) -> Result<LoginOutcome> {
        self.tx(|tx| {
            let (user, new_user) = upsert_user(tx, l)?;
            let key_hash = l.caller.key_hash.as_ref().map(|k| &k[..]);
            tx.execute(
                "INSERT INTO used_codes (app, code_hash, user_id, new_user, used_at, key_hash, client_ip, replays)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0)
                 ON CONFLICT (app, code_hash) DO UPDATE SET
                     user_id = excluded.user_id, new_user = excluded.new_user, used_at = excluded.used_at,
                     key_hash = excluded.key_hash, client_ip = excluded.client_ip, replays = 0",
                &[
                    &l.app,
                    &&l.code_hash[..],
                    &user.id,
                    &i64::from(new_user),
                    &l.terms.now,
                    &key_hash,
                    &l.caller.ip.to_string(),
                ],
            )?;
            let expires_at = sessions::insert(tx, &l.token_hash, user.id, &l.terms)?;
            Ok(LoginOutcome { user, new_user, expires_at })
        })
        .inspect(|_| self.count_login(l.app, l.terms.now))
    }

    /// A code exchanged successfully within `window` seconds: another session for the
    /// same user, if `caller` is the code's first caller and it has replays left. The
    /// count is spent by one conditional UPDATE, so instances replaying at once cannot
    /// overspend it.
    pub fn replay_login(
        &self,
        app: &str,
        code_hash: &[u8; 32],
        caller: &Caller,
        window: i64,
        terms: &Terms,
        new_token_hash: &mut dyn FnMut() -> [u8; 32],
    ) -> Result<Replay> {
        let since = terms.now - window;
        // Nearly every login brings a fresh code: a plain read answers those without a
        // transaction.
        let used = self.conn()?.query_opt(
            "SELECT 1 FROM used_codes WHERE app = $1 AND code_hash = $2 AND used_at > $3",
            &[&app, &&code_hash[..], &since],
        )?;
        if used.is_none() {
            return Ok(Replay::NotFound);
        }
        let key_hash = caller.key_hash.as_ref().map(|k| &k[..]);
        let ip = caller.ip.to_string();
        self.tx(|tx| {
            // With a key recorded, only that key replays; without one, only the same IP.
            let spent = tx.query_opt(
                "UPDATE used_codes SET replays = replays + 1
                 WHERE app = $1 AND code_hash = $2 AND used_at > $3 AND replays < $4
                   AND CASE WHEN key_hash IS NULL THEN client_ip = $6 ELSE key_hash = $5 END
                 RETURNING user_id, new_user",
                &[&app, &&code_hash[..], &since, &MAX_CODE_REPLAYS, &key_hash, &ip],
            )?;
            let Some(spent) = spent else { return Ok(Replay::Refused) };
            let (user_id, new_user): (i64, i64) = (spent.try_get(0)?, spent.try_get(1)?);
            let row = tx.query_opt(
                concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1 FOR NO KEY UPDATE"),
                &[&user_id],
            )?;
            // The foreign key's cascade removes a deleted user's codes with it.
            let user = row
                .map(|r| user_from_row(&r, 0))
                .transpose()?
                .ok_or_else(|| StoreError::Postgres("a used code names a user who does not exist".into()))?;
            let expires_at = sessions::insert(tx, &new_token_hash(), user_id, terms)?;
            Ok(Replay::Answered(LoginOutcome { user, new_user: new_user != 0, expires_at }))
        })
        .inspect(|r| {
            if matches!(r, Replay::Answered(_)) {
                self.count_login(app, terms.now)
            }
        })
    }

    pub fn user(&self, id: i64) -> Result<Option<User>> {
        let row = self.conn()?.query_opt(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"), &[&id])?;
        row.map(|r| user_from_row(&r, 0)).transpose()
    }

    pub fn user_by_openid(&self, openid: &str) -> Result<Vec<User>> {
        let rows = self
            .conn()?
            .query(concat!("SELECT ", user_columns!(), " FROM users WHERE openid = $1 ORDER BY id"), &[&openid])?;
        rows.iter().map(|r| user_from_row(r, 0)).collect()
    }

    /// A negative `limit` is no limit, as SQLite reads it.
    pub fn list_users(&self, app: Option<&str>, limit: i64) -> Result<Vec<User>> {
        let rows = self.conn()?.query(
            concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE ($1::TEXT IS NULL OR app = $1) ORDER BY id DESC
                 LIMIT CASE WHEN $2::BIGINT < 0 THEN NULL ELSE $2::BIGINT END"
            ),
            &[&app, &limit],
        )?;
        rows.iter().map(|r| user_from_row(r, 0)).collect()
    }

    /// The user's current WeChat session_key, for decrypting open data server-side.
    pub fn session_key(&self, user_id: i64) -> Result<Option<Secret>> {
        let row = self.conn()?.query_opt("SELECT session_key FROM users WHERE id = $1", &[&user_id])?;
        Ok(row.map(|r| r.try_get::<_, Option<String>>(0)).transpose()?.flatten().map(Secret::new))
    }

    /// Sets the fields given (None leaves a field alone) and returns the updated user.
    pub fn update_profile(
        &self,
        user_id: i64,
        nickname: Option<&str>,
        avatar_url: Option<&str>,
        gender: Option<i64>,
    ) -> Result<Option<User>> {
        let row = self.conn()?.query_opt(
            concat!(
                "UPDATE users SET nickname = COALESCE($2, nickname), avatar_url = COALESCE($3, avatar_url),
                        gender = COALESCE($4, gender) WHERE id = $1 RETURNING ",
                user_columns!()
            ),
            &[&user_id, &nickname, &avatar_url, &gender],
        )?;
        row.map(|r| user_from_row(&r, 0)).transpose()
    }

    pub fn update_phone(&self, user_id: i64, phone_number: &str, country_code: Option<&str>) -> Result<Option<User>> {
        let row = self.conn()?.query_opt(
            concat!(
                "UPDATE users SET phone_number = $2, country_code = COALESCE($3, country_code) WHERE id = $1 RETURNING ",
                user_columns!()
            ),
            &[&user_id, &phone_number, &country_code],
        )?;
        row.map(|r| user_from_row(&r, 0)).transpose()
    }
}

/// The login's user, updated or created, and whether it was created. A returning user
/// (nearly every login) is one UPDATE; the INSERT after a miss still says ON CONFLICT,
/// for a first login of the same user on another instance at the same moment. (An
/// upsert alone would spend an id from the sequence on every returning login.)
fn upsert_user(tx: &mut Tx, l: &NewLogin) -> Result<(User, bool)> {
    let key = l.session_key.expose();
    let now = l.terms.now;
    let updated = tx.query_opt(
        concat!(
            "UPDATE users SET session_key = $3, session_key_at = $4, last_login_at = $4,
                    unionid = COALESCE($5, unionid)
             WHERE app = $1 AND openid = $2 RETURNING ",
            user_columns!()
        ),
        &[&l.app, &l.openid, &key, &now, &l.unionid],
    )?;
    if let Some(row) = updated {
        return Ok((user_from_row(&row, 0)?, false));
    }
    let row = tx.query_one(
        concat!(
            "INSERT INTO users (app, openid, unionid, session_key, session_key_at, created_at, last_login_at)
             VALUES ($1, $2, $3, $4, $5, $5, $5)
             ON CONFLICT (app, openid) DO UPDATE SET
                 session_key = excluded.session_key, session_key_at = excluded.session_key_at,
                 last_login_at = excluded.last_login_at, unionid = COALESCE(excluded.unionid, users.unionid)
             RETURNING (xmax = 0), ",
            user_columns!()
        ),
        &[&l.app, &l.openid, &l.unionid, &key, &now],
    )?;
    Ok((user_from_row(&row, 1)?, row.try_get(0)?))
}

/// `YYYY-MM-DD` of the UTC day of `now`, as SQLite's `date(now, 'unixepoch')` writes it.
pub(super) fn utc_day(now: i64) -> String {
    let (y, m, d) = crate::civil::civil_from_days(now.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_written_as_sqlite_writes_them() {
        assert_eq!(super::utc_day(0), "1970-01-01");
        assert_eq!(super::utc_day(86_399), "1970-01-01");
        assert_eq!(super::utc_day(1_709_164_800), "2024-02-29");
        assert_eq!(super::utc_day(-1), "1969-12-31");
    }
}
