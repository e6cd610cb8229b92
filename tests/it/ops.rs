//! Operating it: backup and restore, the admin commands against a serving instance,
//! the login rate limit, background maintenance, graceful shutdown and /metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wxlogin::app::{App, RateLimiter};
use wxlogin::fake_wechat::{FakeOptions, FakeWeChat};
use wxlogin::http::RunningServer;
use wxlogin::store::{Caller, NewLogin, Terms};

use crate::support::*;

/// An appliance.toml without any secret, naming the database `db` (a SQLite file, or a
/// PostgreSQL URL).
fn admin_config(dir: &Path, db: &wxlogin::config::DatabaseConfig) -> PathBuf {
    let path = dir.join("admin.toml");
    let database = match &db.url {
        Some(url) => format!("url = \"{}\"", url.expose()),
        None => format!("path = \"{}\"", db.path.display()),
    };
    let text = format!("[database]\n{database}\n\n[[apps]]\nname = \"main\"\nappid = \"{APPID}\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

fn login_url(base: &str, code: &str, xff: Option<&str>) -> Reply {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(x) = xff {
        headers.push(("X-Forwarded-For", x));
    }
    send(&format!("{base}/v1/login"), "POST", None, Some(json!({"code": code}).to_string()), &headers)
}

// SQLite only: `backup` copies the SQLite file; on PostgreSQL it points to pg_dump.
sqlite_only! {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use wxlogin::store::SCHEMA_VERSION;

    #[test]
    fn ops_backup_during_a_stream_of_logins_is_complete_and_verified() {
        let s = Arc::new(TestServer::start());
        let db = s.app().store.sqlite().expect("a SQLite store").path().to_path_buf();
        let before: Vec<String> =
            (0..20).map(|i| s.login(&format!("early-{i}")).1["user"]["openid"].as_str().unwrap().to_string()).collect();

        let stop = Arc::new(AtomicBool::new(false));
        let during = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let (s, stop, during) = (s.clone(), stop.clone(), during.clone());
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        s.login(&format!("stream-{t}-{i}"));
                        during.fetch_add(1, Ordering::SeqCst);
                        i += 1;
                    }
                })
            })
            .collect();
        while during.load(Ordering::SeqCst) < 10 {
            std::thread::sleep(Duration::from_millis(10));
        }

        let dir = TempDir::new("backup");
        let config = admin_config(dir.path(), &wxlogin::config::DatabaseConfig { path: db.clone(), ..Default::default() });
        let cfg = config.to_str().unwrap();
        let dest = dir.path().join("b.db");
        let (code, out, err) = run_bare(&["backup", dest.to_str().unwrap(), "--config", cfg], &[]);
        let at_end = during.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(code, 0, "backup failed: {err}");
        assert!(out.contains("integrity_check ok") && out.contains(dest.to_str().unwrap()), "{out}");
        assert!(during.load(Ordering::SeqCst) > at_end, "logins kept going during and after the backup");

        assert_eq!(integrity(&dest), "ok");
        let c = rusqlite::Connection::open(&dest).unwrap();
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "delete", "a backup is one self-contained file");
        drop(c);
        let saved = openids(&dest);
        for o in &before {
            assert!(saved.contains(o), "user {o} created before the backup is missing");
        }
        assert!(!dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));

        // Never overwrites without --force; with it, replaces.
        let size = std::fs::metadata(&dest).unwrap().len();
        let (code, _, err) = run_bare(&["backup", dest.to_str().unwrap(), "--config", cfg], &[]);
        assert_eq!(code, 1);
        assert!(err.contains("already exists") && err.contains("--force"), "{err}");
        assert_eq!(std::fs::metadata(&dest).unwrap().len(), size);
        let (code, _, err) = run_bare(&["backup", dest.to_str().unwrap(), "--force", "--config", cfg], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(openids(&dest).len() > saved.len());
        // Nor onto the live database.
        let (code, _, err) = run_bare(&["backup", db.to_str().unwrap(), "--force", "--config", cfg], &[]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("live database"), "{err}");
    }
}

