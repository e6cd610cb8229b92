//! The operator's commands on PostgreSQL, with the real binary and the test cluster:
//! `copy-db` from a SQLite database a real server wrote, then a server on PostgreSQL that
//! still knows its users' sessions; `backup`/`restore` pointing at pg_dump/pg_restore;
//! `check`, `stats` and `users` on PostgreSQL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use wxlogin::config::DatabaseConfig;
use wxlogin::secrets::Secret;
use wxlogin::store::{ServerLock, Store};

use crate::pg_cluster::{fresh_database, psql};
use crate::support::*;

/// An appliance.toml in `dir` on the PostgreSQL database at `url`, WeChat at `fake_url`.
fn pg_config(dir: &Path, url: &str, fake_url: &str) -> PathBuf {
    let path = dir.join("pg.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[database]\nurl = \"{url}\"\n\n\
         [wechat]\napi_base = \"{fake_url}\"\ntimeout_ms = 2000\nretries = 0\n\n\
         [[apps]]\nname = \"main\"\nappid = \"{APPID}\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A SQLite installation a real server wrote: ann (two sessions, one paid order) and
/// ben (one session). Returns the stopped server (its fake WeChat still up), the
/// database file, and ann's and ben's session tokens.
fn installation() -> (TestServer, PathBuf, Vec<String>) {
    let mut s = TestServer::start_pay();
    let (ann1, _) = s.login("ann");
    let (ann2, _) = s.login("ann");
    let (ben, _) = s.login("ben");
    assert_eq!(s.patch("/v1/me", Some(&ann1), &json!({"nickname": "Annie"})).status, 200);
    let r = s.post("/v1/pay/orders", Some(&ann1), &json!({"product": "vip30"}));
    assert_eq!(r.status, 201, "order: {}", r.text);
    let no = r.json()["order"]["out_trade_no"].as_str().unwrap().to_string();
    assert_eq!(s.pay(&no, json!({})).status, 200);
    let db = s.app().store.sqlite().expect("a SQLite store").path().to_path_buf();
    s.stop();
    (s, db, vec![ann1, ann2, ben])
}

/// Writes `url` into a file, as an operator keeps a URL with a password out of `ps`.
fn url_file(dir: &Path, url: &str) -> String {
    let file = dir.join("target-url");
    std::fs::write(&file, format!("{url}\n")).unwrap();
    file.to_str().unwrap().to_string()
}

fn count(url: &str, table: &str) -> i64 {
    psql(url, &format!("SELECT count(*) FROM {table}")).trim().parse().unwrap()
}

/// Copies `db` into a fresh database and returns its URL.
fn copied(db: &Path, dir: &Path) -> String {
    let url = fresh_database();
    let (code, out, err) =
        run_bare(&["copy-db", "--from", db.to_str().unwrap(), "--to-file", &url_file(dir, &url)], &[]);
    assert_eq!(code, 0, "copy-db: {out}{err}");
    url
}

#[test]
fn pg_copy_db_moves_every_row_ids_and_sessions_kept() {
    let (s, db, tokens) = installation();
    let url = fresh_database();
    let file = url_file(s.dir.path(), &url);
    let (code, out, err) = run_bare(&["copy-db", "--from", db.to_str().unwrap(), "--to-file", &file], &[]);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "users: 2 copied, 2 in PostgreSQL",
        "sessions: 3 copied, 3 in PostgreSQL",
        "used_codes: 3 copied, 3 in PostgreSQL",
        "login_days: 1 copied, 1 in PostgreSQL",
        "orders: 1 copied, 1 in PostgreSQL",
        "pay_events: 1 copied, 1 in PostgreSQL",
        "refunds: 0 copied, 0 in PostgreSQL",
    ] {
        assert!(out.lines().any(|l| l == line), "no `{line}` in:\n{out}");
    }
    assert!(out.contains("access_tokens: "), "{out}");

    // The rows themselves: same ids, same hashes, same fields.
    let sqlite = rusqlite::Connection::open(&db).unwrap();
    let ann_id: i64 = sqlite.query_row("SELECT id FROM users WHERE nickname = 'Annie'", [], |r| r.get(0)).unwrap();
    assert_eq!(psql(&url, "SELECT id FROM users WHERE nickname = 'Annie'").trim(), ann_id.to_string());
    for token in &tokens {
        let hash: Vec<u8> = wxlogin::secrets::sha256(token.as_bytes()).to_vec();
        let user: i64 =
            sqlite.query_row("SELECT user_id FROM sessions WHERE token_hash = ?1", [&hash], |r| r.get(0)).unwrap();
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let sql = format!("SELECT user_id FROM sessions WHERE token_hash = '\\x{hex}'::bytea");
        assert_eq!(psql(&url, &sql).trim(), user.to_string(), "the session of {user} came across");
    }
    let order: (i64, String, i64) = sqlite
        .query_row("SELECT id, state, user_id FROM orders", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    assert_eq!(
        psql(&url, "SELECT id, state, user_id FROM orders").trim(),
        format!("{}|{}|{}", order.0, order.1, order.2)
    );

    // New rows get ids past the copied ones.
    let max_user: i64 = sqlite.query_row("SELECT max(id) FROM users", [], |r| r.get(0)).unwrap();
    let next: i64 = psql(&url, "SELECT nextval(pg_get_serial_sequence('users', 'id'))").trim().parse().unwrap();
    assert!(next > max_user, "the users sequence is past the copied ids: {next} <= {max_user}");
    let next: i64 = psql(&url, "SELECT nextval(pg_get_serial_sequence('orders', 'id'))").trim().parse().unwrap();
    assert!(next > order.0, "the orders sequence is past the copied ids");

    // No password, no URL in what it printed; the source untouched.
    assert!(!out.contains("postgres://") && !err.contains("postgres://"), "{out}{err}");
    assert_eq!(integrity(&db), "ok");
    assert_eq!(openids(&db).len(), 2);
}

#[test]
fn pg_a_server_on_the_copy_accepts_the_old_sessions() {
    let (s, db, tokens) = installation();
    let url = copied(&db, s.dir.path());
    let config = pg_config(s.dir.path(), &url, &s.fake.base_url());
    let log = s.dir.path().join("serve.log");
    let cfg = config.to_str().unwrap();
    let (mut child, addr) = spawn_listening(&["serve", "--config", cfg], &[("WXLOGIN_SECRET_MAIN", SECRET)], &log);
    for token in &tokens {
        let r = send(&format!("http://{addr}/v1/me"), "GET", Some(token), None, &[]);
        assert_eq!(r.status, 200, "an old session on PostgreSQL: {}", r.text);
    }
    let me = send(&format!("http://{addr}/v1/me"), "GET", Some(&tokens[0]), None, &[]).json();
    assert_eq!(me["nickname"], "Annie", "{me}");
    // A new user gets an id past the copied ones (ann 1, ben 2), ben logs in as himself.
    let login = |user: &str| {
        let body = json!({"code": s.code(user)}).to_string();
        let r =
            send(&format!("http://{addr}/v1/login"), "POST", None, Some(body), &[("Content-Type", "application/json")]);
        assert_eq!(r.status, 200, "login on PostgreSQL: {}", r.text);
        r.json()
    };
    assert_eq!(login("cat")["user"]["id"], 3);
    let ben = login("ben");
    assert_eq!((ben["new_user"].clone(), ben["user"]["id"].clone()), (json!(false), json!(2)), "{ben}");
    assert!(sigterm_and_wait(&mut child, Duration::from_secs(10)).success());
}

#[test]
fn pg_copy_db_refuses_a_target_with_rows_and_writes_nothing() {
    let (s, db, _) = installation();
    let url = fresh_database();
    drop(
        Store::connect(&DatabaseConfig { url: Some(Secret::new(url.clone())), ..DatabaseConfig::default() })
            .expect("migrate the target"),
    );
    psql(&url, "INSERT INTO access_tokens (app, token, expires_at, fetched_at) VALUES ('other', 't', 1, 1)");
    let (code, out, err) =
        run_bare(&["copy-db", "--from", db.to_str().unwrap(), "--to-file", &url_file(s.dir.path(), &url)], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("access_tokens has 1 row(s)") && err.contains("not empty"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for table in ["users", "sessions", "used_codes", "orders", "pay_events", "login_days"] {
        assert_eq!(count(&url, table), 0, "{table}: nothing written");
    }
    assert_eq!(count(&url, "access_tokens"), 1);
}

#[test]
fn pg_copy_db_refuses_a_database_a_server_is_using_and_bad_arguments() {
    let (s, db, _) = installation();
    let url = fresh_database();
    let file = url_file(s.dir.path(), &url);
    let lock = ServerLock::acquire(&db).expect("lock as serve does");
    let (code, _, err) = run_bare(&["copy-db", "--from", db.to_str().unwrap(), "--to-file", &file], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("stop it first"), "{err}");
    drop(lock);
    assert_eq!(psql(&url, "SELECT to_regclass('users') IS NULL").trim(), "t", "the target was not touched");

    let (code, _, err) = run_bare(&["copy-db", "--from", db.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run_bare(&["copy-db", "--from", db.to_str().unwrap(), "--to", "mysql://x/y"], &[]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run_bare(&["copy-db", "--from", "/nonexistent/wxlogin.db", "--to", &url], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");

    // A database that an older wxlogin wrote: the operator is told to upgrade it first.
    let old = s.dir.path().join("old.db");
    std::fs::copy(&db, &old).unwrap();
    rusqlite::Connection::open(&old).unwrap().pragma_update(None, "user_version", 4).unwrap();
    let (code, _, err) = run_bare(&["copy-db", "--from", old.to_str().unwrap(), "--to", &url], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("schema version 4") && err.contains("serve"), "{err}");
    assert_eq!(count(&url, "users"), 0);
}

#[test]
fn pg_backup_and_restore_print_the_pg_dump_and_pg_restore_lines() {
    let dir = TempDir::new("pgbackup");
    let url = "postgres://wxuser:s3cret-pw@db.internal:6432/wxlogin_prod";
    let config = pg_config(dir.path(), url, "http://127.0.0.1:9");
    let cfg = config.to_str().unwrap();
    let (code, out, err) = run_bare(&["backup", "nightly.dump", "--config", cfg], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("pg_dump -Fc -h db.internal -p 6432 -U wxuser -d wxlogin_prod -f nightly.dump"), "{err}");
    assert!(err.contains("PGPASSWORD") && err.contains(".pgpass"), "{err}");
    let (code, out2, err2) = run_bare(&["restore", "--config", cfg], &[]);
    assert_eq!(code, 1);
    assert!(
        err2.contains("pg_restore --clean --if-exists -h db.internal -p 6432 -U wxuser -d wxlogin_prod wxlogin.dump"),
        "{err2}"
    );
    for text in [&out, &err, &out2, &err2] {
        assert!(!text.contains("s3cret-pw"), "no password: {text}");
    }

    // The URL from the environment, as a deployment gives it.
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, format!("[[apps]]\nname = \"main\"\nappid = \"{APPID}\"\n")).unwrap();
    let (code, _, err) = run_bare(&["backup", "--config", bare.to_str().unwrap()], &[("WXLOGIN_DATABASE_URL", url)]);
    assert_eq!(code, 1);
    assert!(err.contains("pg_dump -Fc -h db.internal -p 6432") && err.contains("-f wxlogin.dump"), "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");
    assert!(!dir.path().join("wxlogin.dump").exists());
}

#[test]
fn pg_check_names_postgresql_and_its_schema_version() {
    let dir = TempDir::new("pgcheck");
    let url = fresh_database();
    let config = pg_config(dir.path(), &url, "http://127.0.0.1:9");
    let cfg = config.to_str().unwrap();
    let shown = url.rsplit_once('@').unwrap().1;
    let secret = [("WXLOGIN_SECRET_MAIN", SECRET)];
    let (code, out, err) = run_bare(&["check", "--config", cfg], &secret);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("database: PostgreSQL {shown} is reachable")), "{out}");
    assert!(out.contains("no wxlogin schema yet"), "{out}");
    assert_eq!(psql(&url, "SELECT to_regclass('wxlogin_schema') IS NULL").trim(), "t", "check migrates nothing");

    drop(Store::connect(&DatabaseConfig { url: Some(Secret::new(url.clone())), ..DatabaseConfig::default() }).unwrap());
    let version = psql(&url, "SELECT max(version) FROM wxlogin_schema").trim().to_string();
    let (code, out, err) = run_bare(&["check", "--config", cfg], &secret);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("PostgreSQL {shown} is reachable, schema version {version}, 0 user(s)")), "{out}");

    // A newer schema, and a server that is not there: exit 1, the place named, no password.
    psql(&url, "UPDATE wxlogin_schema SET version = version + 1");
    let (code, _, err) = run_bare(&["check", "--config", cfg], &secret);
    assert_eq!(code, 1);
    assert!(err.contains("newer wxlogin") && err.contains(shown), "{err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gone = pg_config(dir.path(), &format!("postgres://u:pw-not-shown@127.0.0.1:{port}/x"), "http://127.0.0.1:9");
    let (code, out, err) = run_bare(&["check", "--config", gone.to_str().unwrap()], &secret);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&format!("PostgreSQL 127.0.0.1:{port}/x")), "{err}");
    assert!(!err.contains("pw-not-shown") && !out.contains("pw-not-shown"), "{err}");
}

#[test]
fn pg_admin_commands_read_the_copied_installation() {
    let (s, db, _) = installation();
    let url = copied(&db, s.dir.path());
    // `orders` needs a [pay] table (its keys may be missing for list and show): the
    // fake's test merchant, its key files in a folder of their own.
    let dir = TempDir::new("pgadmin");
    let config = pg_config(dir.path(), &url, &s.fake.base_url());
    let pay = pay_config_text(dir.path(), &s.fake.base_url(), "https://login.example.com/v1/pay/notify");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n{pay}")).unwrap();
    let cfg = config.to_str().unwrap();
    let (code, out, err) = run_bare(&["stats", "--config", cfg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("users:          2") && out.contains("live sessions:  3"), "{out}");
    let (code, out, err) = run_bare(&["users", "list", "--config", cfg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Annie") && out.contains("(2 user(s)"), "{out}");
    let ann = psql(&url, "SELECT id FROM users WHERE nickname = 'Annie'").trim().to_string();
    let (code, out, err) = run_bare(&["sessions", "list", "--user", &ann, "--config", cfg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 live session(s)"), "{out}");
    let (code, out, err) = run_bare(&["orders", "list", "--config", cfg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("paid"), "{out}");
    let (code, out, err) = run_bare(&["pay", "events", "list", "--config", cfg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("order.paid"), "{out}");
}

#[test]
fn pg_copy_db_copies_thousands_of_rows_in_batches_exactly() {
    let dir = TempDir::new("pgbatch");
    let db = dir.path().join("wxlogin.db");
    drop(Store::open(&db).expect("a fresh SQLite database"));
    let mut c = rusqlite::Connection::open(&db).unwrap();
    let tx = c.transaction().unwrap();
    for i in 1..=2500i64 {
        // Sparse ids, NULLs and a value with a quote: all must come across as they are.
        let nickname = (i % 2 == 0).then(|| format!("n'{i}"));
        tx.execute(
            "INSERT INTO users (id, app, openid, nickname, created_at, last_login_at) VALUES (?1, 'main', ?2, ?3, ?4, ?4)",
            rusqlite::params![i * 3, format!("o{i}"), nickname, 1_700_000_000 + i],
        )
        .unwrap();
        let hash = wxlogin::secrets::sha256(format!("t{i}").as_bytes());
        tx.execute(
            "INSERT INTO sessions VALUES (?1, ?2, 1, 1, 4000000000, 4000000000)",
            rusqlite::params![hash.to_vec(), i * 3],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(c);
    let url = fresh_database();
    let (code, out, err) = run_bare(&["copy-db", "--from", db.to_str().unwrap(), "--to", &url], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().any(|l| l == "users: 2500 copied, 2500 in PostgreSQL"), "{out}");
    assert!(out.lines().any(|l| l == "sessions: 2500 copied, 2500 in PostgreSQL"), "{out}");
    let sum = |sql: &str| psql(&url, sql).trim().to_string();
    assert_eq!(sum("SELECT sum(id), count(nickname), max(nickname) FROM users"), "9378750|1250|n'998");
    assert_eq!(sum("SELECT count(*) FROM users u JOIN sessions s ON s.user_id = u.id"), "2500");
    let next: i64 = sum("SELECT nextval(pg_get_serial_sequence('users', 'id'))").parse().unwrap();
    assert!(next > 7500, "the sequence is past the largest copied id: {next}");
}
