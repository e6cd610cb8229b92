//! What the operator's commands need from the database: the server lock, online backup,
//! verification of a database file, and counts for `wxlogin stats`.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags};

use super::{connect, Result, Sqlite, StoreError, SCHEMA_VERSION};
use crate::files;

/// An exclusive advisory lock on `<db>.lock`, held by `wxlogin serve` for its whole life
/// and by `wxlogin restore` while it swaps the file.
///
/// Why a lock file rather than a pid file or an SQLite lock: the kernel releases an
/// `flock` when its holder exits in any way (SIGKILL and crashes included), so there is
/// never a stale lock to clean up, and a recycled pid cannot fool it. SQLite's own locks
/// do not fit: in WAL mode the server holds no lock between transactions, and
/// `locking_mode=EXCLUSIVE` would also shut out the admin commands that must run beside
/// the server. The lock lives in a separate file so that it never interferes with
/// SQLite's locking of the database itself. (`File::try_lock` is `flock(LOCK_EX|LOCK_NB)`
/// on Linux; std has it since Rust 1.89, so no extra crate is needed.) Like SQLite's WAL
/// it needs a local file system.
pub struct ServerLock {
    _file: File,
    path: PathBuf,
}

impl ServerLock {
    /// The lock file next to the database at `db`.
    pub fn path_for(db: &Path) -> PathBuf {
        let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".lock");
        db.with_file_name(name)
    }

    /// Takes the lock, or fails at once when another process holds it.
    pub fn acquire(db: &Path) -> Result<ServerLock> {
        if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
            files::create_private_dir_all(dir)
                .map_err(|e| StoreError::Io(format!("cannot create the database folder {}: {e}", dir.display())))?;
        }
        let path = ServerLock::path_for(db);
        let file = files::open_private(&path)
            .map_err(|e| StoreError::Io(format!("cannot open the lock file {}: {e}", path.display())))?;
        // An older wxlogin left it 0644. It holds nothing, but whoever can open it can
        // flock it, and so keep `serve` from starting and `restore` from running.
        let _ = files::tighten(&path);
        match file.try_lock() {
            Ok(()) => Ok(ServerLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(StoreError::Io(format!(
                "{} is in use: a `wxlogin serve` (or a restore) holds its lock {}; stop it first",
                db.display(),
                path.display()
            ))),
            Err(TryLockError::Error(e)) => Err(StoreError::Io(format!("cannot lock {}: {e}", path.display()))),
        }
    }

    /// Whether some process holds the lock of the database at `db` right now.
    pub fn is_held(db: &Path) -> bool {
        let Ok(file) = File::open(ServerLock::path_for(db)) else { return false };
        matches!(file.try_lock(), Err(TryLockError::WouldBlock))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What [`verify`] found in a database file.
#[derive(Debug, Clone)]
pub struct Verified {
    pub version: i64,
    pub users: i64,
    pub live_sessions: i64,
}

/// Checks that `path` is a complete, undamaged wxlogin database that this binary can
/// open: `PRAGMA integrity_check` says ok, and its schema version is known.
pub fn verify(path: &Path) -> Result<Verified> {
    if !path.is_file() {
        return Err(StoreError::Io(format!("{} does not exist or is not a file", path.display())));
    }
    let conn = connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut st = conn.prepare("PRAGMA integrity_check")?;
    let problems: Vec<String> =
        st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?.into_iter().collect();
    if problems != ["ok"] {
        let shown: Vec<_> = problems.iter().take(3).map(String::as_str).collect();
        return Err(StoreError::Corrupt(format!("integrity_check: {}", shown.join("; "))));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::Newer { found: version, supported: SCHEMA_VERSION });
    }
    let has = |table: &str| -> Result<bool> {
        Ok(conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| {
            r.get::<_, i64>(0)
        })? == 1)
    };
    if version < 1 || !has("users")? || !has("sessions")? {
        return Err(StoreError::Corrupt("it has no wxlogin schema (no schema version, or no users table)".into()));
    }
    let now = crate::store::now();
    Ok(Verified {
        version,
        users: conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?,
        live_sessions: conn.query_row("SELECT count(*) FROM sessions WHERE expires_at > ?1", [now], |r| r.get(0))?,
    })
}

/// Writes a consistent copy of the database at `db` to `dest`, which must not exist,
/// with `VACUUM INTO` on a connection of its own: one read transaction, so the copy is
/// the snapshot at its start, and the server's writer is never blocked (WAL). The copy
/// is a single self-contained file (`journal_mode=delete`, no `-wal`). Returns the
/// source's schema version, for the caller to compare with the copy's.
///
/// `dest` is created here, empty and 0600 (`VACUUM INTO` takes an empty file), so that
/// the copy's session keys are never readable by others, whatever the umask. On an
/// error the caller removes it.
pub fn vacuum_into(db: &Path, dest: &Path) -> Result<i64> {
    let dest_str = dest.to_str().ok_or_else(|| StoreError::Io(format!("{} is not a UTF-8 path", dest.display())))?;
    let conn = connect(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    files::create_new_private(dest).map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dest.display())))?;
    let dest = dest_str;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    conn.execute("VACUUM INTO ?1", params![dest])?;
    Ok(version)
}

