//! The store: the only code that writes SQL, behind one interface for both engines.
//!
//! [`Store`] is what the rest of wxlogin sees. Each operation dispatches to the engine
//! the configuration chose: SQLite (`sqlite/`, the default: one file, one server) or
//! PostgreSQL (`postgres/`: one database shared by several instances). Handlers never
//! know which one they use. The row types live beside SQLite's SQL, the default engine;
//! PostgreSQL's code reads and writes the same types.
//!
//! What must hold across instances (a login code exchanged once, one access-token
//! refresh per app, one maintenance pass at a time) is asked of the store too:
//! [`Store::claim_code`], [`Store::token_refresh_lock`] and [`Store::try_task_lock`].
//! On SQLite, where `serve` holds the database alone (see [`ServerLock`]), the process's
//! own locks already suffice and these grant at once.

mod admin;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

use std::fmt;
use std::path::Path;

use crate::config::DatabaseConfig;
use crate::secrets::Secret;

pub use admin::{describe_url, inspect_postgres, pg_target, Copied, PgStatus, PgTarget};
pub use sqlite::tokens;
pub use sqlite::{
    backoff, vacuum_into, verify, AppStats, Applied, Backlog, Bell, Caller, Created, EventStatus, LoginOutcome, Lookup,
    NewLogin, NewOrder, NewRefund, Order, OrderState, OutboxEvent, Payment, Refund, RefundApplied, RefundCreated,
    RefundResult, RefundState, Replay, Retry, ServerLock, SessionInfo, SessionRow, Sqlite, Stats, Terms, User,
    Verified, EVENT_ORDER_CLOSED, EVENT_ORDER_PAID, EVENT_REFUND_FAILED, EVENT_REFUND_SUCCEEDED, FIRST_QUERY_AFTER,
    GIVE_UP_AFTER, KEEP_EXPIRED_SECONDS, MAX_CODE_REPLAYS, MAX_QUERY_INTERVAL, SCHEMA_VERSION, SLIDE_EVERY_SECONDS,
};
use tokens::StoredToken;

#[derive(Debug)]
pub enum StoreError {
    /// Another writer held the database past the busy timeout.
    Busy,
    /// The file or its folder cannot be written (permissions, full disk, read-only mount).
    ReadOnly,
    /// The file was written by a newer wxlogin.
    Newer {
        found: i64,
        supported: i64,
    },
    /// The file is not a SQLite database or is damaged.
    Corrupt(String),
    Io(String),
    /// A write that would break an invariant the caller should have checked (an order
    /// for a user who does not exist or is not its payer, a prepay id for no order):
    /// a bug upstream, refused rather than written.
    Refused(String),
    Sqlite(rusqlite::Error),
    /// PostgreSQL aborted the transaction (serialization failure, deadlock): run it again.
    Retry(String),
    /// PostgreSQL could not be reached, or the connection broke.
    Unavailable(String),
    /// Any other error PostgreSQL answered (its message names what; never a value).
    Postgres(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Busy => f.write_str("the database stayed locked past the busy timeout"),
            StoreError::ReadOnly => {
                f.write_str("the database cannot be written (permissions, full disk or a read-only mount)")
            }
            StoreError::Newer { found, supported } => write!(
                f,
                "the database has schema version {found}, but this wxlogin knows only up to {supported}: \
                 it was written by a newer wxlogin; run that version (or restore an older backup). \
                 The database was left unchanged"
            ),
            StoreError::Corrupt(m) => write!(f, "the database is damaged or not a wxlogin database: {m}"),
            StoreError::Io(m) => f.write_str(m),
            StoreError::Refused(m) => write!(f, "refused: {m}"),
            StoreError::Sqlite(e) => write!(f, "SQLite: {e}"),
            StoreError::Retry(m) => write!(f, "PostgreSQL aborted the transaction: {m}"),
            StoreError::Unavailable(m) => write!(f, "PostgreSQL is unavailable: {m}"),
            StoreError::Postgres(m) => write!(f, "PostgreSQL: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database, whichever engine holds it.
pub struct Store {
    engine: Engine,
}

// One Store per process, made once: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Sqlite(Sqlite),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Postgres),
}

/// A lock the store holds for its caller until this is dropped (a PostgreSQL advisory
/// lock on a connection of its own; nothing on SQLite, where one process has the file).
pub struct Held {
    _inner: Option<Box<dyn Send>>,
}

impl Held {
    fn nothing() -> Held {
        Held { _inner: None }
    }

    #[cfg(feature = "postgres")]
    fn keep(inner: impl Send + 'static) -> Held {
        Held { _inner: Some(Box::new(inner)) }
    }
}

/// Where a login code claimed by another instance stands (see [`Store::claim_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeClaim {
    /// The caller holds the claim: it alone asks WeChat.
    Won,
    /// Another instance holds it and is asking WeChat now.
    Held,
    /// The exchange succeeded and is recorded: replay rules decide.
    Used,
    /// The other instance's exchange failed and let go of the claim.
    Released,
}

impl Store {
    /// Opens the database the configuration names, creating and migrating it.
    pub fn connect(db: &DatabaseConfig) -> Result<Store> {
        match &db.url {
            None => Store::open(&db.path),
            Some(url) => Store::postgres(url, db.max_connections),
        }
    }