// SQLite only: `restore` replaces the SQLite file; on PostgreSQL it points to pg_restore.
sqlite_only! {
    #[test]
    fn ops_restore_refuses_while_serving_and_works_when_stopped() {
        let fake = FakeWeChat::start(
            "127.0.0.1:0",
            FakeOptions { apps: vec![(APPID.into(), SECRET.into())], ..FakeOptions::default() },
        )
        .unwrap();
        let dir = TempDir::new("restore");
        let config = write_config(dir.path(), &fake.base_url(), "");
        let cfg = config.to_str().unwrap();
        let db = dir.path().join("data/wxlogin.db");
        let envs = [("WXLOGIN_SECRET_MAIN", SECRET)];
        let serve = |log: &str| spawn_listening(&["serve", "--config", cfg], &envs, &dir.path().join(log));

        let (mut child, addr) = serve("serve1.log");
        let base = format!("http://{addr}");
        let token = |user: &str| {
            let r = login_url(&base, &fake.login_code(APPID, user), None);
            assert_eq!(r.status, 200, "{}", r.text);
            r.json()["token"].as_str().unwrap().to_string()
        };
        let (ann, _ben) = (token("ann"), token("ben"));
        let backup = dir.path().join("nightly.db");
        let (code, _, err) = run_bare(&["backup", backup.to_str().unwrap(), "--config", cfg], &[]);
        assert_eq!(code, 0, "{err}");
        let cat = token("cat");

        let (code, _, err) = run_bare(&["restore", backup.to_str().unwrap(), "--config", cfg], &[]);
        assert_eq!(code, 1, "restore must refuse while serving");
        assert!(err.contains("in use") && err.contains("stop it first"), "{err}");
        let r = send(&format!("{base}/v1/session"), "GET", Some(&cat), None, &[]);
        assert_eq!(r.status, 200, "the refused restore changed nothing");
        assert!(sigterm_and_wait(&mut child, Duration::from_secs(10)).success());

        // Bad sources are refused before anything is touched.
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![1u8; 4096]).unwrap();
        let (code, _, err) = run_bare(&["restore", garbage.to_str().unwrap(), "--config", cfg], &[]);
        assert_eq!(code, 1);
        assert!(err.contains("not restoring"), "{err}");
        let newer = dir.path().join("newer.db");
        std::fs::copy(&backup, &newer).unwrap();
        rusqlite::Connection::open(&newer).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let (code, _, err) = run_bare(&["restore", newer.to_str().unwrap(), "--config", cfg], &[]);
        assert_eq!(code, 1);
        assert!(err.contains("newer wxlogin"), "{err}");
        assert_eq!(openids(&db).len(), 3);

        // A stale -wal next to the live file must not be replayed onto the restored one.
        std::fs::write(dir.path().join("data/wxlogin.db-wal"), b"stale").unwrap();
        let (code, out, err) = run_bare(&["restore", backup.to_str().unwrap(), "--config", cfg], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("2 user(s)") && out.contains("before-restore"), "{out}");
        assert!(!dir.path().join("data/wxlogin.db-wal").exists());
        assert_eq!(integrity(&db), "ok");
        assert_eq!(openids(&db).len(), 2);

        let (mut child, addr) = serve("serve2.log");
        let base = format!("http://{addr}");
        let r = send(&format!("{base}/v1/session"), "GET", Some(&ann), None, &[]);
        assert_eq!(r.status, 200, "a session from the backup works: {}", r.text);
        let r = send(&format!("{base}/v1/session"), "GET", Some(&cat), None, &[]);
        assert_eq!(r.status, 401, "a session newer than the backup is gone");
        let r = login_url(&base, &fake.login_code(APPID, "ann"), None);
        assert_eq!(r.json()["new_user"], false, "ann is a restored user");
        assert!(sigterm_and_wait(&mut child, Duration::from_secs(10)).success());
    }
}

