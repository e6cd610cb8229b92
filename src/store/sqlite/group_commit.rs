//! Group commit for logins: logins that wait for the writer at the same moment share
//! one transaction.
//!
//! Every login waits on the writer lock anyway. Instead of each committing alone, a
//! login queues its ticket and tries the writer: whoever gets it takes every queued
//! ticket, writes each in a savepoint of its own (so one failing login does not undo the
//! others), commits once, and answers each ticket, waking its thread. The others sleep
//! on their own tickets, not on the writer's lock (queued there, each would have had to
//! take the lock in turn only to find its answer). Under load this turns N commits and
//! N sets of WAL frames for the shared pages into one. No ticket is answered before the
//! commit that holds it has returned, so a 200 still means the login is written.
//!
//! Invariants: tickets are only taken from the queue by a thread that holds the writer,
//! and that thread answers all it took. Every thread queues its ticket before it tries
//! the writer, and letting go of the writer (dropping `Writer`, whoever held it) nudges
//! the oldest queued ticket's thread to try again: so no ticket waits long with the
//! writer free.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::users::{count_logins, write_login};
use super::{lock, Caller, LoginOutcome, NewLogin, Result, Sqlite, StoreError, Terms};
use crate::secrets::Secret;

/// At most this many logins share one transaction, so that one commit stays short.
const MAX_BATCH: usize = 128;
/// A waiting login tries the writer at least this often, nudged or not.
const RECHECK: Duration = Duration::from_millis(20);

#[derive(Default)]
pub(super) struct LoginQueue {
    waiting: Mutex<Vec<Arc<Ticket>>>,
}

/// A login waiting for the writer, and, once written, its outcome.
struct Ticket {
    login: OwnedLogin,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    outcome: Option<Result<LoginOutcome>>,
    /// The writer came free with this ticket still queued: its thread should try it.
    nudged: bool,
}

/// [`NewLogin`] with its own copies, so that another thread can write it.
struct OwnedLogin {
    app: String,
    openid: String,
    unionid: Option<String>,
    session_key: Secret,
    code_hash: [u8; 32],
    token_hash: [u8; 32],
    terms: Terms,
    caller: Caller,
}

impl OwnedLogin {
    fn of(l: &NewLogin) -> OwnedLogin {
        OwnedLogin {
            app: l.app.to_string(),
            openid: l.openid.to_string(),
            unionid: l.unionid.map(str::to_string),
            session_key: l.session_key.clone(),
            code_hash: l.code_hash,
            token_hash: l.token_hash,
            terms: l.terms,
            caller: l.caller,
        }
    }

    fn view(&self) -> NewLogin<'_> {
        NewLogin {
            app: &self.app,
            openid: &self.openid,
            unionid: self.unionid.as_deref(),
            session_key: &self.session_key,
            code_hash: self.code_hash,
            token_hash: self.token_hash,
            terms: self.terms,
            caller: self.caller,
        }
    }
}

impl Ticket {
    fn new(l: &NewLogin) -> Ticket {
        Ticket { login: OwnedLogin::of(l), state: Mutex::new(State::default()), wake: Condvar::new() }
    }

    fn take(&self) -> Option<Result<LoginOutcome>> {
        lock(&self.state).outcome.take()
    }

    fn answer(&self, outcome: Result<LoginOutcome>) {
        lock(&self.state).outcome = Some(outcome);
        self.wake.notify_one();
    }

    fn nudge(&self) {
        lock(&self.state).nudged = true;
        self.wake.notify_one();
    }

    /// Sleeps until answered, nudged, or [`RECHECK`] has passed.
    fn wait(&self) {
        let state = lock(&self.state);
        let (mut state, _) = self
            .wake
            .wait_timeout_while(state, RECHECK, |s| s.outcome.is_none() && !s.nudged)
            .unwrap_or_else(|p| p.into_inner());
        state.nudged = false;
    }
}

impl Sqlite {
    pub(super) fn commit_login(&self, l: &NewLogin) -> Result<LoginOutcome> {
        let ticket = Arc::new(Ticket::new(l));
        lock(&self.logins.waiting).push(ticket.clone());
        loop {
            if let Some(outcome) = ticket.take() {
                return outcome;
            }
            match self.try_writer() {
                Some(mut conn) => self.write_queued(&mut conn),
                None => ticket.wait(),
            }
        }
    }

