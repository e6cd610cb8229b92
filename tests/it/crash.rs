//! Crash safety with the real binary: SIGKILL under a stream of logins loses no answered
//! session, the server comes back on the same files, and `wxlogin backup` racing the
//! writers (or a kill) yields a verified file holding everything answered before it; a
//! kill while WeChat Pay notifications are applied, then their redelivery, applies each
//! payment exactly once (that one on PostgreSQL too).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use wxlogin::fake_wechat::{FakeOptions, FakeWeChat};

use crate::support::*;

// SQLite only (see main.rs): SIGKILL under logins with `backup` racing it, and the
// backups racing logins, are about the SQLite file (pg::two_instances kills a binary on
// PostgreSQL); the property test is the HTTP layer's.
sqlite_only! {
    use std::process::{Command, Output, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;

    /// One answered login: its session token and the user's openid.
    #[derive(Clone, Debug)]
    struct Answered {
        token: String,
        openid: String,
    }

    /// Four threads logging in as fresh users as fast as they can until stopped; transport
    /// errors (the server killed under them) are counted, never a panic.
    struct Stream {
        stop: Arc<AtomicBool>,
        answered: Arc<Mutex<Vec<Answered>>>,
        threads: Vec<JoinHandle<usize>>,
    }

    impl Stream {
        fn start(fake: &Arc<FakeWeChat>, addr: SocketAddr, tag: &str) -> Stream {
            let stop = Arc::new(AtomicBool::new(false));
            let answered = Arc::new(Mutex::new(Vec::new()));
            let threads = (0..4)
                .map(|t| {
                    let (fake, stop, answered) = (fake.clone(), stop.clone(), answered.clone());
                    let tag = tag.to_string();
                    std::thread::spawn(move || {
                        let url = format!("http://{addr}/v1/login");
                        let mut failures = 0;
                        let mut i = 0;
                        while !stop.load(Ordering::SeqCst) {
                            let code = fake.login_code(APPID, &format!("{tag}-{t}-{i}"));
                            i += 1;
                            let body = Some(json!({"code": code}).to_string());
                            match try_send(&url, "POST", None, body, &[("Content-Type", "application/json")]) {
                                Ok(r) if r.status == 200 => {
                                    let v = r.json();
                                    let token = v["token"].as_str().expect("token").to_string();
                                    let openid = v["user"]["openid"].as_str().expect("openid").to_string();
                                    answered.lock().unwrap().push(Answered { token, openid });
                                }
                                Ok(r) => panic!("login answered {}: {}", r.status, r.text),
                                Err(_) => {
                                    failures += 1;
                                    std::thread::sleep(Duration::from_millis(5));
                                }
                            }
                        }
                        failures
                    })
                })
                .collect();
            Stream { stop, answered, threads }
        }

        fn answered(&self) -> Vec<Answered> {
            self.answered.lock().unwrap().clone()
        }

        /// Waits until at least `n` logins were answered (bounded).
        fn wait_for(&self, n: usize) {
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.answered.lock().unwrap().len() < n {
                assert!(Instant::now() < deadline, "fewer than {n} logins answered in 20 s");
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        /// Stops the threads; returns every answered login and the transport failures.
        fn stop(self) -> (Vec<Answered>, usize) {
            self.stop.store(true, Ordering::SeqCst);
            let failures = self.threads.into_iter().map(|t| t.join().expect("login thread")).sum();
            let answered = self.answered.lock().unwrap().clone();
            (answered, failures)
        }
    }

    struct Setup {
        fake: Arc<FakeWeChat>,
        dir: TempDir,
        config: PathBuf,
    }

    impl Setup {
        fn new(tag: &str) -> Setup {
            let fake = FakeWeChat::start(
                "127.0.0.1:0",
                FakeOptions { apps: vec![(APPID.into(), SECRET.into())], ..FakeOptions::default() },
            )
            .expect("fake wechat");
            let dir = TempDir::new(tag);
            // The default of 30 logins per IP per minute would stop the stream at once.
            let config = write_config(dir.path(), &fake.base_url(), "[rate_limit]\nlogin_per_ip_per_minute = 1000000\n");
            Setup { fake: Arc::new(fake), dir, config }
        }

        fn cfg(&self) -> &str {
            self.config.to_str().unwrap()
        }

        fn serve(&self, log: &str) -> (Running, SocketAddr) {
            spawn_listening(
                &["serve", "--config", self.cfg()],
                &[("WXLOGIN_SECRET_MAIN", SECRET)],
                &self.dir.path().join(log),
            )
        }

        fn backup_command(&self, dest: &Path) -> Command {
            let mut c = Command::new(bin());
            c.args(["backup", dest.to_str().unwrap(), "--config", self.cfg()]).env_remove("WXLOGIN_CONFIG");
            c
        }

        fn log(&self, name: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
        }
    }

    fn no_temp_files(dir: &Path) -> bool {
        !dir.read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp"))
    }

    fn stderr(out: &Output) -> String {
        String::from_utf8_lossy(&out.stderr).into()
    }

    #[test]
    fn crash_sigkill_under_logins_loses_no_answered_session() {
        let s = Setup::new("crash-kill");
        let (mut child, addr) = s.serve("serve1.log");
        let stream = Stream::start(&s.fake, addr, "kill");
        stream.wait_for(1);
        std::thread::sleep(Duration::from_secs(1));

        // A backup started just before the kill: it reads the database file, not the server,
        // so it must either finish with a verified copy or fail without leaving DEST behind.
        let backups = s.dir.path().join("backups");
        std::fs::create_dir_all(&backups).unwrap();
        let dest = backups.join("during-kill.db");
        let before_backup = stream.answered();
        let backup = s.backup_command(&dest).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn backup");

        signal(&child, "KILL");
        let status = wait_with_limit(&mut child, Duration::from_secs(10));
        assert!(!status.success(), "killed: {status:?}");
        let (answered, _failures) = stream.stop();
        assert!(answered.len() > 20, "only {} logins answered before the kill", answered.len());

        let backup = backup.wait_with_output().expect("wait for backup");
        if backup.status.success() {
            assert!(dest.is_file(), "a successful backup leaves DEST");
            assert_eq!(integrity(&dest), "ok");
            let saved = openids(&dest);
            for a in &before_backup {
                assert!(saved.contains(&a.openid), "user {} answered before the backup is missing", a.openid);
            }
        } else {
            assert!(!dest.exists(), "a failed backup leaves no DEST: {}", stderr(&backup));
        }
        assert!(no_temp_files(&backups), "a backup leaves no temporary file");

        // The kernel released the server lock and SQLite recovers the WAL: it comes back up.
        let (mut child, addr) = s.serve("serve2.log");
        let base = format!("http://{addr}");
        for a in &answered {
            let r = send(&format!("{base}/v1/session"), "GET", Some(&a.token), None, &[]);
            assert_eq!(r.status, 200, "session of {} lost in the crash: {}", a.openid, r.text);
        }
        // And it still takes new logins.
        let r = send(
            &format!("{base}/v1/login"),
            "POST",
            None,
            Some(json!({"code": s.fake.login_code(APPID, "after-crash")}).to_string()),
            &[("Content-Type", "application/json")],
        );
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(sigterm_and_wait(&mut child, Duration::from_secs(10)).success(), "{}", s.log("serve2.log"));
        assert_eq!(integrity(&s.dir.path().join("data/wxlogin.db")), "ok");
    }

    #[test]
    fn crash_backups_racing_logins_hold_every_answered_user() {
        let s = Setup::new("crash-backup");
        let (mut child, addr) = s.serve("serve.log");
        let stream = Stream::start(&s.fake, addr, "race");
        stream.wait_for(10);

        let backups = s.dir.path().join("backups");
        std::fs::create_dir_all(&backups).unwrap();
        let mut copies = Vec::new();
        for n in 0..2 {
            let dest = backups.join(format!("b{n}.db"));
            let before = stream.answered();
            let out = s.backup_command(&dest).output().expect("run backup");
            assert!(out.status.success(), "backup {n} failed: {}", stderr(&out));
            copies.push((dest, before));
            std::thread::sleep(Duration::from_millis(200));
        }
        let (answered, failures) = stream.stop();
        assert_eq!(failures, 0, "no transport errors while the server runs");
        assert!(answered.len() > 20, "only {} logins answered", answered.len());
        assert!(answered.len() > copies[1].1.len(), "logins went on during the backups");

        for (dest, before) in &copies {
            assert_eq!(integrity(dest), "ok", "{}", dest.display());
            let saved = openids(dest);
            for a in before {
                assert!(saved.contains(&a.openid), "{}: user {} answered before it is missing", dest.display(), a.openid);
            }
        }
        assert!(no_temp_files(&backups));
        assert!(sigterm_and_wait(&mut child, Duration::from_secs(10)).success(), "{}", s.log("serve.log"));
    }

    /// Arbitrary bytes as a login body over a raw socket: each gets an HTTP answer, and the
    /// server still answers /healthz afterwards.
    #[test]
    fn crash_prop_arbitrary_login_bytes_leave_the_server_answering() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        use std::io::{Read, Write};

        let s = TestServer::start();
        let addr = s.addr();
        let body = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            "\\{(\"code\":(\"[^\"]{0,12}\"|[0-9]{1,3}|null),?){0,2}\\}?".prop_map(String::into_bytes),
        ];
        let mut runner = TestRunner::new(Config { cases: 32, failure_persistence: None, ..Config::default() });
        runner
            .run(&(body, 0usize..3), |(bytes, short)| {
                // Content-Length at most the body's length: the rest then reads as the next request.
                let n = bytes.len().saturating_sub(short);
                let mut c = std::net::TcpStream::connect(addr).expect("connect");
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let head = format!("POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n");
                c.write_all(head.as_bytes()).unwrap();
                let _ = c.write_all(&bytes);
                let mut answer = [0u8; 12];
                let got = c.read(&mut answer).unwrap_or(0);
                prop_assert!(answer[..got].starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(&answer[..got]));
                drop(c);
                let r = s.get("/healthz", None);
                prop_assert_eq!(r.status, 200, "{}", r.text);
                Ok(())
            })
            .unwrap();
    }
}

/// WeChat Pay's side of the payment crash test: a fake with the test merchant, and a
/// `serve` configuration with `[pay]` against it.
struct PaySetup {
    fake: FakeWeChat,
    dir: TempDir,
    config: PathBuf,
}

impl PaySetup {
    fn new() -> PaySetup {
        use wxlogin::fake_wechat as fake_pay;
        let pay = fake_pay::FakePayOptions { allow_http_notify: true, ..fake_pay::FakePayOptions::test() };
        let fake = FakeWeChat::start(
            "127.0.0.1:0",
            FakeOptions { apps: vec![(APPID.into(), SECRET.into())], pay: Some(pay), ..FakeOptions::default() },
        )
        .expect("fake wechat");
        let dir = TempDir::new("crash-pay");
        let config = write_config(dir.path(), &fake.base_url(), "");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text = text.replace("[server]", "[rate_limit]\nlogin_per_ip_per_minute = 1000000\n\n[server]");
        text.push_str(&pay_config_text(dir.path(), &fake.base_url(), "https://login.example.com/v1/pay/notify"));
        std::fs::write(&config, text).unwrap();
        PaySetup { fake, dir, config }
    }

    fn serve(&self, log: &str) -> (Running, SocketAddr) {
        spawn_listening(
            &["serve", "--config", self.config.to_str().unwrap()],
            &[("WXLOGIN_SECRET_MAIN", SECRET)],
            &self.dir.path().join(log),
        )
    }

    fn control(&self, path: &str, body: serde_json::Value) -> Result<Reply, String> {
        try_send(&format!("{}{path}", self.fake.base_url()), "POST", None, Some(body.to_string()), &[])
    }

    fn deliveries(&self) -> Vec<serde_json::Value> {
        let r = send(&format!("{}/__fake/pay/deliveries", self.fake.base_url()), "GET", None, None, &[]);
        r.json()["deliveries"].as_array().cloned().unwrap_or_default()
    }
}

/// Each order's state, and its `order.paid` events, as the database has them.
fn paid_records(config: &Path) -> std::collections::HashMap<String, (String, i64)> {
    let rows = database_sql(
        &database_of(config),
        "SELECT o.out_trade_no, o.state, \
         (SELECT count(*) FROM pay_events e WHERE e.out_trade_no = o.out_trade_no AND e.type = 'order.paid') \
         FROM orders o",
    );
    rows.lines()
        .map(|row| {
            let cells: Vec<&str> = row.split('|').collect();
            (cells[0].to_string(), (cells[1].to_string(), cells[2].parse().expect("a count")))
        })
        .collect()
}

/// SIGKILL while WeChat Pay's notifications (each delivered twice at once) are being
/// applied; back on the same database, WeChat Pay redelivers every notification, as it
/// retries: every order paid at WeChat Pay is paid here, exactly once.
#[test]
fn crash_sigkill_while_applying_notifications_applies_each_payment_once() {
    const ORDERS: usize = 60;
    let s = PaySetup::new();
    let (mut child, addr) = s.serve("serve1.log");
    let base = format!("http://{addr}");
    let mut nos = Vec::new();
    for u in 0..6 {
        let code = s.fake.login_code(APPID, &format!("payer-{u}"));
        let r = send(&format!("{base}/v1/login"), "POST", None, Some(json!({"code": code}).to_string()), &[]);
        assert_eq!(r.status, 200, "{}", r.text);
        let token = r.json()["token"].as_str().unwrap().to_string();
        for _ in 0..ORDERS / 6 {
            let body = json!({"product": "vip30"}).to_string();
            let r = send(&format!("{base}/v1/pay/orders"), "POST", Some(&token), Some(body), &[]);
            assert_eq!(r.status, 201, "{}", r.text);
            nos.push(r.json()["order"]["out_trade_no"].as_str().unwrap().to_string());
        }
    }

    // The users pay from four threads; each notification goes out twice at once, some late.
    let notify_to = format!("{base}/v1/pay/notify");
    let payers: Vec<_> = nos
        .chunks(ORDERS / 4)
        .map(|chunk| {
            let (chunk, to, fake) = (chunk.to_vec(), notify_to.clone(), s.fake.base_url());
            std::thread::spawn(move || {
                for (i, no) in chunk.into_iter().enumerate() {
                    // Late by up to 1 s: the notifications spread out, so the kill lands among them.
                    let late = (i % 20) * 50;
                    let body =
                        json!({"out_trade_no": no, "notify": {"mode": "concurrent", "to": to, "delay_ms": late}});
                    let r = try_send(&format!("{fake}/__fake/pay/pay"), "POST", None, Some(body.to_string()), &[])
                        .expect("the fake answers");
                    assert_eq!(r.status, 200, "pay {no}: {}", r.text);
                }
            })
        })
        .collect();
    // Kill once some notifications were answered, while the rest are still arriving.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.deliveries().iter().filter(|d| d["ok"] == true).count() < 10 {
        assert!(Instant::now() < deadline, "no notification answered in 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, "KILL");
    let status = wait_with_limit(&mut child, Duration::from_secs(10));
    assert!(!status.success(), "killed: {status:?}");
    for p in payers {
        p.join().expect("payer thread");
    }
    // Let the fake's last (late) deliveries to the dead server fail.
    std::thread::sleep(Duration::from_millis(1500));
    let delivered = s.deliveries();
    let failed = delivered.iter().filter(|d| d["ok"] != true).count();
    assert!(failed > 0, "the kill came after every notification: {} deliveries", delivered.len());

    // Back on the same database; WeChat Pay retries: every order's notification again.
    let (mut child, addr) = s.serve("serve2.log");
    let to = format!("http://{addr}/v1/pay/notify");
    for no in &nos {
        let r = s.control("/__fake/pay/notify", json!({"out_trade_no": no, "to": to, "wait": true})).unwrap();
        assert_eq!(r.status, 200, "redeliver {no}: {}", r.text);
    }
    let last: std::collections::HashMap<String, serde_json::Value> =
        s.deliveries().into_iter().map(|d| (d["out_trade_no"].as_str().unwrap().to_string(), d)).collect();
    for no in &nos {
        assert_eq!(last[no]["status"], 204, "the redelivery of {no} was accepted: {:?}", last[no]);
    }
    assert!(sigterm_and_wait(&mut child, Duration::from_secs(10)).success());

    if Engine::current() == Engine::Sqlite {
        assert_eq!(integrity(&s.dir.path().join("data/wxlogin.db")), "ok");
    }
    let records = paid_records(&s.config);
    for no in &nos {
        assert_eq!(records[no], ("paid".to_string(), 1), "order {no}: state and order.paid events");
    }
}