#[test]
fn ops_admin_commands_work_against_a_serving_instance() {
    let s = TestServer::start();
    let dir = TempDir::new("admin");
    let config = admin_config(dir.path(), &s.app().config.database);
    let cfg = config.to_str().unwrap();
    let (ann1, body) = s.login("ann");
    let (ann2, _) = s.login("ann");
    let (ben, ben_body) = s.login("ben");
    let ann_id = body["user"]["id"].as_i64().unwrap().to_string();
    let ann_openid = body["user"]["openid"].as_str().unwrap().to_string();
    let ben_openid = ben_body["user"]["openid"].as_str().unwrap().to_string();
    assert_eq!(s.patch("/v1/me", Some(&ann1), &json!({"nickname": "Annie"})).status, 200);

    let (code, out, err) = run_bare(&["users", "list", "--config", cfg], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ID") && out.contains("LAST LOGIN"), "{out}");
    assert!(out.contains(&ann_openid) && out.contains(&ben_openid) && out.contains("Annie"), "{out}");
    let (_, out, _) = run_bare(&["users", "list", "--limit", "1", "--app", "main", "--config", cfg], &[]);
    assert!(out.contains(&ben_openid) && !out.contains(&ann_openid), "newest first, limited: {out}");

    for who in [ann_id.as_str(), ann_openid.as_str()] {
        let (code, out, err) = run_bare(&["users", "show", who, "--config", cfg], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&ann_openid) && out.contains("Annie") && out.contains("live sessions  2"), "{out}");
    }
    let (code, _, err) = run_bare(&["users", "show", "999999", "--config", cfg], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no user"), "{err}");

    let (code, out, err) = run_bare(&["sessions", "list", "--user", &ann_id, "--config", cfg], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 live session(s)"), "{out}");
    assert!(!out.contains(&ann1) && !out.contains(&ann2), "tokens are never printed");
    let full_hash = hex(&wxlogin::secrets::sha256(ann1.as_bytes()));
    assert!(!out.contains(&full_hash) && out.contains(&full_hash[..8]), "only a hash prefix: {out}");

    // On PostgreSQL a serving instance keeps its login counts in memory, and its
    // maintenance thread writes them about once a second; TestServer runs no such thread.
    if s.engine() == Engine::Postgres {
        s.app().store.checkpoint().expect("write the login counts");
    }
    let (code, out, err) = run_bare(&["stats", "--config", cfg], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("users:          2") && out.contains("live sessions:  3"), "{out}");
    assert!(out.contains("logins today:   3"), "{out}");
    assert!(out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["main", "2", "3", "3"]), "{out}");

    let (code, _, _) = run_bare(&["sessions", "revoke", "--config", cfg], &[]);
    assert_eq!(code, 2, "revoke needs --user or --all");
    let (code, out, err) = run_bare(&["sessions", "revoke", "--user", &ann_id, "--config", cfg], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked 2 session(s)"), "{out}");
    for t in [&ann1, &ann2] {
        let r = s.get("/v1/session", Some(t));
        assert_eq!(r.status, 401);
        assert_eq!(r.error_code(), "unauthorized");
    }
    assert_eq!(s.get("/v1/session", Some(&ben)).status, 200);
    let (code, out, _) = run_bare(&["sessions", "revoke", "--all", "--config", cfg], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("revoked all 1 session(s)"), "{out}");
    assert_eq!(s.get("/v1/session", Some(&ben)).status, 401);
}

#[test]
fn ops_revoking_a_users_sessions_ends_the_replays_of_their_codes() {
    let s = TestServer::start();
    let dir = TempDir::new("revoke");
    let config = admin_config(dir.path(), &s.app().config.database);
    let cfg = config.to_str().unwrap();
    let login = |code: &str| s.post("/v1/login", None, &json!({"code": code}));
    let (ann_code, ben_code) = (s.code("ann"), s.code("ben"));
    let ann = login(&ann_code).json();
    assert_eq!(login(&ben_code).status, 200);
    let ann_id = ann["user"]["id"].as_i64().unwrap().to_string();
    let (code, out, err) = run_bare(&["sessions", "revoke", "--user", &ann_id, "--config", cfg], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked 1 session(s)"), "{out}");
    // The same client, inside the window: the code no longer brings ann back.
    let r = login(&ann_code);
    assert_eq!((r.status, r.error_code()), (401, "invalid_code".into()), "{}", r.text);
    assert_eq!(r.json()["error"]["wechat_errcode"], 40163);
    // Ben's sessions were not revoked: his code still replays, until everyone's are.
    assert_eq!(login(&ben_code).status, 200);
    let (code, _, err) = run_bare(&["sessions", "revoke", "--all", "--config", cfg], &[]);
    assert_eq!(code, 0, "{err}");
    let r = login(&ben_code);
    assert_eq!((r.status, r.error_code()), (401, "invalid_code".into()), "{}", r.text);
    assert_eq!(s.fake_calls("jscode2session"), 2, "refusals do not ask WeChat");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn ops_rate_limit_honours_forwarded_for_only_when_trusted() {
    // Not trusted (the default): the TCP peer counts, whatever the header says.
    let s = TestServer::start_with(|c| c.rate_limit.login_per_ip_per_minute = 2);
    for i in 0..2 {
        assert_eq!(login_url(&s.base, &s.code(&format!("u{i}")), Some(&format!("10.0.0.{i}"))).status, 200);
    }
    let r = login_url(&s.base, &s.code("u3"), Some("10.0.0.99"));
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limited");
    let retry: u64 = r.header("Retry-After").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    drop(s);

    // Trusted: the last entry (the one the proxy appended) is the client.
    let s = TestServer::start_with(|c| {
        c.rate_limit.login_per_ip_per_minute = 2;
        c.server.trust_forwarded_for = true;
    });
    for i in 0..2 {
        assert_eq!(login_url(&s.base, &s.code(&format!("a{i}")), Some("6.6.6.6, 203.0.113.5")).status, 200);
    }
    assert_eq!(login_url(&s.base, &s.code("a2"), Some("203.0.113.5")).status, 429, "same last entry");
    assert_eq!(login_url(&s.base, &s.code("a3"), Some("7.7.7.7, 203.0.113.5")).status, 429, "spoofed first entry");
    assert_eq!(login_url(&s.base, &s.code("b0"), Some("203.0.113.5, 198.51.100.9")).status, 200);
    assert_eq!(login_url(&s.base, &s.code("c0"), None).status, 200, "no header: the peer");
}

#[test]
fn ops_maintenance_purges_in_the_background_and_the_limiter_forgets_old_clients() {
    let fake = FakeWeChat::start(
        "127.0.0.1:0",
        FakeOptions { apps: vec![(APPID.into(), SECRET.into())], ..FakeOptions::default() },
    )
    .unwrap();
    let dir = TempDir::new("maint");
    let mut app = App::open(test_config(dir.path(), &fake.base_url())).unwrap();
    Engine::current().assert_store(&app.store);
    app.login_limiter = RateLimiter::new(2, Duration::from_millis(500));
    let app = Arc::new(app);

    // A session that expired long ago, and a live one.
    let now = wxlogin::store::now();
    let key = wxlogin::secrets::Secret::new("k");
    for (openid, at) in [("o-old", now - 30 * 86_400), ("o-new", now)] {
        app.store
            .record_login(&NewLogin {
                app: "main",
                openid,
                unionid: None,
                session_key: &key,
                code_hash: wxlogin::secrets::sha256(openid.as_bytes()),
                token_hash: wxlogin::secrets::sha256(format!("t-{openid}").as_bytes()),
                terms: Terms { now: at, ttl: 3600, max_lifetime: 7200, max_per_user: 50 },
                caller: Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) },
            })
            .unwrap();
    }
    let sessions = || -> i64 {
        database_sql(&app.config.database, "SELECT count(*) FROM sessions").trim().parse().expect("a count")
    };
    assert_eq!(sessions(), 2);

    let server = RunningServer::start(app.clone()).unwrap();
    let base = format!("http://{}", server.addr());
    let maintenance = app.spawn_maintenance(Duration::from_millis(100)).unwrap();
    for i in 0..2 {
        assert_eq!(login_url(&base, &fake.login_code(APPID, &format!("m{i}")), None).status, 200);
    }
    assert_eq!(login_url(&base, &fake.login_code(APPID, "m2"), None).status, 429);
    assert_eq!(app.login_limiter.len(), 1);

    // The maintenance thread purges the expired session and forgets the client once its
    // window is over, while requests keep being answered.
    let deadline = Instant::now() + Duration::from_secs(5);
    while (sessions() != 3 || !app.login_limiter.is_empty()) && Instant::now() < deadline {
        assert_eq!(send(&format!("{base}/healthz"), "GET", None, None, &[]).status, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sessions(), 3, "the long-expired session is purged, the live ones stay");
    assert!(app.login_limiter.is_empty(), "old clients are forgotten");
    assert_eq!(login_url(&base, &fake.login_code(APPID, "m3"), None).status, 200);
    server.shutdown();
    maintenance.join().unwrap();
}

#[test]
fn ops_sigterm_lets_in_flight_logins_finish_and_refuses_new_work() {
    let fake = FakeWeChat::start(
        "127.0.0.1:0",
        FakeOptions { apps: vec![(APPID.into(), SECRET.into())], ..FakeOptions::default() },
    )
    .unwrap();
    let dir = TempDir::new("drain");
    let config = write_config(dir.path(), &fake.base_url(), "");
    // WeChat will take 1.5 s; let wxlogin wait for it.
    let text = std::fs::read_to_string(&config).unwrap().replace("timeout_ms = 1000", "timeout_ms = 5000");
    std::fs::write(&config, text).unwrap();
    let (mut child, addr) = spawn_listening(
        &["serve", "--config", config.to_str().unwrap()],
        &[("WXLOGIN_SECRET_MAIN", SECRET)],
        &dir.path().join("stderr.log"),
    );
    let base = format!("http://{addr}");
    let r = login_url(&base, &fake.login_code(APPID, "warm"), None);
    assert_eq!(r.status, 200);
    let token = r.json()["token"].as_str().unwrap().to_string();

    send(
        &format!("{}/__fake/behaviour", fake.base_url()),
        "POST",
        None,
        Some(json!({"latency_ms": 1500}).to_string()),
        &[],
    );
    let in_flight: Vec<_> = (0..4)
        .map(|i| {
            let (base, code) = (base.clone(), fake.login_code(APPID, &format!("slow-{i}")));
            std::thread::spawn(move || login_url(&base, &code, None))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    let late = send(&format!("{base}/v1/session"), "GET", Some(&token), None, &[]);
    assert_eq!(late.status, 503, "a request during the drain: {}", late.text);
    assert_eq!(late.error_code(), "unavailable");

    for t in in_flight {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "an in-flight login finished: {}", r.text);
    }
    let status = wait_with_limit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let users = database_sql(&database_of(&config), "SELECT count(*) FROM users");
    assert_eq!(users.trim(), "5");
}

/// A metric name, its labels and its value.
type Sample = (String, Vec<(String, String)>, f64);

#[test]
fn ops_metrics_parse_as_prometheus_text() {
    let s = TestServer::start();
    let (token, _) = s.login("ann");
    s.login("ann");
    assert_eq!(s.get("/v1/session", Some(&token)).status, 200);
    assert_eq!(s.get("/v1/session", Some("nope")).status, 401);
    assert_eq!(s.get("/no/such/path", None).status, 404);
    let r = s.get("/metrics", None);
    assert_eq!(r.status, 200);
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));

    let mut types = std::collections::HashMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    for line in r.text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let parts: Vec<&str> = rest.splitn(3, ' ').collect();
            assert!(parts.len() == 3 && ["HELP", "TYPE"].contains(&parts[0]), "bad comment: {line}");
            assert!(parts[1].starts_with("wxlogin_"), "{line}");
            if parts[0] == "TYPE" {
                assert!(["counter", "gauge", "histogram"].contains(&parts[2]), "{line}");
                types.insert(parts[1].to_string(), parts[2].to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels: {line}"));
                let labels = body
                    .split("\",")
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
        };
        assert!(name.starts_with("wxlogin_") && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{line}");
        let family = ["_bucket", "_sum", "_count"].iter().fold(name.clone(), |n, s| {
            if types.get(n.trim_end_matches(s)).is_some_and(|t| t == "histogram") {
                n.trim_end_matches(s).to_string()
            } else {
                n
            }
        });
        assert!(types.contains_key(&family), "sample before its TYPE: {line}");
        samples.push((name, labels, value));
    }
    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(a, b)| a == k && b == v)))
            .map(|s| s.2)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", r.text))
    };
    assert_eq!(get("wxlogin_requests_total", &[("route", "/v1/login"), ("status", "200")]), 2.0);
    assert_eq!(get("wxlogin_requests_total", &[("route", "/v1/session"), ("status", "401")]), 1.0);
    assert_eq!(get("wxlogin_logins_total", &[("result", "new_user")]), 1.0);
    assert_eq!(get("wxlogin_logins_total", &[("result", "returning")]), 1.0);
    assert_eq!(get("wxlogin_live_sessions", &[]), 2.0);
    assert_eq!(get("wxlogin_wechat_calls_total", &[("api", "jscode2session"), ("errcode", "0")]), 2.0);
    // A cumulative histogram: buckets never decrease, +Inf equals the count.
    let buckets: Vec<f64> =
        samples.iter().filter(|(n, _, _)| n == "wxlogin_request_duration_seconds_bucket").map(|s| s.2).collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    let count = get("wxlogin_request_duration_seconds_count", &[]);
    assert_eq!(*buckets.last().unwrap(), count);
    assert!(count >= 5.0);
}

