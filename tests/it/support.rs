//! The harness: a wxlogin server and a fake WeChat on loopback, a temporary database,
//! and a small HTTP client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wxlogin::app::App;
use wxlogin::config::{self, Config};
use wxlogin::fake_wechat as fake_pay;
use wxlogin::fake_wechat::{FakeOptions, FakeWeChat};
use wxlogin::http::RunningServer;

pub const APPID: &str = "wxtest0000000001";
pub const SECRET: &str = "test-app-secret-0123456789";

/// A folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("wxlogin-it-{tag}-{}", wxlogin::secrets::random_id(6)));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The configuration tests start from: loopback, ephemeral port, a small pool, short
/// WeChat timeouts, the fake as WeChat.
pub fn test_config(dir: &Path, fake_url: &str) -> Config {
    config::parse(&test_config_text(fake_url), dir, &|_| None).expect("test config")
}

fn test_config_text(fake_url: &str) -> String {
    let database = Engine::current().database_table("wxlogin.db");
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 4
wechat_workers = 8

{database}

[wechat]
api_base = "{fake_url}"
timeout_ms = 1000
retries = 1

[rate_limit]
login_per_ip_per_minute = 1000

[[apps]]
name = "main"
appid = "{APPID}"
secret = "{SECRET}"
"#
    )
}

