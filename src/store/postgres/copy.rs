//! `wxlogin copy-db`: every row of a SQLite installation into an empty PostgreSQL
//! database, as it is (ids, session and code hashes, tokens, times), so that users stay
//! logged in and ids stay the ones the service's own records name.
//!
//! One SQLite read transaction (one snapshot, whatever else reads the file) and one
//! PostgreSQL transaction (all or nothing). The target's tables are locked against
//! writers first and must be empty. Rows go across in batches of [`BATCH`], one
//! `INSERT ... SELECT FROM unnest(...)` per batch, a column array per parameter: one round
//! trip per batch rather than per row. Identity columns take the given ids; their
//! sequences are then set past the largest, so the next row made here gets a new one.

use std::path::Path;
use std::sync::OnceLock;

use postgres::types::ToSql;
use rusqlite::{Connection, OpenFlags};

use super::migrate::TABLES;
use super::{Postgres, Tx};
use crate::store::sqlite::SCHEMA_VERSION as SQLITE_VERSION;
use crate::store::{Copied, Result, StoreError};

/// Rows per INSERT.
const BATCH: usize = 1000;

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Blob,
}

use Kind::{Blob, Int, Text};

struct Table {
    name: &'static str,
    /// The SQLite order rows are read in (the primary key: ids keep their order).
    order: &'static str,
    /// Both engines' columns at the current schema versions (they are the same by design;
    /// the test below holds SQLite's to this list).
    columns: &'static [(&'static str, Kind)],
    /// Whose identity sequence must be set past the copied ids.
    identity: bool,
}

/// In insertion order: each table after those it references.
const COPIED: [Table; 8] = [
    Table {
        name: "users",
        order: "id",
        columns: &[
            ("id", Int),
            ("app", Text),
            ("openid", Text),
            ("unionid", Text),
            ("session_key", Text),
            ("session_key_at", Int),
            ("nickname", Text),
            ("avatar_url", Text),
            ("gender", Int),
            ("phone_number", Text),
            ("country_code", Text),
            ("created_at", Int),
            ("last_login_at", Int),
        ],
        identity: true,
    },
    Table {
        name: "sessions",
        order: "token_hash",
        columns: &[
            ("token_hash", Blob),
            ("user_id", Int),
            ("created_at", Int),
            ("last_seen_at", Int),
            ("expires_at", Int),
            ("max_expires_at", Int),
        ],
        identity: false,
    },
    Table {
        name: "used_codes",
        order: "app, code_hash",
        columns: &[
            ("app", Text),
            ("code_hash", Blob),
            ("user_id", Int),
            ("new_user", Int),
            ("used_at", Int),
            ("key_hash", Blob),
            ("client_ip", Text),
            ("replays", Int),
        ],
        identity: false,
    },
    Table {
        name: "access_tokens",
        order: "app",
        columns: &[("app", Text), ("token", Text), ("expires_at", Int), ("fetched_at", Int)],
        identity: false,
    },
    Table {
        name: "login_days",
        order: "app, day",
        columns: &[("app", Text), ("day", Text), ("logins", Int)],
        identity: false,
    },
    Table {
        name: "orders",
        order: "id",
        columns: &[
            ("id", Int),
            ("out_trade_no", Text),
            ("app", Text),
            ("user_id", Int),
            ("openid", Text),
            ("product", Text),
            ("description", Text),
            ("amount", Int),
            ("currency", Text),
            ("attach", Text),
            ("state", Text),
            ("transaction_id", Text),
            ("paid_at", Int),
            ("expires_at", Int),
            ("refunded_amount", Int),
            ("created_at", Int),
            ("prepay_id", Text),
            ("prepay_at", Int),
            ("closed_at", Int),
            ("next_query_at", Int),
            ("queries", Int),
        ],
        identity: true,
    },
    Table {
        name: "pay_events",
        order: "out_trade_no, seq",
        columns: &[
            ("id", Text),
            ("out_trade_no", Text),
            ("seq", Int),
            ("type", Text),
            ("created_at", Int),
            ("data", Text),
            ("delivered_at", Int),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("failed_at", Int),
            ("give_up_at", Int),
            ("last_error", Text),
        ],
        identity: false,
    },
    Table {
        name: "refunds",
        order: "id",
        columns: &[
            ("id", Int),
            ("out_refund_no", Text),
            ("out_trade_no", Text),
            ("amount", Int),
            ("reason", Text),
            ("state", Text),
            ("refund_id", Text),
            ("created_at", Int),
            ("succeeded_at", Int),
            ("next_query_at", Int),
            ("queries", Int),
        ],
        identity: true,
    },
];

