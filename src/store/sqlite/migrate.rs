//! Versioned migrations from `schema.sql`, recorded in `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

use super::{Result, StoreError};

const SCHEMA: &str = include_str!("../../../schema.sql");
/// A section starts with this at the beginning of a line.
const MARKER: &str = "\n-- migration ";

/// The schema version this binary writes: the number of the last section in schema.sql.
pub const SCHEMA_VERSION: i64 = count_sections(SCHEMA);

/// The `-- migration N` sections of schema.sql, in order, with their numbers.
fn sections() -> Vec<(i64, &'static str)> {
    sections_of(SCHEMA)
}

/// The `-- migration N` sections of a schema file (SQLite's or PostgreSQL's).
pub(in crate::store) fn sections_of(schema: &'static str) -> Vec<(i64, &'static str)> {
    let mut out = Vec::new();
    let mut rest = schema;
    while let Some(start) = rest.find(MARKER) {
        let after = &rest[start + MARKER.len()..];
        let line_end = after.find('\n').unwrap_or(after.len());
        let number = after[..line_end].trim().parse::<i64>().unwrap_or(-1);
        let body_and_rest = &after[line_end..];
        let end = body_and_rest.find(MARKER).unwrap_or(body_and_rest.len());
        out.push((number, &body_and_rest[..end]));
        rest = &body_and_rest[end..];
    }
    out
}

pub(in crate::store) const fn count_sections(s: &str) -> i64 {
    let (b, m) = (s.as_bytes(), MARKER.as_bytes());
    let (mut i, mut n) = (0, 0);
    while i + m.len() <= b.len() {
        let mut j = 0;
        while j < m.len() && b[i + j] == m[j] {
            j += 1;
        }
        if j == m.len() {
            n += 1;
        }
        i += 1;
    }
    n
}

/// Brings the database up to [`SCHEMA_VERSION`], all pending steps in one IMMEDIATE
/// transaction, so that a crash mid-way leaves the old version intact.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Newer { found: current, supported: SCHEMA_VERSION });
    }
    if current == 0 {
        let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(StoreError::Corrupt(
                "it has tables but no wxlogin schema version; is this another program's database?".into(),
            ));
        }
    }
    for (number, sql) in sections() {
        if number > current {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", number)?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_numbered_one_by_one() {
        let numbers: Vec<i64> = sections().iter().map(|(n, _)| *n).collect();
        let expected: Vec<i64> = (1..=SCHEMA_VERSION).collect();
        assert_eq!(numbers, expected);
    }

    #[test]
    fn fresh_database_reaches_the_current_version_and_stays_there() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        for table in ["users", "sessions", "used_codes", "access_tokens", "login_days", "orders", "pay_events"] {
            let n: i64 =
                conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = ?1", [table], |r| r.get(0)).unwrap();
            assert_eq!(n, 1, "{table}");
        }
    }

    #[test]
    fn a_version_1_database_is_upgraded_and_its_codes_replay_for_no_one() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(sections()[0].1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO users (app, openid, created_at, last_login_at) VALUES ('main', 'o1', 1, 1);
             INSERT INTO used_codes (app, code_hash, user_id, new_user, used_at) VALUES ('main', x'01', 1, 0, 1);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (key, ip, replays): (Option<Vec<u8>>, Option<String>, i64) = conn
            .query_row("SELECT key_hash, client_ip, replays FROM used_codes", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((key, ip, replays), (None, None, 0), "bound to no caller");
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(indexes, ["sessions_expires", "sessions_user_seen"]);
    }

    #[test]
    fn a_version_2_database_gains_orders_whose_users_must_exist() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        for (_, sql) in &sections()[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch("INSERT INTO users (app, openid, created_at, last_login_at) VALUES ('main', 'o1', 1, 1);")
            .unwrap();
        migrate(&mut conn).unwrap();
        let insert = "INSERT INTO orders (out_trade_no, app, user_id, openid, description, amount, state, expires_at,
                      created_at) VALUES (?1, 'main', ?2, 'o1', 'd', 1, 'created', 2, 1)";
        conn.execute(insert, rusqlite::params!["W1", 1]).unwrap();
        assert!(conn.execute(insert, rusqlite::params!["W2", 99]).is_err(), "no such user");
        assert!(conn.execute("DELETE FROM users", []).is_err(), "a user with orders stays");
    }

    #[test]
    fn newer_database_is_refused_and_left_unchanged() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, StoreError::Newer { .. }), "{err}");
        assert!(err.to_string().contains("newer wxlogin"));
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).unwrap();
        assert_eq!(tables, 0);
    }

    #[test]
    fn foreign_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE notes (x)").unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::Corrupt(_))));
    }
}
