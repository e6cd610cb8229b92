//! `wxlogin backup` and `wxlogin restore`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Args, CliError, Result};
use crate::config;
use crate::secrets::Secret;
use crate::store::{self, ServerLock, SCHEMA_VERSION};

/// A consistent, verified copy of the live database, safe while the server runs and
/// writes: `VACUUM INTO` a temporary file next to DEST, `integrity_check` and the schema
/// version on that file, fsync, then rename to DEST. DEST is never overwritten without
/// `--force`, and is never left half-written.
pub fn backup(mut args: Args) -> Result<ExitCode> {
    let path = config::locate(args.path("--config")?.as_deref());
    let force = args.switch("--force");
    let dest = args.positional().map(PathBuf::from);
    args.finish()?;
    let config = config::load_for_admin(&path)?;
    if let Some(url) = &config.database.url {
        return Ok(postgres_instead(url, Tool::Dump, dest.as_deref()));
    }
    let dest = dest.ok_or_else(|| CliError::usage("backup needs DEST, a file path"))?;
    let db = &config.database.path;
    if !db.is_file() {
        return Err(CliError::new(format!("no database at {} (has the server ever run?)", db.display())));
    }
    if same_file_family(db, &dest) {
        return Err(CliError::new(format!(
            "{} is the live database (or one of its files); pick another DEST",
            dest.display()
        )));
    }
    if dest.is_dir() {
        return Err(CliError::new(format!(
            "{} is a folder; give a file name, e.g. {}/wxlogin.db",
            dest.display(),
            dest.display()
        )));
    }
    if dest.exists() && !force {
        return Err(CliError::new(format!("{} already exists; pass --force to replace it", dest.display())));
    }
    let tmp = temp_next_to(&dest, "backup")?;
    let result = (|| -> Result<store::Verified> {
        let version =
            store::vacuum_into(db, &tmp).map_err(|e| CliError::new(format!("backup of {}: {e}", db.display())))?;
        let v = store::verify(&tmp).map_err(|e| CliError::new(format!("the copy failed verification: {e}")))?;
        if v.version != version {
            return Err(CliError::new(format!(
                "the copy has schema version {}, the database {version}; not keeping it",
                v.version
            )));
        }
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &dest)?;
        sync_dir(&dest);
        Ok(v)
    })();
    let v = result.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup: {} ({size} bytes, schema version {}, {} user(s), {} live session(s)); integrity_check ok",
        dest.display(),
        v.version,
        v.users,
        v.live_sessions
    );
    Ok(ExitCode::SUCCESS)
}

/// Puts a backup in place of the database. Refuses while a server holds the database
/// (see [`ServerLock`]); holds that lock itself meanwhile, so no server can start
/// half-way. The old database is kept as `<db>.before-restore-<unix time>`.
pub fn restore(mut args: Args) -> Result<ExitCode> {
    let path = config::locate(args.path("--config")?.as_deref());
    let src = args.positional().map(PathBuf::from);
    args.finish()?;
    let config = config::load_for_admin(&path)?;
    if let Some(url) = &config.database.url {
        return Ok(postgres_instead(url, Tool::Restore, src.as_deref()));
    }
    let src = src.ok_or_else(|| CliError::usage("restore needs SRC, a backup file"))?;
    let db = config.database.path.clone();
    if same_file_family(&db, &src) {
        return Err(CliError::new(format!("{} is the live database itself", src.display())));
    }
    let checked = store::verify(&src).map_err(|e| CliError::new(format!("{}: not restoring: {e}", src.display())))?;
    let _lock = ServerLock::acquire(&db).map_err(|e| CliError::new(format!("not restoring: {e}")))?;

    // Copy through SQLite rather than the file system, so that a source left in WAL mode
    // with a -wal beside it still comes across whole; then check what was written.
    let tmp = temp_next_to(&db, "restore")?;
    let result = (|| -> Result<()> {
        store::vacuum_into(&src, &tmp)?;
        let v = store::verify(&tmp)?;
        if v.version != checked.version || v.users != checked.users {
            return Err(CliError::new("the copy of the backup differs from the backup; not restoring"));
        }
        File::open(&tmp)?.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }

    let mut kept = None;
    if db.exists() {
        // Fold the old database's WAL into it (closing the last connection does that), so
        // the kept file is complete, and so no -wal can be replayed onto the restored one.
        if let Ok(conn) = rusqlite::Connection::open(&db) {
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        let aside = with_suffix(&db, &format!(".before-restore-{}", store::now()));
        std::fs::rename(&db, &aside)?;
        // It holds session keys too; an older wxlogin may have left it open to others.
        let _ = crate::files::tighten(&aside);
        kept = Some(aside);
    }
    for stale in [with_suffix(&db, "-wal"), with_suffix(&db, "-shm"), with_suffix(&db, "-journal")] {
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::new(format!("cannot remove the stale {}: {e}", stale.display()))),
        }
    }
    std::fs::rename(&tmp, &db)?;
    sync_dir(&db);
    let upgrade = if checked.version < SCHEMA_VERSION {
        format!("; it will be upgraded to schema version {SCHEMA_VERSION} when the server starts")
    } else {
        String::new()
    };
    println!(
        "restored {} to {} (schema version {}, {} user(s), {} live session(s)){upgrade}",
        src.display(),
        db.display(),
        checked.version,
        checked.users,
        checked.live_sessions
    );
    if let Some(k) = kept {
        println!("the previous database was kept as {}", k.display());
    }
    Ok(ExitCode::SUCCESS)
}