/// The statements, made once from [`COPIED`] and [`TABLES`]: the pool caches statements
/// by `&'static str`.
struct Sql {
    /// SQLite: the table's rows, in order.
    select: Vec<String>,
    /// PostgreSQL: one batch of the table's rows.
    insert: Vec<String>,
    /// PostgreSQL: the identity sequence past the largest id (None: no identity).
    setval: Vec<Option<String>>,
    /// PostgreSQL: (table, count) for every wxlogin table but the schema version's.
    count: Vec<(&'static str, String)>,
    /// PostgreSQL: every wxlogin table locked against writers.
    lock: String,
}

fn sql() -> &'static Sql {
    static SQL: OnceLock<Sql> = OnceLock::new();
    SQL.get_or_init(|| {
        let names = |t: &Table| t.columns.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
        let select = COPIED.iter().map(|t| format!("SELECT {} FROM {} ORDER BY {}", names(t), t.name, t.order));
        let insert = COPIED.iter().map(|t| {
            let arrays: Vec<String> = t
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| {
                    let ty = match kind {
                        Int => "bigint",
                        Text => "text",
                        Blob => "bytea",
                    };
                    format!("${}::{ty}[]", i + 1)
                })
                .collect();
            format!("INSERT INTO {} ({}) SELECT * FROM unnest({})", t.name, names(t), arrays.join(", "))
        });
        let setval = COPIED.iter().map(|t| {
            t.identity.then(|| {
                format!(
                    "SELECT setval(pg_get_serial_sequence('{0}', 'id'), max(id)) FROM {0} HAVING max(id) IS NOT NULL",
                    t.name
                )
            })
        });
        let ours = TABLES.iter().copied().filter(|t| *t != "wxlogin_schema");
        Sql {
            select: select.collect(),
            insert: insert.collect(),
            setval: setval.collect(),
            count: ours.clone().map(|t| (t, format!("SELECT count(*) FROM {t}"))).collect(),
            lock: format!("LOCK TABLE {} IN EXCLUSIVE MODE", ours.collect::<Vec<_>>().join(", ")),
        }
    })
}

impl Postgres {
    pub fn copy_from_sqlite(&self, from: &Path) -> Result<Vec<Copied>> {
        let source = open_source(from)?;
        // One snapshot for the counts and every row: WAL readers see the database as it
        // was at the first read, whatever commits meanwhile.
        source.execute_batch("BEGIN")?;
        let version: i64 = source.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        check_version(version)?;
        let mut counts = Vec::with_capacity(COPIED.len());
        for t in &COPIED {
            let n: i64 = source.query_row(&format!("SELECT count(*) FROM {}", t.name), [], |r| r.get(0))?;
            counts.push(n);
        }
        self.conn()?.in_transaction(&mut |tx| {
            // A writer that holds on (an instance already started on the target) makes
            // this fail after a while rather than wait without end.
            tx.batch("SET LOCAL lock_timeout = '10s'")?;
            tx.batch(&sql().lock)?;
            refuse_rows(tx)?;
            for (i, t) in COPIED.iter().enumerate() {
                copy_table(&source, tx, i, t)?;
                if let Some(setval) = &sql().setval[i] {
                    tx.query_opt(setval, &[])?;
                }
            }
            Ok(())
        })?;
        let _ = source.execute_batch("COMMIT");
        let mut conn = self.conn()?;
        let mut out = Vec::with_capacity(COPIED.len());
        for (t, source) in COPIED.iter().zip(counts) {
            let count = &sql().count.iter().find(|(name, _)| *name == t.name).expect("every copied table is counted").1;
            let target: i64 = conn.query_one(count, &[])?.get(0);
            out.push(Copied { table: t.name, source, target });
        }
        Ok(out)
    }
}

