//! `[database]`: a SQLite file (`path`, the default) or a PostgreSQL URL (`url`, or
//! `WXLOGIN_DATABASE_URL` / `WXLOGIN_DATABASE_URL_FILE` when the file gives neither).
//!
//! A URL may hold a password, so it is a [`Secret`]: no error here quotes it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::secrets::Secret;

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The SQLite file (unused when `url` is set).
    pub path: PathBuf,
    /// A `postgres://` URL: the database is PostgreSQL, shared by several instances.
    pub url: Option<Secret>,
    /// Connections each instance keeps to PostgreSQL, at most.
    pub max_connections: u32,
}

pub const DEFAULT_PATH: &str = "data/wxlogin.db";
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { path: PathBuf::from(DEFAULT_PATH), url: None, max_connections: DEFAULT_MAX_CONNECTIONS }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDatabase {
    path: Option<PathBuf>,
    url: Option<String>,
    max_connections: Option<u32>,
}

/// The file's `[database]`, with the environment when the file names no database.
pub(super) fn resolve(
    raw: RawDatabase,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    secret_files: &mut Vec<PathBuf>,
) -> Result<DatabaseConfig, ConfigError> {
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    // A token refresh or a maintenance pass holds one connection for its lock while it
    // writes on another: fewer than 4 could leave requests waiting on those.
    if !(4..=1000).contains(&max_connections) {
        return Err(ConfigError::new("database.max_connections", "must be between 4 and 1000"));
    }
    let (path, url) = match (raw.path, raw.url) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "database",
                "`path` (a SQLite file) and `url` (PostgreSQL) are both set; keep the one this instance should use",
            ))
        }
        (Some(path), None) => (path, None),
        (None, Some(url)) => (PathBuf::from(DEFAULT_PATH), Some(checked("database.url", url)?)),
        (None, None) => (PathBuf::from(DEFAULT_PATH), url_from_env(base, env, secret_files)?),
    };
    let path = if path.is_relative() { base.join(path) } else { path };
    if path.as_os_str().is_empty() {
        return Err(ConfigError::new("database.path", "must not be empty"));
    }
    Ok(DatabaseConfig { path, url, max_connections })
}

fn url_from_env(
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    secret_files: &mut Vec<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(url) = env("WXLOGIN_DATABASE_URL").filter(|u| !u.is_empty()) {
        return checked("WXLOGIN_DATABASE_URL", url).map(Some);
    }
    let Some(file) = env("WXLOGIN_DATABASE_URL_FILE").filter(|f| !f.is_empty()) else { return Ok(None) };
    let path = base.join(&file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigError::new("WXLOGIN_DATABASE_URL_FILE", format!("cannot read {}: {e}", super::pay::shown(&path)))
    })?;
    secret_files.push(path);
    checked("WXLOGIN_DATABASE_URL_FILE", text.trim().to_string()).map(Some)
}

/// Only the scheme is checked here (the rest is PostgreSQL's to judge when connecting),
/// and the message never repeats the URL: it may carry a password.
pub(crate) fn checked(key: &str, url: String) -> Result<Secret, ConfigError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Secret::new(url))
    } else {
        Err(ConfigError::new(key, "must be a PostgreSQL URL: postgres://USER:PASSWORD@HOST:PORT/DATABASE"))
    }
}
