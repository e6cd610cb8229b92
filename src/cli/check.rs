//! `wxlogin check`: is the configuration valid and the database usable? Exit 0 or 1.

use std::process::ExitCode;

use super::{Args, CliError, Result};
use crate::config;
use crate::store::{self, SCHEMA_VERSION};

pub fn check(mut args: Args) -> Result<ExitCode> {
    let path = config::locate(args.path("--config")?.as_deref());
    args.finish()?;
    let config = config::load(&path)?;
    println!("config: {} is valid ({} app(s): {})", path.display(), config.apps.len(), app_names(&config));
    let db = &config.database.path;
    match store::inspect(db)? {
        None => println!("database: {} does not exist yet; it will be created on first start", db.display()),
        Some(i) if i.version > SCHEMA_VERSION => {
            return Err(CliError::new(format!(
                "database: {} has schema version {}, newer than this wxlogin's {SCHEMA_VERSION}: it was written by a newer wxlogin",
                db.display(),
                i.version
            )))
        }
        Some(i) if i.quick_check != "ok" => {
            return Err(CliError::new(format!("database: {} is damaged: {}", db.display(), i.quick_check)))
        }
        Some(i) => {
            let upgrade = if i.version < SCHEMA_VERSION {
                format!(" (will be upgraded to version {SCHEMA_VERSION} on start)")
            } else {
                String::new()
            };
            println!(
                "database: {} is healthy, schema version {}{upgrade}, {} user(s), {} live session(s)",
                db.display(),
                i.version,
                i.users,
                i.live_sessions
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn app_names(c: &config::Config) -> String {
    c.apps.iter().map(|a| format!("{} ({})", a.name, a.appid)).collect::<Vec<_>>().join(", ")
}
