//! The real binary under module-specific `RUST_LOG` values: whatever they ask for, the
//! HTTP client stack (ureq, ureq_proto, rustls) logs nothing above info, and no secret
//! reaches the log.

use std::time::Duration;

use serde_json::json;
use wxlogin::fake_wechat::{FakeOptions, FakeWeChat};

use crate::support::*;

/// What the log of one `serve` run held, and the secrets it must not hold.
struct Run {
    log: String,
    secrets: Vec<(&'static str, String)>,
}

/// `serve` with `rust_log`: a login and a phone lookup, then SIGTERM.
fn serve_with(rust_log: &str) -> Run {
    let fake = FakeWeChat::start(
        "127.0.0.1:0",
        FakeOptions { apps: vec![(APPID.into(), SECRET.into())], ..FakeOptions::default() },
    )
    .unwrap();
    let dir = TempDir::new("logguard");
    let config = write_config(dir.path(), &fake.base_url(), "");
    let log = dir.path().join("stderr.log");
    let envs = [("WXLOGIN_SECRET_MAIN", SECRET), ("RUST_LOG", rust_log)];
    let (mut child, addr) = spawn_listening(&["serve", "--config", config.to_str().unwrap()], &envs, &log);
    let base = format!("http://{addr}");

    let code = fake.login_code(APPID, "gus");
    let r = send(&format!("{base}/v1/login"), "POST", None, Some(json!({"code": code}).to_string()), &[]);
    assert_eq!(r.status, 200, "{rust_log}: {}", r.text);
    let session = r.json()["token"].as_str().unwrap().to_string();
    let phone_code = {
        let body = json!({"appid": APPID, "user": "gus"}).to_string();
        let r = send(&format!("{}/__fake/phone_code", fake.base_url()), "POST", None, Some(body), &[]);
        r.json()["code"].as_str().unwrap().to_string()
    };
    let body = json!({"code": phone_code}).to_string();
    let r = send(&format!("{base}/v1/me/phone"), "POST", Some(&session), Some(body), &[]);
    assert_eq!(r.status, 200, "{rust_log}: {}", r.text);

    let status = sigterm_and_wait(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{rust_log}: exit status {status:?}");
    let access_token = fake.stats()["current_tokens"][APPID].as_str().unwrap().to_string();
    let session_keys = {
        let db = rusqlite::Connection::open(dir.path().join("data/wxlogin.db")).unwrap();
        let mut st = db.prepare("SELECT session_key FROM users").unwrap();
        st.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect::<Vec<_>>()
    };
    assert_eq!(session_keys.len(), 1);
    let mut secrets =
        vec![("app secret", SECRET.to_string()), ("access token", access_token), ("session token", session)];
    secrets.extend(session_keys.into_iter().map(|k| ("session_key", k)));
    Run { log: std::fs::read_to_string(&log).unwrap(), secrets }
}

/// The records (first lines) above info whose target is in the HTTP client stack.
/// env_logger writes `[TIMESTAMP LEVEL target] message`.
fn http_stack_records_above_info(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            let Some(head) = line.strip_prefix('[').and_then(|l| l.split(']').next()) else { return false };
            let mut parts = head.split_whitespace();
            let (_, level, target) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let krate = target.split("::").next().unwrap_or("");
            matches!(level, "DEBUG" | "TRACE") && ["ureq", "ureq_proto", "rustls"].contains(&krate)
        })
        .collect()
}

#[test]
fn no_rust_log_value_opens_the_http_stack_or_prints_a_secret() {
    for rust_log in [
        "ureq_proto::util=trace",
        "ureq::run=debug",
        "ureq=trace,ureq_proto=trace,rustls=trace",
        "trace",
        "wxlogin=trace,ureq_proto::util=trace",
    ] {
        let run = serve_with(rust_log);
        let leaked = http_stack_records_above_info(&run.log);
        assert!(leaked.is_empty(), "{rust_log}: HTTP-stack records above info:\n{}", leaked.join("\n"));
        for (what, value) in &run.secrets {
            assert!(!run.log.contains(value.as_str()), "{rust_log}: the {what} reached the log");
        }
        assert!(!run.log.contains("secret="), "{rust_log}: a jscode2session query reached the log");
        assert!(!run.log.contains("access_token="), "{rust_log}: a URL with the access token reached the log");
        // The guard caps only the HTTP stack: our own debug records still come through.
        if rust_log.starts_with("wxlogin=trace") || rust_log == "trace" {
            assert!(run.log.contains("POST /v1/me/phone 200"), "{rust_log}: the access line is logged:\n{}", run.log);
            assert!(
                run.log.contains(" DEBUG wxlogin::wechat::client] wechat jscode2session: answered"),
                "{rust_log}:\n{}",
                run.log
            );
        }
    }
}
