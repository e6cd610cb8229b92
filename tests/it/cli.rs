//! The real binary: configuration errors, check, serve with SIGTERM, and the log scan.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use wxlogin::fake_wechat::{FakeOptions, FakeWeChat};

use crate::support::*;

#[test]
fn version_and_help() {
    let (code, out, _) = run_bare(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("wxlogin "));
    let (code, out, _) = run_bare(&["help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("wxlogin serve") && out.contains("wxlogin demo"));
    let (code, _, err) = run_bare(&["frobnicate"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown command `frobnicate`"));
}

#[test]
fn check_reports_config_errors_in_one_line_naming_the_key() {
    let dir = TempDir::new("check");
    let path = write_config(dir.path(), "http://127.0.0.1:9", "");
    let p = path.to_str().unwrap();
    let (code, _, err) = run_bare(&["check", "--config", p], &[]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("apps[0].secret") && err.contains("WXLOGIN_SECRET_MAIN"), "{err}");

    let (code, out, err) = run_bare(&["check", "--config", p], &[("WXLOGIN_SECRET_MAIN", "s")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("does not exist yet"), "{out}");

    std::fs::write(&path, format!("[session]\nttl_secnds = 2\n{}", std::fs::read_to_string(&path).unwrap())).unwrap();
    let (code, _, err) = run_bare(&["check"], &[("WXLOGIN_CONFIG", p), ("WXLOGIN_SECRET_MAIN", "s")]);
    assert_eq!(code, 1);
    assert!(err.starts_with("wxlogin: session.ttl_secnds: unknown field"), "{err}");
    let (code, _, err) = run_bare(&["check", "--config", "/nonexistent/appliance.toml"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read the configuration file"), "{err}");
}

#[test]
fn secrets_may_come_from_a_file() {
    let dir = TempDir::new("secretfile");
    let path = write_config(dir.path(), "http://127.0.0.1:9", "");
    std::fs::write(dir.path().join("secret.txt"), "from-file\n").unwrap();
    let secret_path = dir.path().join("secret.txt");
    let (code, _, err) = run_bare(
        &["check", "--config", path.to_str().unwrap()],
        &[("WXLOGIN_SECRET_MAIN_FILE", secret_path.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{err}");
}

/// The whole life of `serve`: start, logins, a request in flight during SIGTERM that
/// still completes, exit 0, a checkpointed database, and no secret in any log line.
#[test]
fn serve_stops_cleanly_and_logs_no_secrets() {
    let fake = FakeWeChat::start(
        "127.0.0.1:0",
        FakeOptions { apps: vec![(APPID.into(), SECRET.into())], ..FakeOptions::default() },
    )
    .unwrap();
    let dir = TempDir::new("serve");
    let config = write_config(dir.path(), &fake.base_url(), "");
    let log = dir.path().join("stderr.log");
    let (mut child, addr) = spawn_listening(
        &["serve", "--config", config.to_str().unwrap()],
        &[("WXLOGIN_SECRET_MAIN", SECRET), ("RUST_LOG", "trace")],
        &log,
    );
    let base = format!("http://{addr}");
    let mut tokens = Vec::new();
    for user in ["ann", "ben"] {
        let code = fake.login_code(APPID, user);
        let r = send(&format!("{base}/v1/login"), "POST", None, Some(json!({"code": code}).to_string()), &[]);
        assert_eq!(r.status, 200, "{}", r.text);
        tokens.push(r.json()["token"].as_str().unwrap().to_string());
    }
    let r = send(&format!("{base}/v1/session"), "GET", Some(&tokens[0]), None, &[]);
    assert_eq!(r.status, 200);

    // A login in flight (WeChat answers after 700 ms) when SIGTERM arrives.
    let slow = {
        let code = fake.login_code(APPID, "cat");
        let url = format!("{}/__fake/behaviour", fake.base_url());
        send(&url, "POST", None, Some(json!({"latency_ms": 700}).to_string()), &[]);
        let base = base.clone();
        std::thread::spawn(move || {
            send(&format!("{base}/v1/login"), "POST", None, Some(json!({"code": code}).to_string()), &[])
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let status = sigterm_and_wait(&mut child, Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    let slow = slow.join().unwrap();
    assert_eq!(slow.status, 200, "the in-flight login finished: {}", slow.text);
    tokens.push(slow.json()["token"].as_str().unwrap().to_string());

    // After a clean stop the main file alone holds everything.
    assert!(
        !dir.path().join("data/wxlogin.db-wal").exists()
            || std::fs::metadata(dir.path().join("data/wxlogin.db-wal")).unwrap().len() == 0
    );
    let db = rusqlite::Connection::open(dir.path().join("data/wxlogin.db")).unwrap();
    let (users, session_keys): (i64, Vec<String>) = (
        db.query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap(),
        db.prepare("SELECT session_key FROM users")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect(),
    );
    assert_eq!(users, 3);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("POST /v1/login 200"), "access lines are logged:\n{text}");
    assert!(text.contains("stopped cleanly"));
    assert!(!text.contains(SECRET), "the app secret reached the log");
    for key in &session_keys {
        assert!(!text.contains(key.as_str()), "a session_key reached the log");
    }
    for token in &tokens {
        assert!(!text.contains(token.as_str()), "a session token reached the log");
    }
    assert!(!text.contains("js_code="), "a WeChat URL reached the log");
}

#[test]
fn a_database_from_a_newer_wxlogin_is_refused() {
    let dir = TempDir::new("newer");
    let config = write_config(dir.path(), "http://127.0.0.1:9", "");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let db = rusqlite::Connection::open(dir.path().join("data/wxlogin.db")).unwrap();
    db.pragma_update(None, "user_version", 999).unwrap();
    drop(db);
    let envs = [("WXLOGIN_SECRET_MAIN", "s")];
    let (code, _, err) = run_bare(&["serve", "--config", config.to_str().unwrap()], &envs);
    assert_eq!(code, 1);
    assert!(err.contains("newer wxlogin"), "{err}");
    let (code, _, err) = run_bare(&["check", "--config", config.to_str().unwrap()], &envs);
    assert_eq!(code, 1);
    assert!(err.contains("newer"), "{err}");
}

#[test]
fn check_refuses_a_database_that_is_not_wxlogins() {
    let dir = TempDir::new("foreign");
    let config = write_config(dir.path(), "http://127.0.0.1:9", "");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let db = rusqlite::Connection::open(dir.path().join("data/wxlogin.db")).unwrap();
    db.execute_batch("CREATE TABLE notes (x)").unwrap();
    drop(db);
    let (code, _, err) = run_bare(&["check", "--config", config.to_str().unwrap()], &[("WXLOGIN_SECRET_MAIN", "s")]);
    assert_eq!(code, 1, "a foreign database must not pass as healthy");
    assert!(err.contains("no wxlogin schema"), "{err}");
}

/// The access log is written off the request path, in batches: a clean stop must still
/// write every line, the last requests' included, each once and whole.
#[test]
fn a_clean_stop_writes_every_access_line() {
    let dir = TempDir::new("access");
    let config = write_config(dir.path(), "http://127.0.0.1:9", "");
    let log = dir.path().join("stderr.log");
    let (mut child, addr) = spawn_listening(
        &["serve", "--config", config.to_str().unwrap()],
        &[("WXLOGIN_SECRET_MAIN", "s"), ("RUST_LOG", "info")],
        &log,
    );
    const N: usize = 300;
    for i in 0..N {
        let r =
            send(&format!("http://{addr}/v1/session"), "GET", None, None, &[("X-Request-Id", &format!("probe{i}"))]);
        assert_eq!(r.status, 401);
    }
    // No pause: the last lines are still queued when SIGTERM arrives.
    assert!(sigterm_and_wait(&mut child, Duration::from_secs(10)).success());
    let text = std::fs::read_to_string(&log).unwrap();
    // A line is queued after its response is written, so the next request (sent on that
    // response) may be queued first: each line once, in any order.
    let mut ids: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" wxlogin::access] GET /v1/session 401 "))
        .filter_map(|l| l.rsplit("rid=").next())
        .collect();
    ids.sort_unstable();
    let mut expected: Vec<String> = (0..N).map(|i| format!("probe{i}")).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "every request has its access line, once:\n{text}");
    let stopped = text.find("stopped cleanly").expect("the stop is logged");
    assert!(text.rfind("wxlogin::access]").unwrap() < stopped, "access lines are written before the stop is reported");
}

/// `wxlogin demo` on a free port: the walk-through's WeChat Pay steps, over real HTTP,
/// order a product, pay it at the built-in fake, see it paid, and a redelivered
/// notification changes nothing (one `order.paid` event in the demo's database).
#[test]
fn demo_walkthrough_pays_an_order_once() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = TempDir::new("demo");
    let log = dir.path().join("demo.log");
    let mut child = Command::new(bin())
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn demo");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut child = Running::from(child);
    let mut printed = String::new();
    while !printed.contains("Log out; the token stops working") {
        match lines.next() {
            Some(Ok(line)) => printed += &(line + "\n"),
            _ => panic!("demo exited early: {printed}\n{}", std::fs::read_to_string(&log).unwrap_or_default()),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let base = printed.lines().find_map(|l| l.strip_prefix("listening on ")).expect("listening line").to_string();
    let fake = printed
        .split_whitespace()
        .find(|w| w.starts_with("http://") && !w.starts_with(&base) && !w.contains("/v1/"))
        .expect("the fake's address")
        .trim_end_matches(',')
        .to_string();
    for step in ["/v1/pay/orders", "/__fake/pay/pay", "?sync=true", "/__fake/pay/notify", "/__fake/pay/deliveries"] {
        assert!(printed.contains(step), "the walk-through shows {step}:\n{printed}");
    }

    // The steps as the walk-through prints them: log in, order, pay, see it paid.
    let code = send(&format!("{fake}/__fake/login"), "POST", None, Some(json!({"user": "alice"}).to_string()), &[])
        .json()["code"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(&format!("{base}/v1/login"), "POST", None, Some(json!({"code": code}).to_string()), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json()["token"].as_str().unwrap().to_string();
    let body = json!({"product": "vip30"}).to_string();
    let r = send(&format!("{base}/v1/pay/orders"), "POST", Some(&token), Some(body), &[]);
    assert_eq!(r.status, 201, "{}", r.text);
    let no = r.json()["order"]["out_trade_no"].as_str().unwrap().to_string();
    let body = json!({"out_trade_no": no, "notify": {"wait": true}}).to_string();
    let r = send(&format!("{fake}/__fake/pay/pay"), "POST", None, Some(body), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let order_url = format!("{base}/v1/pay/orders/{no}");
    let paid = send(&format!("{order_url}?sync=true"), "GET", Some(&token), None, &[]).json();
    assert_eq!(paid["state"], "paid", "{paid}");

    // WeChat Pay delivers it again: answered 204, nothing changes.
    let body = json!({"out_trade_no": no, "wait": true}).to_string();
    assert_eq!(send(&format!("{fake}/__fake/pay/notify"), "POST", None, Some(body), &[]).status, 200);
    let r = send(&format!("{fake}/__fake/pay/deliveries?out_trade_no={no}"), "GET", None, None, &[]);
    let deliveries = r.json()["deliveries"].as_array().cloned().unwrap();
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    assert!(deliveries.iter().all(|d| d["status"] == 204), "{deliveries:?}");
    assert_eq!(send(&order_url, "GET", Some(&token), None, &[]).json(), paid, "the redelivery changed nothing");

    // The demo's (temporary) database: one order.paid event.
    let logged = std::fs::read_to_string(&log).unwrap();
    let db = logged
        .split("database SQLite ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("the database path is logged: {logged}"));
    let c = rusqlite::Connection::open(db).unwrap();
    let events: i64 = c
        .query_row("SELECT count(*) FROM pay_events WHERE out_trade_no = ?1 AND type = 'order.paid'", [&no], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(events, 1);
    drop(c);
    assert!(
        sigterm_and_wait(&mut child, Duration::from_secs(10)).success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(!Path::new(db).exists(), "the demo's folder is removed on exit");
}