    /// Writes one batch from the queue on the writer the caller holds.
    fn write_queued(&self, conn: &mut Connection) {
        let batch = {
            let mut waiting = lock(&self.logins.waiting);
            let n = waiting.len().min(MAX_BATCH);
            waiting.drain(..n).collect::<Vec<_>>()
        };
        if !batch.is_empty() {
            write_batch(conn, &batch);
        }
    }

    /// Called when the writer is let go (by `Writer`'s drop).
    pub(super) fn nudge_next_login(&self) {
        if let Some(next) = lock(&self.logins.waiting).first() {
            next.nudge();
        }
    }
}

/// Writes `batch` in one transaction and answers every ticket in it, whatever happens:
/// a ticket taken and never answered would leave its login waiting for ever.
fn write_batch(conn: &mut Connection, batch: &[Arc<Ticket>]) {
    match catch_unwind(AssertUnwindSafe(|| write_all(conn, batch))) {
        Ok(Ok(outcomes)) => {
            for (ticket, outcome) in batch.iter().zip(outcomes) {
                ticket.answer(outcome);
            }
        }
        Ok(Err(e)) => {
            for ticket in batch {
                ticket.answer(Err(e.duplicate()));
            }
        }
        // The transaction was dropped on the way out, which rolled it back.
        Err(_) => {
            log::error!("writing a batch of {} login(s) panicked; none was written", batch.len());
            for ticket in batch {
                ticket.answer(Err(StoreError::Io("the login could not be written (an internal error)".into())));
            }
        }
    }
}

/// The outer error is the transaction's (nothing was committed); the inner ones are
/// each login's own (that login alone was rolled back).
fn write_all(conn: &mut Connection, batch: &[Arc<Ticket>]) -> Result<Vec<Result<LoginOutcome>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes: Vec<Result<LoginOutcome>> = if let [one] = batch {
        // Alone: its failure is the transaction's, and no savepoint is needed.
        vec![Ok(write_login(&tx, &one.login.view())?)]
    } else {
        batch.iter().map(|t| in_savepoint(&tx, |c| write_login(c, &t.login.view()))).collect()
    };
    // The day's login count, once per app and second rather than once per login: it is
    // the one row every login of a batch would otherwise update.
    let mut counts: Vec<(&str, i64, i64)> = Vec::new();
    for (ticket, _) in batch.iter().zip(&outcomes).filter(|(_, o)| o.is_ok()) {
        let l = &ticket.login;
        match counts.iter_mut().find(|(app, now, _)| *app == l.app && *now == l.terms.now) {
            Some(c) => c.2 += 1,
            None => counts.push((&l.app, l.terms.now, 1)),
        }
    }
    for (app, now, n) in counts {
        count_logins(&tx, app, now, n)?;
    }
    tx.commit()?;
    Ok(outcomes)
}

fn in_savepoint<T>(c: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    c.prepare_cached("SAVEPOINT login")?.execute([])?;
    let out = f(c);
    if out.is_err() {
        c.prepare_cached("ROLLBACK TO login")?.execute([])?;
    }
    c.prepare_cached("RELEASE login")?.execute([])?;
    out
}

impl StoreError {
    /// The same failure for another login of the batch it failed (rusqlite's errors
    /// cannot be cloned; the message and the HTTP mapping stay the same).
    fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Busy => StoreError::Busy,
            StoreError::ReadOnly => StoreError::ReadOnly,
            StoreError::Newer { found, supported } => StoreError::Newer { found: *found, supported: *supported },
            StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
            StoreError::Io(m) => StoreError::Io(m.clone()),
            StoreError::Refused(m) => StoreError::Refused(m.clone()),
            StoreError::Sqlite(e) => StoreError::Io(format!("SQLite: {e}")),
            StoreError::Retry(m) => StoreError::Retry(m.clone()),
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            StoreError::Postgres(m) => StoreError::Postgres(m.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Lookup;

    fn temp_store() -> (Sqlite, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("wxlogin-group-{}", crate::secrets::random_id(6)));
        (Sqlite::open(&dir.join("wxlogin.db")).expect("opens"), dir)
    }