/// Read-only: copy-db never changes the installation it moves (it stays the fallback).
fn open_source(from: &Path) -> Result<Connection> {
    if !from.is_file() {
        return Err(StoreError::Io(format!("{} does not exist or is not a file", from.display())));
    }
    let conn = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Only the current schema's columns are known here. An older file is refused rather
/// than upgraded in place: copy-db leaves its source as it found it.
fn check_version(version: i64) -> Result<()> {
    if version > SQLITE_VERSION {
        return Err(StoreError::Newer { found: version, supported: SQLITE_VERSION });
    }
    if version < 1 {
        return Err(StoreError::Corrupt("it has no wxlogin schema version".into()));
    }
    if version < SQLITE_VERSION {
        return Err(StoreError::Refused(format!(
            "the SQLite database has schema version {version}, and copy-db copies version {SQLITE_VERSION} only: \
             start this wxlogin's `serve` on it once (it upgrades the file as it starts), stop it, then copy again"
        )));
    }
    Ok(())
}

/// Nothing is written into a database that already holds wxlogin rows: they would mix
/// with the copied ones (and ids would collide).
fn refuse_rows(tx: &mut Tx) -> Result<()> {
    let mut found = Vec::new();
    for (table, count) in &sql().count {
        let n: i64 = tx.query_one(count, &[])?.get(0);
        if n > 0 {
            found.push(format!("{table} has {n} row(s)"));
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(StoreError::Refused(format!(
        "the target database is not empty ({}); copy-db fills an empty wxlogin database only, nothing was written",
        found.join(", ")
    )))
}

/// One column's values of one batch, as the array parameter of its type.
enum Column {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
    Blob(Vec<Option<Vec<u8>>>),
}

impl Column {
    fn new(kind: Kind) -> Column {
        match kind {
            Int => Column::Int(Vec::with_capacity(BATCH)),
            Text => Column::Text(Vec::with_capacity(BATCH)),
            Blob => Column::Blob(Vec::with_capacity(BATCH)),
        }
    }

    fn push(&mut self, row: &rusqlite::Row, i: usize) -> rusqlite::Result<()> {
        match self {
            Column::Int(v) => v.push(row.get(i)?),
            Column::Text(v) => v.push(row.get(i)?),
            Column::Blob(v) => v.push(row.get(i)?),
        }
        Ok(())
    }

    fn clear(&mut self) {
        match self {
            Column::Int(v) => v.clear(),
            Column::Text(v) => v.clear(),
            Column::Blob(v) => v.clear(),
        }
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Int(v) => v,
            Column::Text(v) => v,
            Column::Blob(v) => v,
        }
    }
}

fn copy_table(source: &Connection, tx: &mut Tx, i: usize, t: &Table) -> Result<()> {
    let mut st = source.prepare(&sql().select[i])?;
    let mut rows = st.query([])?;
    let mut columns: Vec<Column> = t.columns.iter().map(|(_, kind)| Column::new(*kind)).collect();
    let mut pending = 0;
    let unreadable =
        |e: rusqlite::Error| StoreError::Corrupt(format!("table {} holds a value of an unexpected type ({e})", t.name));
    while let Some(row) = rows.next()? {
        for (c, column) in columns.iter_mut().enumerate() {
            column.push(row, c).map_err(unreadable)?;
        }
        pending += 1;
        if pending == BATCH {
            insert(tx, i, &mut columns)?;
            pending = 0;
        }
    }
    if pending > 0 {
        insert(tx, i, &mut columns)?;
    }
    Ok(())
}

fn insert(tx: &mut Tx, i: usize, columns: &mut [Column]) -> Result<()> {
    let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(Column::param).collect();
    tx.execute(&sql().insert[i], &params)?;
    columns.iter_mut().for_each(Column::clear);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The column lists are SQLite's columns at its current schema version, every one of
    /// them: a migration that adds a column must add it here (and to PostgreSQL's schema).
    #[test]
    fn the_copied_columns_are_sqlites_at_its_current_version() {
        let dir = std::env::temp_dir().join(format!("wxlogin-copycols-{}", crate::secrets::random_id(6)));
        let db = dir.join("wxlogin.db");
        drop(crate::store::Sqlite::open(&db).unwrap());
        let conn = Connection::open(&db).unwrap();
        let mut tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let mut copied: Vec<String> = COPIED.iter().map(|t| t.name.to_string()).collect();
        tables.sort();
        copied.sort();
        assert_eq!(tables, copied, "every SQLite table is copied");
        for t in &copied {
            assert!(TABLES.contains(&t.as_str()), "{t} is one of PostgreSQL's tables (and so counted)");
        }
        for t in &COPIED {
            let columns: Vec<(String, String)> = conn
                .prepare(&format!("SELECT name, type FROM pragma_table_info('{}') ORDER BY cid", t.name))
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let ours: Vec<(String, String)> = t
                .columns
                .iter()
                .map(|(c, k)| {
                    let ty = match k {
                        Int => "INTEGER",
                        Text => "TEXT",
                        Blob => "BLOB",
                    };
                    (c.to_string(), ty.to_string())
                })
                .collect();
            assert_eq!(columns, ours, "columns of {}", t.name);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