/// Behind a proxy on the same host every TCP peer is loopback: with
/// `trust_forwarded_for`, the forwarded client decides.
#[test]
fn ops_metrics_behind_a_same_host_proxy_follow_the_forwarded_client() {
    let metrics = |s: &TestServer, xff: Option<&str>| {
        let headers: Vec<(&str, &str)> = xff.map(|x| ("X-Forwarded-For", x)).into_iter().collect();
        send(&s.url("/metrics"), "GET", None, None, &headers)
    };
    let s = TestServer::start_with(|c| c.server.trust_forwarded_for = true);
    let r = metrics(&s, Some("203.0.113.9"));
    assert_eq!((r.status, r.error_code()), (404, "not_found".into()), "a remote client behind the proxy");
    assert_eq!(metrics(&s, Some("127.0.0.1, 203.0.113.9")).status, 404, "only the last entry counts");
    assert_eq!(metrics(&s, Some("2001:db8::9")).status, 404);
    assert_eq!(metrics(&s, None).status, 200, "no proxy: the loopback peer");
    assert_eq!(metrics(&s, Some("127.0.0.1")).status, 200, "a loopback client through the proxy");
    assert_eq!(metrics(&s, Some("::1")).status, 200);
    drop(s);

    // Not trusted: the header changes nothing.
    let s = TestServer::start();
    assert_eq!(metrics(&s, Some("203.0.113.9")).status, 200);
}

