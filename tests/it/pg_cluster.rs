//! A real PostgreSQL for the tests, from Debian's packages: one temporary cluster per test
//! process (initdb, pg_ctl, a free loopback port, fsync off), a fresh database for every
//! caller, and a watchdog that removes the cluster and its folder when the process ends.
//!
//! Missing server binaries fail the PostgreSQL tests with what to install, never a skip.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The superuser initdb creates; tests connect as it, without a password (`--auth=trust`).
pub const SUPERUSER: &str = "wxlogin";

const INSTALL_HINT: &str = "install Debian's PostgreSQL server package: `apt-get install postgresql` (Debian/Ubuntu)";

/// The running cluster. Statics are never dropped: its removal is the watchdog's job.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Held open for the life of the process: its end (the process's exit, however it
    /// comes) is what tells the watchdog to stop the server and remove `dir`.
    _watchdog: ChildStdin,
}

/// An error message already, so every test after a failed start fails at once with the
/// same explanation instead of starting its own cluster.
static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The URL of a new, empty database on the process's cluster (started on first use).
pub fn fresh_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let cluster = match CLUSTER.get_or_init(start_cluster) {
        Ok(cluster) => cluster,
        Err(e) => panic!("{e}"),
    };
    let name = format!("wxtest_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let admin = cluster.url("postgres");
    run_psql(&cluster.bin, &admin, &format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}{}", cluster.log_tail()));
    drop_when_the_test_ends(&name);
    cluster.url(&name)
}

/// The databases made on this test's thread, dropped when the thread ends: by then the
/// test's locals, its servers included, are gone. Kept, a run's 150 or so databases took
/// over 1 GB of the temporary folder. Threads a test starts itself have no name and
/// keep theirs (the test may still use them).
struct MadeByThisTest(Vec<String>);

impl Drop for MadeByThisTest {
    fn drop(&mut self) {
        let Some(Ok(cluster)) = CLUSTER.get() else { return };
        for name in &self.0 {
            // FORCE ends what a test left connected; a failure only leaves the database.
            let _ = run_psql(
                &cluster.bin,
                &cluster.url("postgres"),
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

thread_local! {
    static MADE_BY_THIS_TEST: std::cell::RefCell<MadeByThisTest> = const { std::cell::RefCell::new(MadeByThisTest(Vec::new())) };
}

fn drop_when_the_test_ends(name: &str) {
    if std::thread::current().name().is_some_and(|n| n != "main") {
        MADE_BY_THIS_TEST.with(|made| made.borrow_mut().0.push(name.to_string()));
    }
}

/// Runs `sql` with psql against `url` and returns its unaligned, tuples-only output
/// (`a|b` per row); panics with psql's stderr when it fails.
pub fn psql(url: &str, sql: &str) -> String {
    let bin = match CLUSTER.get() {
        Some(Ok(cluster)) => cluster.bin.clone(),
        _ => server_bin_dir().unwrap_or_else(|e| panic!("{e}")),
    };
    run_psql(&bin, url, sql).unwrap_or_else(|e| panic!("psql {sql:?} on {url}: {e}"))
}

impl Cluster {
    fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    fn log_tail(&self) -> String {
        log_tail(&self.dir)
    }
}

fn run_psql(bin: &Path, url: &str, sql: &str) -> Result<String, String> {
    let psql = if bin.join("psql").exists() { bin.join("psql") } else { PathBuf::from("psql") };
    let out = Command::new(&psql)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "30")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", psql.display()))?;
    if !out.status.success() {
        return Err(format!("psql failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The folder with initdb and pg_ctl: PATH first (symlinks followed, so psql and postgres
/// of the same version sit beside it), then the newest `/usr/lib/postgresql/<ver>/bin`.
fn server_bin_dir() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("initdb")).find(|f| f.is_file()))
        .unwrap_or_default();
    if let Some(initdb) = on_path {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent().filter(|d| d.join("pg_ctl").is_file()) {
            return Ok(dir.to_path_buf());
        }
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .max_by_key(|(version, _)| *version);
    newest.map(|(_, bin)| bin).ok_or_else(|| {
        format!(
            "the PostgreSQL tests need PostgreSQL's server binaries (initdb, pg_ctl), found neither \
             on PATH nor under /usr/lib/postgresql/*/bin: {INSTALL_HINT}"
        )
    })
}

/// Whom initdb and the server run as: they refuse root, so as root they run as the
/// `postgres` system user Debian's package creates. `own` is a folder this process just
/// made: its owner is the process's effective user.
fn server_user(own: &Path) -> Result<Option<(u32, u32)>, String> {
    let euid = std::fs::metadata(own).map_err(|e| format!("stat {}: {e}", own.display()))?.uid();
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("read /etc/passwd: {e}"))?;
    let ids = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == "postgres")
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))?
    });
    ids.map(Some).ok_or_else(|| {
        format!(
            "the tests run as root, and initdb refuses root: it runs as the `postgres` system user, \
             which does not exist here; {INSTALL_HINT} (it creates that user)"
        )
    })
}