/// Counts for `wxlogin stats`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub users: i64,
    pub live_sessions: i64,
    pub logins_today: i64,
    pub by_app: Vec<AppStats>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppStats {
    pub app: String,
    pub users: i64,
    pub live_sessions: i64,
    pub logins_today: i64,
}

impl Sqlite {
    /// Users, live sessions and today's (UTC) logins, in total and per app, read in one
    /// transaction so the numbers agree with each other.
    pub fn stats(&self, now: i64) -> Result<Stats> {
        self.read(|c| {
            c.execute_batch("BEGIN")?;
            let out = stats_in(c, now);
            let _ = c.execute_batch("COMMIT");
            out
        })
    }
}

fn stats_in(c: &Connection, now: i64) -> Result<Stats> {
    let mut apps: std::collections::BTreeMap<String, AppStats> = Default::default();
    let mut add = |sql: &str, set: fn(&mut AppStats, i64)| -> Result<()> {
        let mut st = c.prepare(sql)?;
        let rows = st.query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (app, n) = row?;
            let entry = apps.entry(app.clone()).or_insert_with(|| AppStats { app, ..AppStats::default() });
            set(entry, n);
        }
        Ok(())
    };
    add("SELECT app, count(*) FROM users WHERE ?1 IS NOT NULL GROUP BY app", |a, n| a.users = n)?;
    add(
        "SELECT u.app, count(*) FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.expires_at > ?1 GROUP BY u.app",
        |a, n| a.live_sessions = n,
    )?;
    add("SELECT app, sum(logins) FROM login_days WHERE day = date(?1, 'unixepoch') GROUP BY app", |a, n| {
        a.logins_today = n
    })?;
    let by_app: Vec<AppStats> = apps.into_values().collect();
    Ok(Stats {
        users: by_app.iter().map(|a| a.users).sum(),
        live_sessions: by_app.iter().map(|a| a.live_sessions).sum(),
        logins_today: by_app.iter().map(|a| a.logins_today).sum(),
        by_app,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;
    use crate::store::{Caller, NewLogin, Terms};

    fn temp_db(tag: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("wxlogin-admin-{tag}-{}", crate::secrets::random_id(6)));
        std::fs::create_dir_all(&dir).unwrap();
        (dir.join("wxlogin.db"), dir)
    }

    fn login(store: &Sqlite, app: &str, openid: &str, now: i64) {
        let key = Secret::new("k");
        let code_hash = crate::secrets::sha256(openid.as_bytes());
        let token_hash = crate::secrets::sha256(format!("{openid}{now}").as_bytes());
        store
            .record_login(&NewLogin {
                app,
                openid,
                unionid: None,
                session_key: &key,
                code_hash,
                token_hash,
                terms: Terms { now, ttl: 3600, max_lifetime: 7200, max_per_user: 50 },
                caller: Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) },
            })
            .unwrap();
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let (db, dir) = temp_db("lock");
        let held = ServerLock::acquire(&db).unwrap();
        assert!(ServerLock::is_held(&db));
        let err = ServerLock::acquire(&db).err().expect("second lock must fail");
        assert!(err.to_string().contains("in use"), "{err}");
        drop(held);
        assert!(!ServerLock::is_held(&db));
        assert!(ServerLock::acquire(&db).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn backup_is_verified_and_refuses_foreign_files() {
        let (db, dir) = temp_db("backup");
        let store = Sqlite::open(&db).unwrap();
        let now = crate::store::now();
        login(&store, "main", "o-1", now);
        login(&store, "shop", "o-2", now);
        let dest = dir.join("copy.db");
        assert_eq!(vacuum_into(&db, &dest).unwrap(), SCHEMA_VERSION);
        let v = verify(&dest).unwrap();
        assert_eq!((v.version, v.users, v.live_sessions), (SCHEMA_VERSION, 2, 2));
        assert!(vacuum_into(&db, &dest).is_err(), "VACUUM INTO never overwrites");

        let foreign = dir.join("foreign.db");
        Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE notes (x)").unwrap();
        assert!(matches!(verify(&foreign), Err(StoreError::Corrupt(_))));
        let garbage = dir.join("garbage.db");
        std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
        assert!(verify(&garbage).is_err());
        let newer = dir.join("newer.db");
        std::fs::copy(&dest, &newer).unwrap();
        Connection::open(&newer).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        assert!(matches!(verify(&newer), Err(StoreError::Newer { .. })));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn stats_count_per_app() {
        let (db, dir) = temp_db("stats");
        let store = Sqlite::open(&db).unwrap();
        let now = crate::store::now();
        login(&store, "main", "o-1", now);
        login(&store, "main", "o-1", now + 1);
        login(&store, "main", "o-2", now);
        login(&store, "shop", "o-3", now - 3 * 86_400);
        let s = store.stats(now).unwrap();
        assert_eq!((s.users, s.live_sessions, s.logins_today), (3, 3, 3));
        assert_eq!(s.by_app[0], AppStats { app: "main".into(), users: 2, live_sessions: 3, logins_today: 3 });
        assert_eq!(s.by_app[1], AppStats { app: "shop".into(), users: 1, live_sessions: 0, logins_today: 0 });
        let _ = std::fs::remove_dir_all(dir);
    }
}