/// One subscriber holds a whole IPv6 /64: varying the low 64 bits must not buy more
/// attempts at WeChat.
#[test]
fn ops_rate_limit_counts_an_ipv6_64_as_one_client() {
    let s = TestServer::start_with(|c| {
        c.rate_limit.login_per_ip_per_minute = 30;
        c.server.trust_forwarded_for = true;
    });
    for i in 0..35u32 {
        let xff = format!("2001:db8:aa:bb:{:x}:{:x}:{:x}:{:x}", i * 7919 % 65536, i, 65535 - i, i + 1);
        let r = login_url(&s.base, &format!("bad-code-{i}"), Some(&xff));
        if i < 30 {
            assert_eq!((r.status, r.error_code()), (401, "invalid_code".into()), "attempt {i}: {}", r.text);
        } else {
            assert_eq!((r.status, r.error_code()), (429, "rate_limited".into()), "attempt {i}: {}", r.text);
            let retry: u64 = r.header("Retry-After").expect("Retry-After").parse().unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
        }
    }
    assert_eq!(s.fake_calls("jscode2session"), 30, "nothing past the limit reached WeChat");
    // The neighbouring /64 is another client.
    assert_eq!(login_url(&s.base, "bad-code-x", Some("2001:db8:aa:bc::1")).status, 401);
    // An IPv4 client written as IPv4-mapped IPv6 is the same client.
    for _ in 0..30 {
        assert_eq!(login_url(&s.base, "bad-code-y", Some("198.51.100.20")).status, 401);
    }
    assert_eq!(login_url(&s.base, "bad-code-z", Some("::ffff:198.51.100.20")).status, 429);
}
