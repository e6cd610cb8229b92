//! Versioned migrations from `schema.sql` (this folder's), recorded in `wxlogin_schema`.
//!
//! The same rules as SQLite's: numbered sections, all pending ones in one transaction, a
//! newer schema refused. Two instances starting at once take turns on an advisory lock.

use super::Conn;
use crate::store::sqlite::migrate::{count_sections, sections_of};
use crate::store::{Result, StoreError};

const SCHEMA: &str = include_str!("schema.sql");

/// The schema version this binary writes on PostgreSQL.
pub const SCHEMA_VERSION: i64 = count_sections(SCHEMA);

/// The tables wxlogin keeps, in the order their rows can be copied in (referenced first).
pub const TABLES: [&str; 10] = [
    "users",
    "sessions",
    "used_codes",
    "code_claims",
    "access_tokens",
    "login_days",
    "orders",
    "pay_events",
    "refunds",
    "wxlogin_schema",
];

pub fn migrate(conn: &mut Conn) -> Result<()> {
    conn.in_transaction(&mut |tx| {
        // Taken for the transaction: a second instance waits here, then finds it done.
        tx.batch(&format!("SELECT pg_advisory_xact_lock({}, 0)", super::coordination::NAMESPACE))?;
        tx.batch("CREATE TABLE IF NOT EXISTS wxlogin_schema (version BIGINT NOT NULL)")?;
        let current: i64 =
            tx.query_opt("SELECT max(version) FROM wxlogin_schema", &[])?.and_then(|r| r.get(0)).unwrap_or(0);
        if current > SCHEMA_VERSION {
            return Err(StoreError::Newer { found: current, supported: SCHEMA_VERSION });
        }
        if current == 0 {
            let theirs: i64 = tx
                .query_one(
                    "SELECT count(*) FROM information_schema.tables
                     WHERE table_schema = current_schema() AND table_name = ANY($1)",
                    &[&&TABLES[..TABLES.len() - 1]],
                )?
                .get(0);
            if theirs > 0 {
                return Err(StoreError::Corrupt(
                    "it has wxlogin's table names but no wxlogin schema version; is this another program's database?"
                        .into(),
                ));
            }
        }
        for (number, sql) in sections_of(SCHEMA) {
            if number > current {
                tx.batch(sql)?;
            }
        }
        if SCHEMA_VERSION > current {
            tx.execute("DELETE FROM wxlogin_schema", &[])?;
            tx.execute("INSERT INTO wxlogin_schema (version) VALUES ($1)", &[&SCHEMA_VERSION])?;
        }
        Ok(())
    })
}
