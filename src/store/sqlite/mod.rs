//! The SQLite engine: the default, one file on one server.
//!
//! One writer connection behind a mutex takes every write, each in a `BEGIN IMMEDIATE`
//! transaction: with several writers SQLite answers "database is locked" to deferred
//! transactions that read and then write. Reads use a small pool of their own
//! connections, which WAL lets run beside the writer.

mod admin;
mod coordination;
mod group_commit;
pub(super) mod migrate;
mod orders;
mod pay_events;
mod refunds;
mod sessions;
pub mod tokens;
mod users;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::files;
pub use crate::store::{Result, StoreError};

pub use admin::{vacuum_into, verify, AppStats, ServerLock, Stats, Verified};
pub use migrate::SCHEMA_VERSION;
/// What the PostgreSQL engine shares with this one: the events' data, the refund rules.
#[cfg(feature = "postgres")]
pub(in crate::store) use orders::order_json;
pub use orders::{
    Applied, Created, NewOrder, Order, OrderState, Payment, EVENT_ORDER_CLOSED, EVENT_ORDER_PAID, FIRST_QUERY_AFTER,
    MAX_QUERY_INTERVAL,
};
pub use pay_events::{backoff, Backlog, Bell, EventStatus, OutboxEvent, Retry, GIVE_UP_AFTER};
#[cfg(feature = "postgres")]
pub(in crate::store) use refunds::{refund_json, FIRST_REFUND_QUERY_AFTER};
pub use refunds::{
    NewRefund, Refund, RefundApplied, RefundCreated, RefundResult, RefundState, EVENT_REFUND_FAILED,
    EVENT_REFUND_SUCCEEDED,
};
pub use sessions::{Lookup, SessionInfo, SessionRow, KEEP_EXPIRED_SECONDS, SLIDE_EVERY_SECONDS};
pub use users::{Caller, LoginOutcome, NewLogin, Replay, Terms, User, MAX_CODE_REPLAYS};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(ErrorCode::ReadOnly) | Some(ErrorCode::CannotOpen) | Some(ErrorCode::DiskFull) => StoreError::ReadOnly,
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Sqlite(e),
        }
    }
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_IDLE_READERS: usize = 8;
/// Each reader's page cache, in KiB (SQLite's default is 2,000). A session check reads
/// one random leaf of each of two trees far larger than any cache, and every write
/// empties a reader's cache anyway, so a small one holds what is reused (the trees'
/// upper pages) and costs nothing in speed; 8 readers at the default were up to 16 MB of
/// the server's memory. Measured with the bench's loads: peak RSS 38 -> 32.5 MB, session
/// checks and logins unchanged within noise.
const READER_CACHE_KIB: i64 = 512;
/// The writer folds the WAL back into the file itself once it holds this many pages
/// (about 40 MB; SQLite's default is 1,000). A login dirties five to seven pages, so the
/// default meant a checkpoint, with two fsyncs, every 150 or so logins, run by a login
/// that holds the writer: 2,650 -> 3,150 logins/s at 0 ms with this (bench/run). While
/// the server runs, [`Sqlite::fold_wal`] does it first, off the login path; this stays
/// as the backstop for when it does not (admin commands, tools).
const WAL_CHECKPOINT_PAGES: i64 = 10_000;

pub struct Sqlite {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    logins: group_commit::LoginQueue,
    /// The connection [`Sqlite::fold_wal`] checkpoints with, opened on first use.
    folder: Mutex<Option<Connection>>,
    /// Rung when a write adds a webhook event (see `pay_events`).
    outbox_bell: pay_events::Bell,
}

/// Before SQLite opens the database: creates the file 0600 when it is absent (SQLite
/// would create it 0644 and give its `-wal` and `-shm` the same mode), and tightens the
/// file and its companions to 0600 when an older wxlogin left them open to others.
fn make_private(path: &Path) -> Result<()> {
    // An existing file is left for SQLite to open (and to refuse, naming the problem,
    // when it is read-only).
    match files::create_new_private(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(StoreError::Io(format!("cannot create the database {}: {e}", path.display())))
        }
        _ => {}
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        let file = PathBuf::from(name);
        match files::tighten(&file) {
            Ok(None) => {}
            Ok(Some(was)) => log::warn!(
                "{} was open to group or others (mode {was:03o}); made it 0600: it holds session keys",
                file.display()
            ),
            Err(e) => log::warn!("{} is open to group or others and could not be made 0600: {e}", file.display()),
        }
    }
    Ok(())
}

