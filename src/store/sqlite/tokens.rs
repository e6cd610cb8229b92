//! Each app's WeChat access token, persisted so that a restart reuses a valid one
//! instead of spending the daily quota.

use rusqlite::{params, OptionalExtension};

use super::{Result, Sqlite};
use crate::secrets::Secret;

#[derive(Debug, Clone)]
pub struct StoredToken {
    pub token: Secret,
    pub expires_at: i64,
    pub fetched_at: i64,
}

impl Sqlite {
    pub fn load_access_token(&self, app: &str) -> Result<Option<StoredToken>> {
        self.read(|c| {
            Ok(c.query_row("SELECT token, expires_at, fetched_at FROM access_tokens WHERE app = ?1", [app], |r| {
                Ok(StoredToken {
                    token: Secret::new(r.get::<_, String>(0)?),
                    expires_at: r.get(1)?,
                    fetched_at: r.get(2)?,
                })
            })
            .optional()?)
        })
    }

    pub fn save_access_token(&self, app: &str, t: &StoredToken) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO access_tokens (app, token, expires_at, fetched_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (app) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at,
                                                 fetched_at = excluded.fetched_at",
                params![app, t.token.expose(), t.expires_at, t.fetched_at],
            )?;
            Ok(())
        })
    }

    pub fn clear_access_token(&self, app: &str, token: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM access_tokens WHERE app = ?1 AND token = ?2", [app, token])?;
            Ok(())
        })
    }
}