    /// Opens an existing database for an admin command (a SQLite file is not created).
    pub fn connect_existing(db: &DatabaseConfig) -> Result<Store> {
        match &db.url {
            None => Store::open_existing(&db.path),
            Some(url) => Store::postgres(url, db.max_connections),
        }
    }

    /// Opens (creating the file and its folder if needed) and migrates a SQLite database.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store { engine: Engine::Sqlite(Sqlite::open(path)?) })
    }

    pub fn open_existing(path: &Path) -> Result<Store> {
        Ok(Store { engine: Engine::Sqlite(Sqlite::open_existing(path)?) })
    }

    #[cfg(feature = "postgres")]
    fn postgres(url: &Secret, max_connections: u32) -> Result<Store> {
        Ok(Store { engine: Engine::Postgres(postgres::Postgres::connect(url, max_connections)?) })
    }

    #[cfg(not(feature = "postgres"))]
    fn postgres(_url: &Secret, _max_connections: u32) -> Result<Store> {
        Err(StoreError::Unavailable("this wxlogin was built without the `postgres` feature".into()))
    }

    /// The SQLite engine, for what only it has (backup, WAL upkeep); None on PostgreSQL.
    pub fn sqlite(&self) -> Option<&Sqlite> {
        match &self.engine {
            Engine::Sqlite(s) => Some(s),
            #[cfg(feature = "postgres")]
            Engine::Postgres(_) => None,
        }
    }

    /// The engine and where its data is, for logs and `check` (never a password).
    pub fn describe(&self) -> String {
        match &self.engine {
            Engine::Sqlite(s) => format!("SQLite {}", s.path().display()),
            #[cfg(feature = "postgres")]
            Engine::Postgres(p) => format!("PostgreSQL {}", p.describe()),
        }
    }

    /// Whether several instances may share this database.
    pub fn is_shared(&self) -> bool {
        !matches!(self.engine, Engine::Sqlite(_))
    }

    /// The maintenance thread's frequent chore: SQLite copies its WAL into the file
    /// (see `Sqlite::fold_wal`); PostgreSQL writes the login counts kept in memory.
    pub fn upkeep(&self) -> Result<()> {
        match &self.engine {
            Engine::Sqlite(s) => s.fold_wal(),
            #[cfg(feature = "postgres")]
            Engine::Postgres(p) => p.flush_login_counts(false),
        }
    }

    /// Leaves the database complete on its own after a clean stop: SQLite's WAL folded,
    /// PostgreSQL's pending login counts written.
    pub fn checkpoint(&self) -> Result<()> {
        match &self.engine {
            Engine::Sqlite(s) => s.checkpoint(),
            #[cfg(feature = "postgres")]
            Engine::Postgres(p) => p.flush_login_counts(true),
        }
    }
}

/// Each operation below exists on both engines with this very signature; the macro
/// writes the dispatch, so that adding an operation to one engine and not the other
/// fails to compile.
macro_rules! dispatch {
    ($( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.engine {
                        Engine::Sqlite(s) => s.$name($($arg),*),
                        #[cfg(feature = "postgres")]
                        Engine::Postgres(p) => p.$name($($arg),*),
                    }
                }
            )*
        }
    };
}