enum Tool {
    Dump,
    Restore,
}

/// On PostgreSQL, backups are PostgreSQL's own tools' job (`pg_dump` is consistent while
/// wxlogin serves); this prints their command lines for the configured database, with no
/// password in them, and fails (exit 1) so that a script expecting a backup file notices.
fn postgres_instead(url: &Secret, tool: Tool, file: Option<&Path>) -> ExitCode {
    let file = file.map(|f| sh_quote(&f.display().to_string())).unwrap_or_else(|| "wxlogin.dump".into());
    let Some(t) = store::pg_target(url) else {
        eprintln!("wxlogin: the database URL is not a valid PostgreSQL URL");
        return ExitCode::FAILURE;
    };
    let mut conn = format!("-h {} -p {}", sh_quote(&t.host), t.port);
    if let Some(user) = &t.user {
        conn.push_str(&format!(" -U {}", sh_quote(user)));
    }
    let db = sh_quote(t.dbname.as_deref().unwrap_or("wxlogin"));
    let shown = store::describe_url(url).unwrap_or_default();
    match tool {
        Tool::Dump => {
            eprintln!(
                "wxlogin: backup: the database is PostgreSQL ({shown}); back it up with PostgreSQL's own pg_dump \
                 (consistent while wxlogin serves):"
            );
            eprintln!("  pg_dump -Fc {conn} -d {db} -f {file}");
            eprintln!("  (or, with the URL in the environment: pg_dump -Fc -d \"$WXLOGIN_DATABASE_URL\" -f {file})");
        }
        Tool::Restore => {
            eprintln!(
                "wxlogin: restore: the database is PostgreSQL ({shown}); stop every wxlogin instance on it, then \
                 restore a pg_dump file with PostgreSQL's own pg_restore:"
            );
            eprintln!("  pg_restore --clean --if-exists {conn} -d {db} {file}");
            eprintln!("  (or, with the URL in the environment: pg_restore --clean --if-exists -d \"$WXLOGIN_DATABASE_URL\" {file})");
        }
    }
    eprintln!("Give the password through PGPASSWORD or ~/.pgpass, never on the command line (it shows in `ps`).");
    ExitCode::FAILURE
}

/// `s` as one shell word: as it is when it is plain, else in single quotes.
fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// A fresh name in the folder of `target`, so that the final rename stays on one file system.
fn temp_next_to(target: &Path, what: &str) -> Result<PathBuf> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(CliError::new(format!("the folder {} does not exist", dir.display())));
    }
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "wxlogin.db".into());
    Ok(dir.join(format!(".{name}.{what}-{}.tmp", crate::secrets::random_id(6))))
}

/// Whether `other` names the database at `db` or one of its companion files.
fn same_file_family(db: &Path, other: &Path) -> bool {
    let canon = |p: &Path| -> PathBuf {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        dir.join(p.file_name().unwrap_or_default())
    };
    let (db, other) = (canon(db), canon(other));
    ["", "-wal", "-shm", "-journal", ".lock"].iter().any(|s| with_suffix(&db, s) == other)
}

/// Makes a rename durable; best effort (not every platform can open a folder).
fn sync_dir(file: &Path) {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sh_quote;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(sh_quote("db.internal"), "db.internal");
        assert_eq!(sh_quote("/var/run/postgresql"), "/var/run/postgresql");
        assert_eq!(sh_quote("my db"), "'my db'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(rm -rf x)"), "'$(rm -rf x)'");
        assert_eq!(sh_quote(""), "''");
    }
}
