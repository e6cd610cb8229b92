//! The real binary under module-specific `RUST_LOG` values: whatever they ask for, the
//! HTTP client stack (ureq, ureq_proto, rustls) and the PostgreSQL client (tokio_postgres,
//! postgres) log nothing above info, and no secret
//! (app secret, tokens, session keys, and with payments the merchant private key, the
//! APIv3 key and the webhook secret) reaches the log or a response body.

use std::time::Duration;

use serde_json::{json, Value};
use wxlogin::fake_wechat::{self as fake_pay, FakeOptions, FakeWeChat};

use crate::support::*;

/// What the log of one `serve` run held, every response body it sent, and the secrets
/// neither may hold.
struct Run {
    log: String,
    bodies: Vec<String>,
    secrets: Vec<(&'static str, String)>,
}

const WEBHOOK_SECRET: &str = "webhook-secret-never-logged-0123";

/// The lines of base64 inside a PEM (each a piece of the key).
fn pem_lines(pem: &str) -> Vec<String> {
    pem.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("-----")).map(String::from).collect()
}

/// `serve` with `rust_log` and payments on: a login, a phone lookup, an order paid with
/// its notification (twice at once), a sync, the payment parameters again, then SIGTERM.
fn serve_with(rust_log: &str) -> Run {
    let pay = fake_pay::FakePayOptions { allow_http_notify: true, ..fake_pay::FakePayOptions::test() };
    let fake = FakeWeChat::start(
        "127.0.0.1:0",
        FakeOptions { apps: vec![(APPID.into(), SECRET.into())], pay: Some(pay), ..FakeOptions::default() },
    )
    .unwrap();
    let dir = TempDir::new("logguard");
    let config = write_config(dir.path(), &fake.base_url(), "");
    let pay_table = pay_config_text(dir.path(), &fake.base_url(), "https://login.example.com/v1/pay/notify")
        .replace("[[pay.products]]", "webhook_url = \"https://svc.internal/hooks/pay\"\n\n[[pay.products]]");
    let text = std::fs::read_to_string(&config).unwrap() + &pay_table;
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("stderr.log");
    let envs =
        [("WXLOGIN_SECRET_MAIN", SECRET), ("WXLOGIN_PAY_WEBHOOK_SECRET", WEBHOOK_SECRET), ("RUST_LOG", rust_log)];
    let (mut child, addr) = spawn_listening(&["serve", "--config", config.to_str().unwrap()], &envs, &log);
    let base = format!("http://{addr}");
    let mut bodies = Vec::new();
    let mut call = |method: &str, url: &str, token: Option<&str>, body: Option<Value>| {
        let r = send(url, method, token, body.map(|b| b.to_string()), &[]);
        bodies.push(r.text.clone());
        r
    };

    let code = fake.login_code(APPID, "gus");
    let r = call("POST", &format!("{base}/v1/login"), None, Some(json!({"code": code})));
    assert_eq!(r.status, 200, "{rust_log}: {}", r.text);
    let session = r.json()["token"].as_str().unwrap().to_string();
    let phone_code = {
        let body = json!({"appid": APPID, "user": "gus"}).to_string();
        let r = send(&format!("{}/__fake/phone_code", fake.base_url()), "POST", None, Some(body), &[]);
        r.json()["code"].as_str().unwrap().to_string()
    };
    let r = call("POST", &format!("{base}/v1/me/phone"), Some(&session), Some(json!({"code": phone_code})));
    assert_eq!(r.status, 200, "{rust_log}: {}", r.text);

    let r = call("POST", &format!("{base}/v1/pay/orders"), Some(&session), Some(json!({"product": "vip30"})));
    assert_eq!(r.status, 201, "{rust_log}: {}", r.text);
    let no = r.json()["order"]["out_trade_no"].as_str().unwrap().to_string();
    let pay = json!({"out_trade_no": no, "notify": {"mode": "concurrent", "wait": true, "to": format!("{base}/v1/pay/notify")}});
    let r = send(&format!("{}/__fake/pay/pay", fake.base_url()), "POST", None, Some(pay.to_string()), &[]);
    assert_eq!(r.status, 200, "{rust_log}: {}", r.text);
    let r = call("GET", &format!("{base}/v1/pay/orders/{no}?sync=true"), Some(&session), None);
    assert_eq!((r.status, r.json()["state"].as_str()), (200, Some("paid")), "{rust_log}: {}", r.text);
    // A second order, its payment parameters asked again, and a sync WeChat Pay answers.
    let r = call("POST", &format!("{base}/v1/pay/orders"), Some(&session), Some(json!({"product": "vip30"})));
    let no2 = r.json()["order"]["out_trade_no"].as_str().unwrap().to_string();
    let r = call("POST", &format!("{base}/v1/pay/orders/{no2}/payment"), Some(&session), None);
    assert_eq!(r.status, 200, "{rust_log}: {}", r.text);
    call("GET", &format!("{base}/v1/pay/orders/{no2}?sync=true"), Some(&session), None);
    call("GET", &format!("{base}/v1/pay/orders"), Some(&session), None);
    // A notification that is not WeChat Pay's: refused, and its answer holds nothing secret.
    let r = call("POST", &format!("{base}/v1/pay/notify"), None, Some(json!({"id": "EV-forged"})));
    assert!(r.status >= 400, "{rust_log}: {}", r.text);

    let status = sigterm_and_wait(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{rust_log}: exit status {status:?}");
    let access_token = fake.stats()["current_tokens"][APPID].as_str().unwrap().to_string();
    let session_keys: Vec<String> =
        database_sql(&database_of(&config), "SELECT session_key FROM users").lines().map(String::from).collect();
    assert_eq!(session_keys.len(), 1);
    let mut secrets = vec![
        ("app secret", SECRET.to_string()),
        ("access token", access_token),
        ("session token", session),
        ("APIv3 key", fake_pay::TEST_APIV3_KEY.to_string()),
        ("webhook secret", WEBHOOK_SECRET.to_string()),
    ];
    secrets.extend(session_keys.into_iter().map(|k| ("session_key", k)));
    secrets.extend(pem_lines(fake_pay::TEST_MERCHANT_KEY_PEM).into_iter().map(|l| ("merchant private key", l)));
    Run { log: std::fs::read_to_string(&log).unwrap(), bodies, secrets }
}

/// The records (first lines) above info whose target is in the HTTP client stack (or
/// the PostgreSQL client, which logs statements' parameters).
/// env_logger writes `[TIMESTAMP LEVEL target] message`.
fn http_stack_records_above_info(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            let Some(head) = line.strip_prefix('[').and_then(|l| l.split(']').next()) else { return false };
            let mut parts = head.split_whitespace();
            let (_, level, target) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let krate = target.split("::").next().unwrap_or("");
            matches!(level, "DEBUG" | "TRACE")
                && ["ureq", "ureq_proto", "rustls", "tokio_postgres", "postgres"].contains(&krate)
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
        "wxlogin::pay=trace,wxlogin::payments=trace",
        "wxlogin::api::pay=trace,wxlogin::config=trace,wxlogin::store=trace",
        "tokio_postgres=trace,postgres=trace",
    ] {
        let run = serve_with(rust_log);
        let leaked = http_stack_records_above_info(&run.log);
        assert!(leaked.is_empty(), "{rust_log}: HTTP-stack records above info:\n{}", leaked.join("\n"));
        for (what, value) in &run.secrets {
            assert!(!run.log.contains(value.as_str()), "{rust_log}: the {what} reached the log");
            // The session token is the login's answer; nothing else here belongs in one.
            for body in run.bodies.iter().filter(|_| *what != "session token") {
                assert!(!body.contains(value.as_str()), "{rust_log}: the {what} reached a response: {body}");
            }
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
            assert!(
                run.log.contains("POST /v1/pay/notify 204"),
                "{rust_log}: the notification is logged:\n{}",
                run.log
            );
        }
    }
}
