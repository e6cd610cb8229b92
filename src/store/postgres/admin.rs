//! What the operator's commands ask of a PostgreSQL database without a pool: where it is
//! (for messages, never with the password) and, for `check`, its schema version and a few
//! counts, read without migrating anything.

use std::str::FromStr;
use std::time::Duration;

use postgres::NoTls;

use super::migrate::SCHEMA_VERSION;
use crate::secrets::Secret;
use crate::store::{PgStatus, PgTarget, Result, StoreError};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The URL parsed, with wxlogin's connect timeout and `application_name` (what
/// `pg_stat_activity` shows) unless the URL sets them. The error names no part of the URL.
pub(super) fn config_of(url: &Secret, application: &str) -> Result<postgres::Config> {
    let mut config = postgres::Config::from_str(url.expose())
        .map_err(|e| StoreError::Unavailable(format!("the database URL is not valid: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name(application);
    }
    Ok(config)
}

/// Where `config` points, minus the password.
pub(super) fn target_of(c: &postgres::Config) -> PgTarget {
    let host = match c.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    PgTarget {
        host,
        port: c.get_ports().first().copied().unwrap_or(5432),
        dbname: c.get_dbname().map(str::to_string),
        user: c.get_user().map(str::to_string),
    }
}

pub fn target(url: &Secret) -> Option<PgTarget> {
    postgres::Config::from_str(url.expose()).ok().map(|c| target_of(&c))
}

/// One connection, read-only questions: `check` must not change the database it checks.
pub fn inspect(url: &Secret) -> Result<PgStatus> {
    let config = config_of(url, "wxlogin check")?;
    let shown = target_of(&config).shown();
    let mut client = config.connect(NoTls)?;
    let mut tx = client.build_transaction().read_only(true).start()?;
    let exists: bool = tx.query_one("SELECT to_regclass('wxlogin_schema') IS NOT NULL", &[])?.get(0);
    let version: i64 =
        if exists { tx.query_one("SELECT coalesce(max(version), 0) FROM wxlogin_schema", &[])?.get(0) } else { 0 };
    if version > SCHEMA_VERSION {
        return Err(StoreError::Newer { found: version, supported: SCHEMA_VERSION });
    }
    let (mut users, mut live_sessions) = (0, 0);
    if version >= 1 {
        users = tx.query_one("SELECT count(*) FROM users", &[])?.get(0);
        live_sessions =
            tx.query_one("SELECT count(*) FROM sessions WHERE expires_at > $1", &[&crate::store::now()])?.get(0);
    }
    tx.commit()?;
    Ok(PgStatus { shown, version, supported: SCHEMA_VERSION, users, live_sessions })
}