/// `[pay]` for the fake WeChat Pay's test merchant, its key files written to `dir`, with
/// one product `vip30` (990 fen).
pub fn pay_config_text(dir: &Path, fake_url: &str, notify_url: &str) -> String {
    let pay = fake_pay::write_test_merchant(dir, fake_url, notify_url).expect("test merchant keys");
    format!("{pay}\n[[pay.products]]\nid = \"vip30\"\ndescription = \"VIP, 30 days\"\namount = 990\n")
}

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub fake: FakeWeChat,
    pub http: Endpoint,
    pub dir: TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    /// Starts with the test configuration changed by `tweak`.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let fake = FakeWeChat::start(
            "127.0.0.1:0",
            FakeOptions { apps: vec![(APPID.into(), SECRET.into())], ..FakeOptions::default() },
        )
        .expect("fake wechat");
        let dir = TempDir::new("srv");
        let mut config = test_config(dir.path(), &fake.base_url());
        tweak(&mut config);
        for app in &config.apps {
            fake_add_app(&fake, &app.appid, app.secret.expose());
        }
        let app = open_app(config);
        let server = RunningServer::start(app).expect("start server");
        let base = format!("http://{}", server.addr());
        TestServer { server: Some(server), fake, http: Endpoint { base }, dir }
    }

    /// Starts with payments on: `[pay]` with the fake WeChat Pay's fixed test merchant
    /// (its keys written to the server's folder), one product `vip30` (990 fen), and a
    /// notify_url that is https as WeChat Pay requires; tests deliver notifications to
    /// this server's own address instead (`pay`, `notify.to`).
    pub fn start_pay() -> TestServer {
        TestServer::start_pay_with(|_| {})
    }

    pub fn start_pay_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let pay = fake_pay::FakePayOptions { allow_http_notify: true, ..fake_pay::FakePayOptions::test() };
        let fake = FakeWeChat::start(
            "127.0.0.1:0",
            FakeOptions { apps: vec![(APPID.into(), SECRET.into())], pay: Some(pay), ..FakeOptions::default() },
        )
        .expect("fake wechat");
        let dir = TempDir::new("pay");
        let text = format!(
            "{}\n{}",
            test_config_text(&fake.base_url()),
            pay_config_text(dir.path(), &fake.base_url(), "https://login.example.com/v1/pay/notify")
        );
        let mut config = config::parse(&text, dir.path(), &|_| None).expect("test pay config");
        tweak(&mut config);
        let app = open_app(config);
        let server = RunningServer::start(app).expect("start server");
        let base = format!("http://{}", server.addr());
        TestServer { server: Some(server), fake, http: Endpoint { base }, dir }
    }

    /// `POST /__fake/pay/pay` for an order, its notification delivered to this server as
    /// `notify` says (`{"mode": "once" | "twice" | "concurrent" | "never"}`), waiting
    /// until every delivery is done.
    pub fn pay(&self, out_trade_no: &str, notify: Value) -> Reply {
        let mut notify = notify;
        notify["to"] = self.url("/v1/pay/notify").into();
        notify["wait"] = true.into();
        send(
            &format!("{}/__fake/pay/pay", self.fake.base_url()),
            "POST",
            None,
            Some(json!({"out_trade_no": out_trade_no, "notify": notify}).to_string()),
            &[],
        )
    }

    /// The fake WeChat Pay's deliveries of this order's notifications.
    pub fn deliveries(&self, out_trade_no: &str) -> Vec<Value> {
        let r = send(
            &format!("{}/__fake/pay/deliveries?out_trade_no={out_trade_no}", self.fake.base_url()),
            "GET",
            None,
            None,
            &[],
        );
        assert_eq!(r.status, 200, "fake deliveries: {}", r.text);
        r.json()["deliveries"].as_array().cloned().unwrap_or_default()
    }

    /// Tells the fake WeChat Pay how to misbehave (`POST /__fake/pay/behaviour`).
    pub fn fake_pay_behaviour(&self, body: Value) {
        let r =
            send(&format!("{}/__fake/pay/behaviour", self.fake.base_url()), "POST", None, Some(body.to_string()), &[]);
        assert_eq!(r.status, 200, "fake pay behaviour: {}", r.text);
    }

    pub fn fake_pay_calls(&self, api: &str) -> u64 {
        let r = send(&format!("{}/__fake/pay/stats", self.fake.base_url()), "GET", None, None, &[]);
        r.json()["calls"][api].as_u64().unwrap_or(0)
    }

    pub fn app(&self) -> &Arc<App> {
        self.server.as_ref().expect("running").app()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("running").addr()
    }

    /// What wx.login would give `user` in the main app.
    pub fn code(&self, user: &str) -> String {
        self.fake.login_code(APPID, user)
    }

    /// Logs `user` in; returns the token and the whole answer.
    pub fn login(&self, user: &str) -> (String, Value) {
        let r = self.post("/v1/login", None, &json!({"code": self.code(user)}));
        assert_eq!(r.status, 200, "login failed: {}", r.text);
        let body = r.json();
        (body["token"].as_str().expect("token").to_string(), body)
    }

    /// Tells the fake WeChat how to misbehave (see src/fake_wechat/README.md).
    pub fn fake_behaviour(&self, body: Value) {
        let r = send(&format!("{}/__fake/behaviour", self.fake.base_url()), "POST", None, Some(body.to_string()), &[]);
        assert_eq!(r.status, 200, "fake behaviour: {}", r.text);
    }

    pub fn fake_calls(&self, api: &str) -> u64 {
        self.fake.stats()["calls"][api].as_u64().unwrap_or(0)
    }

    /// What the getPhoneNumber button would give `user` of the main app (fake: 13800138000).
    pub fn phone_code(&self, user: &str) -> String {
        let r = send(
            &format!("{}/__fake/phone_code", self.fake.base_url()),
            "POST",
            None,
            Some(json!({"appid": APPID, "user": user}).to_string()),
            &[],
        );
        assert_eq!(r.status, 200, "fake phone_code: {}", r.text);
        r.json()["code"].as_str().expect("code").to_string()
    }

    /// Stops the server and starts a new App on the same configuration, database file
    /// and fake WeChat (a restart); `base` then points at the new server.
    pub fn restart(&mut self) {
        let config = self.app().config.clone();
        self.stop();
        let app = open_app(config);
        let server = RunningServer::start(app).expect("restart server");
        self.http.base = format!("http://{}", server.addr());
        self.server = Some(server);
    }

    /// Graceful shutdown, as on SIGTERM.
    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn fake_add_app(fake: &FakeWeChat, appid: &str, secret: &str) {
    let r = send(
        &format!("{}/__fake/app", fake.base_url()),
        "POST",
        None,
        Some(json!({"appid": appid, "secret": secret}).to_string()),
        &[],
    );
    assert_eq!(r.status, 200, "fake app: {}", r.text);
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The contract's error code, asserting the error body's shape on the way.
    pub fn error_code(&self) -> String {
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "error without message: {}", self.text);
        e["code"].as_str().unwrap_or_else(|| panic!("no error code: {}", self.text)).to_string()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// One HTTP request; never fails on a status, only on transport errors (it panics then).
pub fn send(url: &str, method: &str, token: Option<&str>, body: Option<String>, headers: &[(&str, &str)]) -> Reply {
    try_send(url, method, token, body, headers).unwrap_or_else(|e| panic!("{e}"))
}

fn with_headers<B>(mut req: ureq::RequestBuilder<B>, headers: &[(&str, &str)]) -> ureq::RequestBuilder<B> {
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req
}

/// The real binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_wxlogin")
}