    fn ticket(openid: &str, code: u8, token: [u8; 32]) -> Arc<Ticket> {
        let key = Secret::new(format!("key-{openid}"));
        let terms = Terms { now: 1_000, ttl: 100, max_lifetime: 1_000, max_per_user: 50 };
        let l = NewLogin {
            app: "main",
            openid,
            unionid: None,
            session_key: &key,
            code_hash: [code; 32],
            token_hash: token,
            terms,
            caller: Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) },
        };
        Arc::new(Ticket::new(&l))
    }

    fn logins_today(store: &Sqlite) -> i64 {
        store
            .read(|c| Ok(c.query_row("SELECT coalesce(sum(logins), 0) FROM login_days", [], |r| r.get(0))?))
            .expect("reads")
    }

    #[test]
    fn a_failing_login_is_rolled_back_alone() {
        let (store, dir) = temp_store();
        // The second reuses the first's token hash: its session insert fails.
        let batch = [ticket("o1", 1, [1; 32]), ticket("o2", 2, [1; 32]), ticket("o3", 3, [3; 32])];
        write_batch(&mut store.writer(), &batch);
        let [a, b, c] = batch.map(|t| t.take().expect("every ticket is answered"));
        assert_eq!(a.expect("first").user.openid, "o1");
        assert!(b.is_err(), "the duplicate token fails");
        assert_eq!(c.expect("third").user.openid, "o3");
        // Nothing of the failed one stayed: not its user, not its code, not its count.
        assert!(store.user_by_openid("o2").expect("reads").is_empty());
        let terms = Terms { now: 1_010, ttl: 100, max_lifetime: 1_000, max_per_user: 50 };
        let caller = Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) };
        let replay = store.replay_login("main", &[2; 32], &caller, 60, &terms, &mut || [9; 32]).expect("reads");
        assert!(matches!(replay, crate::store::Replay::NotFound));
        assert_eq!(logins_today(&store), 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn concurrent_logins_each_get_their_own_outcome() {
        let (store, dir) = temp_store();
        let store = Arc::new(store);
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..40u8 {
                        let openid = format!("o{t}-{}", i % 5);
                        let token = [
                            t, i, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                            7, 7,
                        ];
                        let key = Secret::new("k");
                        let terms = Terms { now: 1_000, ttl: 100, max_lifetime: 1_000, max_per_user: 50 };
                        let code = [t.wrapping_mul(41).wrapping_add(i); 32];
                        let l = NewLogin {
                            app: "main",
                            openid: &openid,
                            unionid: None,
                            session_key: &key,
                            code_hash: code,
                            token_hash: token,
                            terms,
                            caller: Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) },
                        };
                        let outcome = store.record_login(&l).expect("login");
                        assert_eq!(outcome.user.openid, openid);
                        assert_eq!(outcome.new_user, i < 5);
                        match store.lookup_session(&token, 1_001).expect("reads") {
                            Lookup::Live(s) => assert_eq!(s.user.openid, openid),
                            _ => panic!("the session of a login answered Ok is there"),
                        }
                    }
                })
            })
            .collect();
        // Other writes take the writer meanwhile; logins queued behind them still finish.
        let first = store.record_login(&NewLogin {
            app: "other",
            openid: "o-other",
            unionid: None,
            session_key: &Secret::new("k"),
            code_hash: [255; 32],
            token_hash: [255; 32],
            terms: Terms { now: 1_000, ttl: 100, max_lifetime: 1_000, max_per_user: 50 },
            caller: Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) },
        });
        let id = first.expect("login").user.id;
        for i in 0..50 {
            store.update_profile(id, Some(&format!("n{i}")), None, None).expect("writes");
        }
        for t in threads {
            t.join().expect("no thread failed");
        }
        assert_eq!(logins_today(&store), 8 * 40 + 1);
        assert_eq!(store.list_users(Some("main"), 1_000).expect("reads").len(), 8 * 5);
        let _ = std::fs::remove_dir_all(dir);
    }
}
