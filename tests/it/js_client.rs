//! The mini-program client library (clients/miniprogram/wxlogin.js): its Node test
//! suite, run against this very binary and the fake WeChat. Needs `node` (v18+) and
//! `npm` on PATH (CI installs both: .ci/run); runs `npm ci` in the test folder first
//! when its node_modules is missing.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The test folder's npm packages (flyio, for the README's snippet), installed exactly
/// as package-lock.json pins them when node_modules is missing.
fn ensure_node_modules(root: &str) {
    let dir = std::path::Path::new(root).join("clients/miniprogram/test");
    if dir.join("node_modules/flyio/package.json").exists() {
        return;
    }
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".into());
    let out = Command::new(&npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{npm} ci` in clients/miniprogram/test ({e}): npm is needed to install the \
                 client tests' packages; install it (e.g. apt-get install npm) or run `npm ci` there yourself"
            )
        });
    assert!(
        out.status.success(),
        "`npm ci` in clients/miniprogram/test failed ({}); run it there by hand to see why\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn js_client_suite_passes() {
    let root = env!("CARGO_MANIFEST_DIR");
    ensure_node_modules(root);
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let mut child = match Command::new(&node)
        .args(["--test", "clients/miniprogram/test/"])
        .current_dir(root)
        .env("WXLOGIN_BIN", env!("CARGO_BIN_EXE_wxlogin"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run `{node}` ({e}): Node.js (v18 or newer) is needed for the mini-program \
             client tests; install it (e.g. apt-get install nodejs) or set NODE=/path/to/node"
        ),
    };
    // Read both pipes on their own threads so that node never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let limit = Duration::from_secs(120);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    match status {
        None => panic!("node --test did not finish within {limit:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"),
        Some(s) if !s.success() => panic!("node --test failed ({s})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"),
        Some(_) => {
            // Shown with --nocapture: which tests ran, which were skipped.
            for line in stdout.lines().filter(|l| l.starts_with("ok ") || l.starts_with("# ")) {
                println!("{line}");
            }
        }
    }
}
