//! The operator's commands on either engine: moving a SQLite installation into
//! PostgreSQL (`wxlogin copy-db`), and what `check`, `backup` and `restore` need to know
//! about a PostgreSQL database without opening a pool on it (and so without migrating it).

use std::path::Path;

use super::{Result, Store, StoreError};
use crate::secrets::Secret;

/// One table's rows: how many the SQLite snapshot held and how many PostgreSQL holds
/// after the commit, counted again (so a silent loss cannot pass as a success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub table: &'static str,
    pub source: i64,
    pub target: i64,
}

/// What `wxlogin check` reports of a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStatus {
    /// host:port/database (never a user or password).
    pub shown: String,
    /// 0 when wxlogin has never migrated it (`serve` will).
    pub version: i64,
    pub supported: i64,
    pub users: i64,
    pub live_sessions: i64,
}

impl Store {
    /// Copies every row of the SQLite database at `from` into this PostgreSQL database,
    /// ids and session hashes as they are, in one PostgreSQL transaction read from one
    /// SQLite snapshot; refused when any wxlogin table here has a row. Returns the counts
    /// of both sides, read after the commit.
    pub fn copy_from_sqlite(&self, from: &Path) -> Result<Vec<Copied>> {
        match &self.engine {
            #[cfg(feature = "postgres")]
            super::Engine::Postgres(p) => p.copy_from_sqlite(from),
            super::Engine::Sqlite(_) => {
                let _ = from;
                Err(StoreError::Refused("copy-db writes into PostgreSQL only".into()))
            }
        }
    }
}

/// host:port/database of a PostgreSQL URL, without its user and password; None when it
/// does not parse.
pub fn describe_url(url: &Secret) -> Option<String> {
    pg_target(url).map(|t| t.shown())
}

/// Where a PostgreSQL URL points, in parts (for the `pg_dump` lines `backup` prints);
/// None when it does not parse.
pub fn pg_target(url: &Secret) -> Option<PgTarget> {
    #[cfg(feature = "postgres")]
    return super::postgres::admin::target(url);
    #[cfg(not(feature = "postgres"))]
    {
        let _ = url;
        None
    }
}

/// A PostgreSQL URL minus its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// A host name or address, or a Unix socket's folder.
    pub host: String,
    pub port: u16,
    pub dbname: Option<String>,
    pub user: Option<String>,
}

impl PgTarget {
    /// host:port/database, for logs and messages.
    pub fn shown(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname.as_deref().unwrap_or("(default database)"))
    }
}

/// Connects once (no pool, no migration), reads the schema version and a few counts.
pub fn inspect_postgres(url: &Secret) -> Result<PgStatus> {
    #[cfg(feature = "postgres")]
    return super::postgres::admin::inspect(url);
    #[cfg(not(feature = "postgres"))]
    {
        let _ = url;
        Err(StoreError::Unavailable("this wxlogin was built without the `postgres` feature".into()))
    }
}
