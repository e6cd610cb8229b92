//! `wxlogin copy-db --from SQLITE_PATH --to postgres://... | --to-file FILE`: moves an
//! installation from its SQLite file into an empty PostgreSQL database, ids and sessions
//! kept, then counts every table on both sides. Exit 0 when every count matches, else 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Args, CliError, Result};
use crate::config::DatabaseConfig;
use crate::secrets::Secret;
use crate::store::{self, ServerLock, Store};

pub fn copy_db(mut args: Args) -> Result<ExitCode> {
    let from = args.path("--from")?.ok_or_else(|| CliError::usage("copy-db needs --from SQLITE_PATH"))?;
    let to = args.value("--to")?;
    let to_file = args.path("--to-file")?;
    args.finish()?;
    let url = target_url(to, to_file)?;
    let shown = store::describe_url(&url).ok_or_else(|| {
        CliError::new("copy-db: the PostgreSQL URL is not valid (postgres://USER@HOST:PORT/DATABASE)")
    })?;

    if !from.is_file() {
        return Err(CliError::new(format!("copy-db: {} does not exist or is not a file", from.display())));
    }
    // Held for the whole copy: a `serve` on the file now would write rows the copy misses.
    let _lock = ServerLock::acquire(&from).map_err(|e| CliError::new(format!("copy-db: not copying: {e}")))?;
    let checked = store::verify(&from).map_err(|e| CliError::new(format!("copy-db: {}: {e}", from.display())))?;

    let db = DatabaseConfig { path: PathBuf::new(), url: Some(url), max_connections: 2 };
    let target = Store::connect(&db).map_err(|e| CliError::new(format!("copy-db: PostgreSQL {shown}: {e}")))?;
    println!(
        "copying {} (schema version {}, {} user(s)) into {} ...",
        from.display(),
        checked.version,
        checked.users,
        target.describe()
    );
    let copied =
        target.copy_from_sqlite(&from).map_err(|e| CliError::new(format!("copy-db: into PostgreSQL {shown}: {e}")))?;
    let mut all_match = true;
    for c in &copied {
        let mark = if c.source == c.target { "" } else { "  MISMATCH" };
        all_match &= c.source == c.target;
        println!("{}: {} copied, {} in PostgreSQL{mark}", c.table, c.source, c.target);
    }
    if !all_match {
        println!("copy-db: the counts differ; do not switch to PostgreSQL {shown} before finding out why");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "copy-db: done, every count verified; set [database] url (or WXLOGIN_DATABASE_URL) to this database \
         and start wxlogin on it. {} was left unchanged.",
        from.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--to URL` or `--to-file FILE` (the URL's first line): a URL on the command line shows
/// in `ps`, so a URL with a password belongs in a file.
fn target_url(to: Option<String>, to_file: Option<PathBuf>) -> Result<Secret> {
    let url = match (to, to_file) {
        (Some(url), None) => url,
        (None, Some(file)) => read_url(&file)?,
        (Some(_), Some(_)) => return Err(CliError::usage("copy-db takes --to URL or --to-file FILE, not both")),
        (None, None) => {
            return Err(CliError::usage("copy-db needs --to postgres://... or --to-file FILE (holding the URL)"))
        }
    };
    crate::config::database::checked("copy-db: the target", url).map_err(|e| CliError::usage(e.to_string()))
}

fn read_url(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::new(format!("copy-db: cannot read --to-file {}: {e}", file.display())))?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}