impl Sqlite {
    /// Opens (creating the file and its folder if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Sqlite> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            files::create_private_dir_all(dir)
                .map_err(|e| StoreError::Io(format!("cannot create the database folder {}: {e}", dir.display())))?;
        }
        make_private(path)?;
        let mut writer = connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        let mode: String = writer.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io(format!(
                "the database refused WAL mode (got {mode}); is it on a network filesystem?"
            )));
        }
        writer.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
        migrate::migrate(&mut writer)?;
        Ok(Sqlite {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            logins: group_commit::LoginQueue::default(),
            folder: Mutex::new(None),
            outbox_bell: pay_events::Bell::default(),
        })
    }

    /// Opens an existing database for an admin command, without creating anything.
    pub fn open_existing(path: &Path) -> Result<Sqlite> {
        if !path.exists() {
            return Err(StoreError::Io(format!("no database at {} (has the server ever run?)", path.display())));
        }
        Sqlite::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read connection.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match lock(&self.readers).pop() {
            Some(c) => c,
            None => {
                let c = connect(&self.path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
                c.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                c
            }
        };
        let out = f(&conn);
        // A connection left inside a transaction would hold its snapshot forever.
        if conn.is_autocommit() {
            let mut pool = lock(&self.readers);
            if pool.len() < MAX_IDLE_READERS {
                pool.push(conn);
            }
        }
        out
    }

    /// Runs `f` on a read connection inside one read transaction: its reads see one
    /// snapshot, and the WAL's read lock is taken once rather than once per statement
    /// (each is a few system calls; measured on the verify path).
    pub fn read_snapshot<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.read(|c| {
            c.prepare_cached("BEGIN")?.execute([])?;
            let out = f(c);
            // Ending a read transaction only lets go of the snapshot. If even that fails,
            // the error stands, so that `read` does not pool a connection stuck inside one.
            c.prepare_cached("COMMIT")?.execute([])?;
            out
        })
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer; commits if it succeeds.
    pub fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// The writer connection, held until the guard is dropped.
    fn writer(&self) -> Writer<'_> {
        Writer { store: self, conn: Some(lock(&self.writer)) }
    }

    /// The writer if it is free now.
    fn try_writer(&self) -> Option<Writer<'_>> {
        let conn = match self.writer.try_lock() {
            Ok(conn) => conn,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(Writer { store: self, conn: Some(conn) })
    }

    /// Answers whether the database can be read (for /healthz).
    pub fn ping(&self) -> Result<()> {
        self.read(|c| Ok(c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?))
    }

    /// Copies what the WAL holds into the database file, mostly without holding up
    /// writes, so that the writer's own checkpoint (which stops every login while it
    /// copies and syncs) does not come due.
    ///
    /// Two passes: a PASSIVE checkpoint on a connection of its own, which runs beside
    /// the writer and does the copying and both fsyncs; then a second one while holding
    /// the writer, which only has the frames written meanwhile to copy. It leaves the
    /// whole WAL copied with no write in between, and that is when SQLite lets the next
    /// write start the WAL over from its beginning (a checkpoint that runs beside a
    /// stream of writes never gets there, and the WAL grows without end: measured in an
    /// earlier attempt, 784 MB in 10 s).
    pub fn fold_wal(&self) -> Result<()> {
        let mut folder = lock(&self.folder);
        if folder.is_none() {
            *folder = Some(connect(&self.path, OpenFlags::SQLITE_OPEN_READ_WRITE)?);
        }
        let Some(conn) = folder.as_ref() else { return Ok(()) };
        let passive = |c: &Connection| -> Result<i64> {
            Ok(c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))?)
        };
        // -1: this pass could not start (it read the WAL's header while a commit was
        // writing it, or another checkpoint ran). The pass under the writer does it all.
        if passive(conn)? == 0 {
            return Ok(());
        }
        let _writer = self.writer();
        passive(conn)?;
        Ok(())
    }

    /// Folds the WAL back into the main file, so that after a clean stop the file alone is complete.
    pub fn checkpoint(&self) -> Result<()> {
        lock(&self.readers).clear();
        lock(&self.folder).take();
        self.writer().query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// `PRAGMA quick_check`, for `wxlogin check`.
    pub fn quick_check(&self) -> Result<String> {
        self.read(|c| Ok(c.query_row("PRAGMA quick_check", [], |r| r.get(0))?))
    }
}

fn connect(path: &Path, flags: OpenFlags) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI)?;
    // busy_timeout first: the pragmas below may themselves need to wait for a lock.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Every statement the store runs is cached (about 60 now, with payments). Past the
    // capacity the LRU evicts statements the login path needs again at once, and SQLite
    // parses them anew: measured 15% of login throughput at 32. A connection caches only
    // what it runs, so the capacity costs nothing for statements never used.
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// The writer connection, held. Letting go of it wakes the oldest login queued for it:
/// those sleep on their own tickets (see `group_commit`), not on this lock, so every
/// holder must say when it is done, and this is where all of them do.
struct Writer<'a> {
    store: &'a Sqlite,
    conn: Option<MutexGuard<'a, Connection>>,
}

impl std::ops::Deref for Writer<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_deref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_deref_mut().expect("held until dropped")
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        // Unlocked first, so that the login woken can take the writer at once.
        drop(self.conn.take());
        self.store.nudge_next_login();
    }
}

/// A poisoned lock only means another thread panicked while holding it; the connection
/// inside is still usable (SQLite rolls back an unfinished transaction on drop).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
