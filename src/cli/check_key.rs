//! `wxlogin users check-key ID`: is a user's stored session_key still valid at WeChat?

use std::process::ExitCode;

use super::{Args, CliError, Result};
use crate::app::App;
use crate::config;

/// `users check-key ID`: asks WeChat (wxa/checksession) whether the session_key stored
/// for user ID is still valid. Prints `valid` (exit 0) or `stale (...)` (exit 1).
pub fn check_key(mut args: Args) -> Result<ExitCode> {
    let path = config::locate(args.path("--config")?.as_deref());
    let id = args.positional().ok_or_else(|| CliError::usage("`users check-key` needs a user ID"))?;
    let id: i64 = id.parse().map_err(|_| CliError::usage(format!("the user ID must be a number, not `{id}`")))?;
    args.finish()?;
    let config = config::load(&path)?;
    if config.database.url.is_none() && !config.database.path.exists() {
        return Err(CliError::new(format!(
            "no database at {} (has the server ever run?)",
            config.database.path.display()
        )));
    }
    let app = App::open(config)?;
    let user = app.store.user(id)?.ok_or_else(|| CliError::new(format!("no user with ID {id}")))?;
    let key = app
        .store
        .session_key(id)?
        .ok_or_else(|| CliError::new(format!("user {id} has no session_key stored; they must log in first")))?;
    match app.tokens.check_session_key(&user.app, &user.openid, &key) {
        Ok(true) => {
            println!("valid");
            Ok(ExitCode::SUCCESS)
        }
        Ok(false) => {
            println!("stale (WeChat answered 87009: the user must wx.login again)");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(CliError::new(format!("could not check user {id}'s session_key: {e}"))),
    }
}
