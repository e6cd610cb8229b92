//! What several instances would need to agree on, for the one instance SQLite allows:
//! `serve` holds the file alone (see [`super::ServerLock`]), so the process's own single
//! flights and mutexes already decide, and these grant at once.

use super::{users, Result, Sqlite};
use crate::store::{CodeClaim, Held};

impl Sqlite {
    pub fn claim_code(&self, _app: &str, _code_hash: &[u8; 32], _now: i64, _stale_before: i64) -> Result<CodeClaim> {
        Ok(CodeClaim::Won)
    }

    pub fn code_claim(&self, app: &str, code_hash: &[u8; 32], used_since: i64) -> Result<CodeClaim> {
        let used = self.read(|c| users::used_code(c, app, code_hash, used_since))?;
        Ok(if used.is_some() { CodeClaim::Used } else { CodeClaim::Released })
    }

    pub fn release_code(&self, _app: &str, _code_hash: &[u8; 32]) -> Result<()> {
        Ok(())
    }

    pub fn token_refresh_lock(&self, _app: &str) -> Result<Held> {
        Ok(Held::nothing())
    }

    pub fn try_task_lock(&self, _task: &str) -> Result<Option<Held>> {
        Ok(Some(Held::nothing()))
    }
}
