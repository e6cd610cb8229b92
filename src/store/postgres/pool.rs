//! A small pool of PostgreSQL connections, each with its prepared statements.
//!
//! Why not a pool crate: what is needed is a capped stack of idle connections and a wait
//! with a deadline when all are busy; the same few lines as SQLite's readers. Every
//! statement is prepared once per connection and kept (a text query costs PostgreSQL a
//! parse and plan each time, and the sync client one more round trip).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use crate::store::{Result, StoreError};

/// How long a caller waits for a connection when all are in use.
const WAIT: Duration = Duration::from_secs(5);

pub(in crate::store) struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    config: postgres::Config,
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    idle: Vec<Link>,
    /// Connections open or being opened, idle ones included.
    open: usize,
}

/// One connection and the statements prepared on it.
struct Link {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Pool {
    pub fn new(config: postgres::Config, max: usize) -> Pool {
        let inner = Inner { config, max: max.max(1), state: Mutex::default(), freed: Condvar::new() };
        Pool { inner: Arc::new(inner) }
    }

    /// An idle connection, a new one while fewer than `max` are open, or the first one
    /// freed within [`WAIT`].
    pub fn get(&self) -> Result<Conn> {
        let deadline = Instant::now() + WAIT;
        let mut state = lock(&self.inner.state);
        loop {
            if let Some(link) = state.idle.pop() {
                if link.client.is_closed() {
                    // PostgreSQL restarted, or ended the session, while it was idle.
                    state.open -= 1;
                    continue;
                }
                return Ok(Conn { pool: self.inner.clone(), link: Some(link) });
            }
            if state.open < self.inner.max {
                state.open += 1;
                drop(state);
                return self.open();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!("all {} database connections stayed busy for {WAIT:?}", self.inner.max);
                return Err(StoreError::Busy);
            }
            state = self.inner.freed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn open(&self) -> Result<Conn> {
        match self.inner.config.connect(NoTls) {
            Ok(client) => {
                let link = Link { client, statements: HashMap::new() };
                Ok(Conn { pool: self.inner.clone(), link: Some(link) })
            }
            Err(e) => {
                self.inner.forget_one();
                Err(e.into())
            }
        }
    }
}

impl Inner {
    fn forget_one(&self) {
        lock(&self.state).open -= 1;
        self.freed.notify_one();
    }
}

/// A connection out of the pool; back in when dropped, unless it broke.
pub(in crate::store) struct Conn {
    pool: Arc<Inner>,
    link: Option<Link>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(link) = self.link.take() else { return };
        if link.client.is_closed() {
            self.pool.forget_one();
            return;
        }
        lock(&self.pool.state).idle.push(link);
        self.pool.freed.notify_one();
    }
}

impl Conn {
    fn link(&mut self) -> &mut Link {
        self.link.as_mut().expect("held until dropped")
    }

    pub fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let link = self.link();
        let st = prepared(&mut link.client, &mut link.statements, sql)?;
        Ok(link.client.query(&st, params)?)
    }

    pub fn query_opt(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        let link = self.link();
        let st = prepared(&mut link.client, &mut link.statements, sql)?;
        Ok(link.client.query_opt(&st, params)?)
    }

    pub fn query_one(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        let link = self.link();
        let st = prepared(&mut link.client, &mut link.statements, sql)?;
        Ok(link.client.query_one(&st, params)?)
    }

    pub fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let link = self.link();
        let st = prepared(&mut link.client, &mut link.statements, sql)?;
        Ok(link.client.execute(&st, params)?)
    }

    /// Runs `f` inside BEGIN ... COMMIT; rolls back when it fails.
    pub fn in_transaction<T>(&mut self, f: &mut impl FnMut(&mut Tx) -> Result<T>) -> Result<T> {
        let link = self.link();
        let tx = link.client.transaction()?;
        let mut tx = Tx { tx, statements: &mut link.statements };
        let out = f(&mut tx)?;
        tx.tx.commit()?;
        Ok(out)
    }
}

/// An open transaction; dropped without commit, it rolls back.
pub(in crate::store) struct Tx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl Tx<'_> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.tx.prepare(sql)?;
        self.statements.insert(sql, st.clone());
        Ok(st)
    }

    pub fn query_opt(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        let st = self.statement(sql)?;
        Ok(self.tx.query_opt(&st, params)?)
    }

    pub fn query_one(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        let st = self.statement(sql)?;
        Ok(self.tx.query_one(&st, params)?)
    }

    pub fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let st = self.statement(sql)?;
        Ok(self.tx.execute(&st, params)?)
    }

    pub fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.tx.batch_execute(sql)?)
    }
}

fn prepared(
    client: &mut Client,
    statements: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
) -> Result<Statement> {
    if let Some(st) = statements.get(sql) {
        return Ok(st.clone());
    }
    let st = client.prepare(sql)?;
    statements.insert(sql, st.clone());
    Ok(st)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
