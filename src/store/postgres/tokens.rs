//! Each app's WeChat access token, shared by every instance. Replaced or forgotten only
//! by compare-then-write, so that an instance acting on an old token cannot undo a
//! newer one another instance saved.

use super::Postgres;
use crate::secrets::Secret;
use crate::store::tokens::StoredToken;
use crate::store::Result;

impl Postgres {
    pub fn load_access_token(&self, app: &str) -> Result<Option<StoredToken>> {
        let row = self
            .conn()?
            .query_opt("SELECT token, expires_at, fetched_at FROM access_tokens WHERE app = $1", &[&app])?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(StoredToken {
            token: Secret::new(r.try_get::<_, String>(0)?),
            expires_at: r.try_get(1)?,
            fetched_at: r.try_get(2)?,
        }))
    }

    /// A token fetched earlier than the one stored does not replace it.
    pub fn save_access_token(&self, app: &str, t: &StoredToken) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO access_tokens (app, token, expires_at, fetched_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (app) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at,
                                             fetched_at = excluded.fetched_at
             WHERE access_tokens.fetched_at <= excluded.fetched_at",
            &[&app, &t.token.expose(), &t.expires_at, &t.fetched_at],
        )?;
        Ok(())
    }

    pub fn clear_access_token(&self, app: &str, token: &str) -> Result<()> {
        self.conn()?.execute("DELETE FROM access_tokens WHERE app = $1 AND token = $2", &[&app, &token])?;
        Ok(())
    }
}