fn start_cluster() -> Result<Cluster, String> {
    let bin = server_bin_dir()?;
    let dir =
        std::env::temp_dir().join(format!("wxlogin-pg-{}-{}", std::process::id(), wxlogin::secrets::random_id(4)));
    std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    // First, so the folder goes away even when a step below fails.
    let watchdog = spawn_watchdog(&dir)?;
    let user = server_user(&dir)?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {} to postgres: {e}", dir.display()))?;
    }
    let data = dir.join("data");
    let initdb = server_command(&bin.join("initdb"), &dir, user)
        .args(["--auth=trust", "--username", SUPERUSER, "--no-sync", "--encoding=UTF8", "--locale=C", "-D"])
        .arg(&data)
        .output();
    check("initdb", initdb, &dir)?;
    let mut last_error = String::new();
    // A port found free can be taken before the server binds it: try another then.
    for _ in 0..3 {
        let port = free_port()?;
        let options = format!(
            "-p {port} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB -c max_wal_size=64MB -c min_wal_size=32MB",
            dir.display()
        );
        let start = server_command(&bin.join("pg_ctl"), &dir, user)
            .args(["start", "-w", "-t", "120", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-o", &options])
            .output();
        match check("pg_ctl start", start, &dir) {
            Ok(()) => return Ok(Cluster { bin, dir, port, _watchdog: watchdog }),
            Err(e) if log_tail(&dir).contains("Address already in use") => last_error = e,
            Err(e) => return Err(e),
        }
    }
    Err(last_error)
}

/// A command run as the server's user, in the cluster's folder (the test's working
/// directory may be closed to that user), in the C locale.
fn server_command(program: &Path, dir: &Path, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir).env("LC_ALL", "C").env_remove("PGDATA").stdin(Stdio::null());
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// A shell that waits for the end of its stdin, which this process holds until it exits,
/// then stops the server at once (SIGQUIT: immediate shutdown) and removes the folder. Run
/// as whoever runs the tests, so as root it can signal the server and remove its files;
/// in its own process group, so a Ctrl-C to the tests does not kill it before it cleans up.
fn spawn_watchdog(dir: &Path) -> Result<ChildStdin, String> {
    let script = r#"read -r _
pidfile="$1/data/postmaster.pid"
if [ -f "$pidfile" ]; then
  pid=$(head -n 1 "$pidfile")
  kill -QUIT "$pid" 2>/dev/null
  n=0
  while [ -f "$pidfile" ] && kill -0 "$pid" 2>/dev/null && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
fi
# A step still running (initdb, when the tests died during it) may write into the folder.
for _ in 1 2 3 4 5; do rm -rf "$1" 2>/dev/null; [ -e "$1" ] || break; sleep 1; done"#;
    let mut child = Command::new("sh")
        .args(["-c", script, "wxlogin-pg-watchdog"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("start the cluster's watchdog (sh): {e}"))?;
    let mut stdin = child.stdin.take().ok_or("the watchdog has no stdin")?;
    // Nothing is ever written; a flush only proves the pipe is there.
    stdin.flush().map_err(|e| format!("the watchdog's stdin: {e}"))?;
    Ok(stdin)
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("find a free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("find a free port: {e}"))
}

fn check(step: &str, result: std::io::Result<Output>, dir: &Path) -> Result<(), String> {
    let out = result.map_err(|e| format!("PostgreSQL test cluster: cannot run {step}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "PostgreSQL test cluster: {step} failed ({}):\n{}{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log_tail(dir)
    ))
}

/// The last lines of the server's log, for failure messages.
fn log_tail(dir: &Path) -> String {
    let Ok(log) = std::fs::read_to_string(dir.join("server.log")) else {
        return String::new();
    };
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    format!("\n--- server log ({}) ---\n{tail}", dir.join("server.log").display())
}

#[test]
fn the_cluster_starts_and_each_test_gets_its_own_database() {
    let a = fresh_database();
    let b = fresh_database();
    assert_ne!(a, b);
    psql(&a, "CREATE TABLE only_in_a (v text); INSERT INTO only_in_a VALUES ('here')");
    assert_eq!(psql(&a, "SELECT v FROM only_in_a").trim(), "here");
    assert_eq!(psql(&b, "SELECT to_regclass('only_in_a') IS NULL").trim(), "t", "b sees a's table");
    assert_eq!(psql(&b, "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'").trim(), "0");
}

#[test]
fn concurrent_callers_share_one_cluster_and_get_distinct_databases() {
    let urls: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(fresh_database)).collect();
        handles.into_iter().map(|h| h.join().expect("fresh_database")).collect()
    });
    let port_of = |url: &str| url.rsplit_once(':').map(|(_, rest)| rest.split('/').next().unwrap_or("").to_string());
    let ports: std::collections::HashSet<_> = urls.iter().map(|u| port_of(u)).collect();
    assert_eq!(ports.len(), 1, "one cluster for the process: {urls:?}");
    let names: std::collections::HashSet<_> = urls.iter().collect();
    assert_eq!(names.len(), urls.len(), "distinct databases: {urls:?}");
    for url in &urls {
        assert_eq!(psql(url, "SELECT current_user").trim(), SUPERUSER);
    }
}