dispatch! {
    /// Answers whether the database can be read (for /healthz).
    fn ping(&self) -> Result<()>;
    /// Rung when a write adds a webhook event (on this instance).
    fn outbox_bell(&self) -> &Bell;

    // Cross-instance coordination.
    /// Claims a login code before WeChat is asked: [`CodeClaim::Won`] for the one caller
    /// that may ask; a claim older than `stale_before` (its instance died) is taken over.
    fn claim_code(&self, app: &str, code_hash: &[u8; 32], now: i64, stale_before: i64) -> Result<CodeClaim>;
    /// Where a code another instance claimed stands now.
    fn code_claim(&self, app: &str, code_hash: &[u8; 32], used_since: i64) -> Result<CodeClaim>;
    /// Lets go of a claim whose exchange failed (a successful one ends with the login).
    fn release_code(&self, app: &str, code_hash: &[u8; 32]) -> Result<()>;
    /// Held while one instance refreshes the app's access token; others wait, then re-read.
    fn token_refresh_lock(&self, app: &str) -> Result<Held>;
    /// The lock of a maintenance task, if no other instance holds it now.
    fn try_task_lock(&self, task: &str) -> Result<Option<Held>>;

    // Users and logins.
    fn record_login(&self, l: &NewLogin) -> Result<LoginOutcome>;
    fn replay_login(
        &self,
        app: &str,
        code_hash: &[u8; 32],
        caller: &Caller,
        window: i64,
        terms: &Terms,
        new_token_hash: &mut dyn FnMut() -> [u8; 32]
    ) -> Result<Replay>;
    fn user(&self, id: i64) -> Result<Option<User>>;
    fn user_by_openid(&self, openid: &str) -> Result<Vec<User>>;
    fn list_users(&self, app: Option<&str>, limit: i64) -> Result<Vec<User>>;
    fn session_key(&self, user_id: i64) -> Result<Option<Secret>>;
    fn update_profile(
        &self,
        user_id: i64,
        nickname: Option<&str>,
        avatar_url: Option<&str>,
        gender: Option<i64>
    ) -> Result<Option<User>>;
    fn update_phone(&self, user_id: i64, phone_number: &str, country_code: Option<&str>) -> Result<Option<User>>;
    fn stats(&self, now: i64) -> Result<Stats>;

    // Sessions.
    fn lookup_session(&self, token_hash: &[u8; 32], now: i64) -> Result<Lookup>;
    fn touch_session(&self, token_hash: &[u8; 32], now: i64, ttl: i64) -> Result<i64>;
    fn delete_session(&self, token_hash: &[u8; 32]) -> Result<bool>;
    fn revoke_sessions(&self, user_id: Option<i64>) -> Result<usize>;
    fn list_sessions(&self, user_id: i64, now: i64) -> Result<Vec<SessionRow>>;
    fn live_sessions(&self, now: i64) -> Result<i64>;
    fn purge(&self, now: i64, code_window: i64) -> Result<usize>;

    // Access tokens.
    fn load_access_token(&self, app: &str) -> Result<Option<StoredToken>>;
    fn save_access_token(&self, app: &str, t: &StoredToken) -> Result<()>;
    /// Forgets the app's token only if it is still `token` (compare-then-delete).
    fn clear_access_token(&self, app: &str, token: &str) -> Result<()>;

    // Orders.
    fn create_order(&self, o: &NewOrder) -> Result<Created>;
    fn set_prepay(&self, out_trade_no: &str, prepay_id: &str, at: i64) -> Result<()>;
    fn order(&self, out_trade_no: &str) -> Result<Option<Order>>;
    fn orders_of_user(&self, user_id: i64, before: Option<&str>, limit: usize) -> Result<Vec<Order>>;
    fn apply_payment(&self, p: &Payment, now: i64) -> Result<Applied>;
    fn close_order(&self, out_trade_no: &str, now: i64) -> Result<Option<Order>>;
    fn orders_due_for_query(&self, now: i64, limit: usize) -> Result<Vec<Order>>;
    fn note_queried(&self, out_trade_no: &str, now: i64) -> Result<()>;
    fn expired_orders(&self, now: i64, limit: usize) -> Result<Vec<Order>>;
    fn list_orders(&self, state: Option<OrderState>, user_id: Option<i64>, limit: usize) -> Result<Vec<Order>>;
    fn order_counts(&self) -> Result<Vec<(String, i64)>>;

    // Refunds.
    fn create_refund(&self, n: &NewRefund) -> Result<RefundCreated>;
    fn forget_refund(&self, out_refund_no: &str) -> Result<bool>;
    fn apply_refund(&self, r: &RefundResult, now: i64) -> Result<RefundApplied>;
    fn refund(&self, out_refund_no: &str) -> Result<Option<Refund>>;
    fn refunds_of_order(&self, out_trade_no: &str) -> Result<Vec<Refund>>;
    fn refunds_due_for_query(&self, now: i64, limit: usize) -> Result<Vec<Refund>>;
    fn note_refund_queried(&self, out_refund_no: &str, now: i64) -> Result<()>;

    // The webhook outbox.
    fn claim_event(&self, now: i64, lease: i64) -> Result<Option<OutboxEvent>>;
    fn mark_delivered(&self, id: &str, now: i64) -> Result<bool>;
    fn record_failed_attempt(&self, id: &str, attempt: i64, now: i64, error: &str) -> Result<Retry>;
    fn retry_event(&self, id: &str, now: i64) -> Result<Option<OutboxEvent>>;
    fn pay_event(&self, id: &str) -> Result<Option<OutboxEvent>>;
    fn order_events(&self, out_trade_no: &str) -> Result<Vec<OutboxEvent>>;
    fn list_pay_events(&self, pending_only: bool, limit: usize) -> Result<Vec<OutboxEvent>>;
    fn outbox_backlog(&self) -> Result<Backlog>;
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