/// Runs the binary to its end with none of wxlogin's configuration or secret variables
/// from this process's environment, only `envs`: exit code, stdout, stderr.
pub fn run_bare(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    for (name, _) in std::env::vars() {
        if name.starts_with("WXLOGIN_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd.args(args).envs(envs.iter().copied()).output().expect("run wxlogin");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A started binary that is killed (and reaped) when dropped: a test that fails while it
/// runs must not leave a server behind, still bound to its port and its database, after
/// the test process has gone (std's `Child` is left running when dropped).
pub struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl From<Child> for Running {
    fn from(child: Child) -> Running {
        Running(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts the binary with `args`, stderr captured to `log`, and waits for its
/// `listening on http://ADDR` line.
pub fn spawn_listening(args: &[&str], envs: &[(&str, &str)], log: &Path) -> (Running, SocketAddr) {
    let log_file = std::fs::File::create(log).expect("log file");
    let mut child = Command::new(bin())
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .expect("spawn wxlogin");
    let engine = Engine::current();
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(a) = line.strip_prefix("listening on http://") {
                    break a.trim().parse().expect("address");
                }
            }
            _ => {
                let _ = child.kill();
                panic!("wxlogin exited before listening; log: {}", std::fs::read_to_string(log).unwrap_or_default());
            }
        }
    };
    if args.first() == Some(&"serve") {
        engine.assert_serving(args, log);
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Running(child), addr)
}

/// Writes an appliance.toml for the binary into `dir` and returns its path.
pub fn write_config(dir: &Path, fake_url: &str, extra_top: &str) -> PathBuf {
    let path = dir.join("appliance.toml");
    let database = Engine::current().database_table("data/wxlogin.db");
    let text = format!(
        r#"{extra_top}
[server]
listen = "127.0.0.1:0"
workers = 4
wechat_workers = 8

{database}

[wechat]
api_base = "{fake_url}"
timeout_ms = 1000
retries = 1

[[apps]]
name = "main"
appid = "{APPID}"
"#
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Sends SIGTERM (the binary's graceful stop) and waits for the exit status.
pub fn sigterm_and_wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    signal(child, "TERM");
    wait_with_limit(child, limit)
}

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().expect("kill");
    assert!(ok.success());
}

pub fn wait_with_limit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("wxlogin did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`send`] without the panic: a transport error (refused, reset, timed out) is an
/// `Err` with its text, for tests that kill the server under load.
pub fn try_send(
    url: &str,
    method: &str,
    token: Option<&str>,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let agent = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(a) = &auth {
        all.push(("Authorization", a));
    }
    let result = match (method, body) {
        ("GET", _) => with_headers(agent.get(url), &all).call(),
        ("DELETE", _) => with_headers(agent.delete(url), &all).call(),
        ("POST", Some(b)) => with_headers(agent.post(url), &all).send(b),
        ("POST", None) => with_headers(agent.post(url), &all).send_empty(),
        ("PATCH", Some(b)) => with_headers(agent.patch(url), &all).send(b),
        ("PUT", Some(b)) => with_headers(agent.put(url), &all).send(b),
        (m, _) => return Err(format!("unsupported method {m}")),
    };
    let mut resp = result.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status().as_u16();
    let headers =
        resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let text = resp.body_mut().read_to_string().map_err(|e| format!("{method} {url}: body: {e}"))?;
    Ok(Reply { status, headers, text })
}

/// `PRAGMA integrity_check` of a database file ("ok" when sound).
pub fn integrity(db: &Path) -> String {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

/// Every user's openid in a database file, oldest first.
pub fn openids(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT openid FROM users ORDER BY id").unwrap();
    st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// The database engine a test runs on: PostgreSQL for the copies of the suite under
/// `pg::` (see main.rs), SQLite for the rest. Chosen by the running test's name, which
/// libtest gives the thread it runs the test on (with `--test-threads=1` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine of the test running on this thread. Panics on a thread libtest did not
    /// name after a test (one a test spawned): the engine cannot be known there, and a
    /// `pg::` test must never run on SQLite unnoticed. Start servers on the test's thread.
    pub fn current() -> Engine {
        let thread = std::thread::current();
        match thread.name() {
            Some(name) if name.starts_with("pg::") => Engine::Postgres,
            Some(name) if name.contains("::") => Engine::Sqlite,
            other => panic!(
                "the test harness picks the database engine from the test's name, and this thread \
                 ({other:?}) is not a test's: start test servers on the test's own thread"
            ),
        }
    }

    /// The `[database]` table of a test configuration: the SQLite file `path` (relative
    /// to the configuration's folder), or a fresh database on the test cluster.
    pub fn database_table(self, path: &str) -> String {
        match self {
            Engine::Sqlite => format!("[database]\npath = \"{path}\"\n"),
            Engine::Postgres => format!("[database]\nurl = \"{}\"\n", crate::pg_cluster::fresh_database()),
        }
    }

    /// How `Store::describe` (and the binary's startup line, "database ...") names it.
    pub fn described_as(self) -> &'static str {
        match self {
            Engine::Sqlite => "SQLite ",
            Engine::Postgres => "PostgreSQL ",
        }
    }

    /// Asserts that a store is on this engine.
    pub fn assert_store(self, store: &wxlogin::store::Store) {
        let described = store.describe();
        assert!(
            described.starts_with(self.described_as()),
            "this test runs on {self:?}, but its server opened {described}"
        );
    }

    /// Asserts, for a PostgreSQL test, that `wxlogin serve --config FILE` runs on
    /// PostgreSQL: its startup line in `log` (written before it prints where it listens)
    /// names it, or, when a log filter hides that line (log_guard.rs), FILE names a
    /// PostgreSQL URL (the binary refuses a file naming both engines). Other tests may
    /// run the binary on a database of their choosing (pg_cli.rs on PostgreSQL).
    pub fn assert_serving(self, args: &[&str], log: &Path) {
        if self == Engine::Sqlite {
            return;
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        match text.lines().find(|l| l.contains(" listening on http://") && l.contains(", database ")) {
            Some(line) => {
                let named = line.split(", database ").nth(1).unwrap_or("");
                assert!(
                    named.starts_with(self.described_as()),
                    "this test runs on {self:?}, but the binary says: {line}"
                );
            }
            None => {
                let config = args.iter().skip_while(|a| **a != "--config").nth(1);
                let config = config.unwrap_or_else(|| panic!("{args:?}: no --config and no startup line:\n{text}"));
                let url = database_of(Path::new(config)).url;
                assert!(
                    url.is_some_and(|u| u.expose().starts_with("postgres")),
                    "this test runs on {self:?}, but {config} names no PostgreSQL URL"
                );
            }
        }
    }
}

/// The database of the test folder `dir`, on the running test's engine: the SQLite file
/// `dir/file`, or a fresh PostgreSQL database, the same for every call with this `dir`
/// (its URL kept in `dir/database-url`). For tests that write their own configuration
/// and open the store beside the binary.
pub fn dir_database(dir: &Path, file: &str) -> wxlogin::config::DatabaseConfig {
    let mut database = wxlogin::config::DatabaseConfig { path: dir.join(file), ..Default::default() };
    if Engine::current() == Engine::Postgres {
        let kept = dir.join("database-url");
        let url = std::fs::read_to_string(&kept).unwrap_or_else(|_| {
            let url = crate::pg_cluster::fresh_database();
            std::fs::write(&kept, &url).expect("keep the database URL");
            url
        });
        database.url = Some(wxlogin::secrets::Secret::new(url));
    }
    database
}

/// The `[database]` table for [`dir_database`].
pub fn dir_database_table(dir: &Path, file: &str) -> String {
    let database = dir_database(dir, file);
    match &database.url {
        Some(url) => format!("[database]\nurl = \"{}\"\n", url.expose()),
        None => format!("[database]\npath = \"{}\"\n", database.path.display()),
    }
}

/// The store of [`dir_database`], opened (created) as the server would, asserting its engine.
pub fn dir_store(dir: &Path, file: &str) -> wxlogin::store::Store {
    let engine = Engine::current();
    let store = wxlogin::store::Store::connect(&dir_database(dir, file)).expect("open the test database");
    engine.assert_store(&store);
    store
}

/// Opens the App for a test server, asserting that it runs on the test's engine.
fn open_app(config: Config) -> Arc<App> {
    let engine = Engine::current();
    let app = Arc::new(App::open(config).expect("open app"));
    engine.assert_store(&app.store);
    app
}

impl TestServer {
    /// The engine this server's database is on.
    pub fn engine(&self) -> Engine {
        if self.app().store.is_shared() {
            Engine::Postgres
        } else {
            Engine::Sqlite
        }
    }

    /// Runs `sql` on this server's database, whichever engine holds it, and returns the
    /// rows as psql's unaligned output does (`a|b` per row, NULL as empty). For tests
    /// that age rows or look at what was stored; write SQL both engines take.
    pub fn sql(&self, sql: &str) -> String {
        database_sql(&self.app().config.database, sql)
    }

    /// [`TestServer::sql`] for one number (a count, a time).
    pub fn sql_i64(&self, sql: &str) -> i64 {
        let out = self.sql(sql);
        out.trim().parse().unwrap_or_else(|e| panic!("{sql:?} gave {out:?}, not a number: {e}"))
    }

    /// A second instance on this one's database, configuration and fake WeChat (what a
    /// balancer's other backend is); stopped on drop.
    pub fn peer(&self) -> Peer {
        let app = open_app(self.app().config.clone());
        let server = RunningServer::start(app).expect("start peer server");
        let base = format!("http://{}", server.addr());
        Peer { server: Some(server), http: Endpoint { base } }
    }
}

/// [`TestServer::sql`] on the database a configuration names.
pub fn database_sql(database: &wxlogin::config::DatabaseConfig, sql: &str) -> String {
    match &database.url {
        Some(url) => crate::pg_cluster::psql(url.expose(), sql),
        None => sqlite_sql(&database.path, sql),
    }
}

/// The database an appliance.toml names (its `[database]` alone, so that a file whose
/// secrets come from the environment reads too), relative paths from its folder.
pub fn database_of(appliance: &Path) -> wxlogin::config::DatabaseConfig {
    let text = std::fs::read_to_string(appliance).expect("read the test configuration");
    let table: toml::Table = text.parse().expect("the test configuration is TOML");
    let field = |key: &str| table.get("database").and_then(|d| d.get(key)).and_then(|v| v.as_str());
    let base = appliance.parent().expect("the configuration's folder");
    let path = base.join(field("path").unwrap_or(wxlogin::config::database::DEFAULT_PATH));
    let url = field("url").map(|u| wxlogin::secrets::Secret::new(u.to_string()));
    wxlogin::config::DatabaseConfig { path, url, ..Default::default() }
}

fn sqlite_sql(db: &Path, sql: &str) -> String {
    use rusqlite::types::ValueRef;
    let c = rusqlite::Connection::open(db).expect("open the test database");
    c.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
    let columns = st.column_count();
    let mut rows = st.query([]).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
    let mut out = String::new();
    while let Some(row) = rows.next().unwrap_or_else(|e| panic!("{sql:?}: {e}")) {
        let cells: Vec<String> = (0..columns)
            .map(|i| match row.get_ref(i).expect("column") {
                ValueRef::Null => String::new(),
                ValueRef::Integer(n) => n.to_string(),
                ValueRef::Real(f) => f.to_string(),
                ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
            })
            .collect();
        out.push_str(&cells.join("|"));
        out.push('\n');
    }
    out
}

/// A server's address, and requests to it: what [`TestServer`] and [`Peer`] both speak
/// (each derefs to its own, so `s.get(..)` and `s.base` work on either).
pub struct Endpoint {
    pub base: String,
}

impl Endpoint {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Reply {
        send(&self.url(path), "GET", token, None, &[])
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        send(&self.url(path), "POST", token, Some(body.to_string()), &[("Content-Type", "application/json")])
    }

    pub fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        send(&self.url(path), "PATCH", token, Some(body.to_string()), &[("Content-Type", "application/json")])
    }

    pub fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        send(&self.url(path), "DELETE", token, None, &[])
    }
}

impl std::ops::Deref for TestServer {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.http
    }
}

impl std::ops::Deref for Peer {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.http
    }
}

/// Another instance of a [`TestServer`] (see [`TestServer::peer`]).
pub struct Peer {
    pub server: Option<RunningServer>,
    pub http: Endpoint,
}

impl Peer {
    pub fn app(&self) -> &Arc<App> {
        self.server.as_ref().expect("running").app()
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}
