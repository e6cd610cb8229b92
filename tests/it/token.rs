//! The access-token owner: POST /v1/me/phone, /internal/v1/access_token, refresh
//! single-flight, restarts, classic mode, `check --live` and `users check-key`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wxlogin::config::TokenApi;
use wxlogin::fake_wechat::{FakeOptions, FakeWeChat};
use wxlogin::secrets::Secret;

use crate::support::*;

fn phone(s: &TestServer, token: &str, user: &str) -> Reply {
    s.post("/v1/me/phone", Some(token), &json!({"code": s.phone_code(user)}))
}

fn assert_phone_ok(r: &Reply) {
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["pure_phone_number"], "13800138000");
    assert_eq!(v["country_code"], "86", "the country code is a string");
    assert!(v["phone_number"].as_str().is_some_and(|p| p.ends_with("13800138000")));
}

#[test]
fn token_phone_calls_share_one_token_across_a_restart() {
    let mut s = TestServer::start();
    let (token, _) = s.login("alice");
    for _ in 0..3 {
        assert_phone_ok(&phone(&s, &token, "alice"));
    }
    assert_eq!(s.fake_calls("stable_token"), 1, "one token for many calls");
    assert_eq!(s.fake_calls("getuserphonenumber"), 3);
    let me = s.get("/v1/me", Some(&token)).json();
    assert!(me["phone_number"].as_str().is_some_and(|p| p.ends_with("13800138000")), "{me}");
    assert_eq!(me["country_code"], "86");

    s.restart();
    assert_phone_ok(&phone(&s, &token, "alice"));
    assert_eq!(s.fake_calls("stable_token"), 1, "the stored token is reused after a restart");
    assert_eq!(s.app().tokens.refreshes("main"), 0);
}

#[test]
fn token_phone_errors_are_mapped_like_login() {
    let s = TestServer::start();
    let (token, _) = s.login("erin");
    let r = s.post("/v1/me/phone", Some(&token), &json!({"code": "no-such-code"}));
    assert_eq!((r.status, r.error_code().as_str()), (401, "invalid_code"), "{}", r.text);
    assert_eq!(r.json()["error"]["wechat_errcode"], 40029);
    let r = s.post("/v1/me/phone", None, &json!({"code": "x"}));
    assert_eq!(r.status, 401);
    let r = s.post("/v1/me/phone", Some(&token), &json!({}));
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_request"));
}

#[test]
fn token_concurrent_requests_after_invalidation_share_one_refresh() {
    // Enough WeChat workers that all 32 are in flight at once (the lane sheds load
    // otherwise), and a phone budget for 33 lookups by one user.
    let s = Arc::new(TestServer::start_with(|c| {
        c.server.wechat_workers = 40;
        c.rate_limit.phone_per_user_per_hour = 100;
    }));
    let (token, _) = s.login("bob");
    assert_phone_ok(&phone(&s, &token, "bob"));
    assert_eq!(s.fake_calls("stable_token"), 1);
    // Replies take 50 ms, so that the requests overlap the one refresh.
    s.fake_behaviour(json!({"invalidate_tokens": true, "latency_ms": 50}));
    let codes: Vec<String> = (0..32).map(|_| s.phone_code("bob")).collect();
    let threads: Vec<_> = codes
        .into_iter()
        .map(|code| {
            let (s, token) = (s.clone(), token.clone());
            std::thread::spawn(move || s.post("/v1/me/phone", Some(&token), &json!({ "code": code })))
        })
        .collect();
    for t in threads {
        assert_phone_ok(&t.join().unwrap());
    }
    assert_eq!(s.fake_calls("stable_token"), 2, "exactly one refresh for 32 requests");
}

#[test]
fn token_endpoint_failures_are_a_clear_502_and_recover() {
    let s = TestServer::start();
    let (token, _) = s.login("carl");
    for (errcode, times) in [(40125, 1), (-1, 2), (45009, 1)] {
        s.fake_behaviour(json!({"fail": {"api": "stable_token", "errcode": errcode, "times": times}}));
        let r = phone(&s, &token, "carl");
        assert_eq!((r.status, r.error_code().as_str()), (502, "wechat_error"), "{}", r.text);
        let e = &r.json()["error"];
        assert_eq!(e["wechat_errcode"], errcode);
        assert!(e["message"].as_str().unwrap().contains("access token could not be obtained"), "{e}");
    }
    assert_phone_ok(&phone(&s, &token, "carl"));
    assert_phone_ok(&phone(&s, &token, "carl"));
    assert_eq!(s.fake_calls("getuserphonenumber"), 2, "no phone call without a token");
}

#[test]
fn token_waiters_share_a_failed_refresh() {
    let s = Arc::new(TestServer::start_with(|c| c.server.wechat_workers = 16));
    let (token, _) = s.login("gus");
    s.fake_behaviour(json!({"latency_ms": 600, "fail": {"api": "stable_token", "errcode": 40125, "times": 8}}));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (s, token) = (s.clone(), token.clone());
            std::thread::spawn(move || s.post("/v1/me/phone", Some(&token), &json!({"code": "c0de"})))
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!((r.status, r.json()["error"]["wechat_errcode"].as_i64()), (502, Some(40125)), "{}", r.text);
    }
    // Requests that queued behind the failing refresh got its error without another
    // call (one straggler on a loaded machine may arrive after it and try again).
    let calls = s.fake_calls("stable_token");
    assert!((1..=2).contains(&calls), "{calls} token calls for 8 requests");
}

#[test]
fn token_classic_mode_works_the_same() {
    let s = TestServer::start_with(|c| c.wechat.token_api = TokenApi::Classic);
    let (token, _) = s.login("dora");
    assert_phone_ok(&phone(&s, &token, "dora"));
    assert_phone_ok(&phone(&s, &token, "dora"));
    assert_eq!((s.fake_calls("token"), s.fake_calls("stable_token")), (1, 0));
    s.fake_behaviour(json!({"invalidate_tokens": true}));
    assert_phone_ok(&phone(&s, &token, "dora"));
    assert_eq!(s.fake_calls("token"), 2);
    s.fake_behaviour(json!({"fail": {"api": "token", "errcode": 40164}, "invalidate_tokens": true}));
    let r = phone(&s, &token, "dora");
    assert_eq!((r.status, r.json()["error"]["wechat_errcode"].as_i64()), (502, Some(40164)), "{}", r.text);
    assert_phone_ok(&phone(&s, &token, "dora"));
}

fn internal(s: &TestServer, method: &str, key: Option<&str>, body: Option<Value>) -> Reply {
    let url = s.url("/internal/v1/access_token?app=main");
    let headers = [("Content-Type", "application/json")];
    send(&url, method, key, body.map(|b| b.to_string()), &headers)
}

#[test]
fn token_internal_endpoint_guards_and_replaces_only_the_current_token() {
    let s = TestServer::start_with(|c| c.internal.api_keys = vec![Secret::new("key-one"), Secret::new("key-two")]);
    assert_eq!(internal(&s, "GET", None, None).status, 401);
    let r = internal(&s, "GET", Some("key-three"), None);
    assert_eq!((r.status, r.error_code().as_str()), (401, "unauthorized"));
    let r = internal(&s, "GET", Some("key-two"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let first = v["access_token"].as_str().unwrap().to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(v["expires_at"].as_i64().unwrap() - now >= 300, "{v}");
    assert_eq!(s.fake.stats()["current_tokens"][APPID], first.as_str());
    // Without `app` (one app configured) and again: the same token.
    let again = send(&s.url("/internal/v1/access_token"), "GET", Some("key-one"), None, &[]);
    assert_eq!(again.json()["access_token"], first.as_str());

    // A stale report leaves the current token alone.
    let r = internal(&s, "POST", Some("key-one"), Some(json!({"app": "main", "invalid": "an-old-token"})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json()["access_token"].as_str(), r.json()["replaced"].as_bool()),
        (Some(first.as_str()), Some(false))
    );
    assert_eq!(s.fake_calls("stable_token"), 1);
    // Reporting the current one replaces it (stable_token is asked to force a new one,
    // because in normal mode it would hand out the same token again).
    let r = internal(&s, "POST", Some("key-one"), Some(json!({"app": "main", "invalid": first})));
    let v = r.json();
    assert_eq!(v["replaced"], true, "{v}");
    let second = v["access_token"].as_str().unwrap();
    assert_ne!(second, first);
    assert_eq!(s.fake.stats()["current_tokens"][APPID], second);
    let r = internal(&s, "POST", Some("key-one"), Some(json!({"invalid": first})));
    assert_eq!((r.json()["access_token"].as_str(), r.json()["replaced"].as_bool()), (Some(second), Some(false)));
    let r = internal(&s, "POST", Some("nope"), Some(json!({"invalid": second})));
    assert_eq!(r.status, 401);
    assert_eq!(internal(&s, "POST", Some("key-one"), Some(json!({"app": "main"}))).status, 400);
}

#[test]
fn token_internal_endpoint_is_absent_without_keys() {
    let s = TestServer::start();
    let r = internal(&s, "GET", Some("anything"), None);
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
}

fn fake() -> FakeWeChat {
    FakeWeChat::start(
        "127.0.0.1:0",
        FakeOptions { apps: vec![(APPID.into(), SECRET.into())], ..FakeOptions::default() },
    )
    .unwrap()
}

fn fake_fail(fake: &FakeWeChat, api: &str, errcode: i64, times: u32) {
    let body = json!({"fail": {"api": api, "errcode": errcode, "times": times}}).to_string();
    let r = send(&format!("{}/__fake/behaviour", fake.base_url()), "POST", None, Some(body), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn token_check_live_explains_each_failure_in_plain_words() {
    let fake = fake();
    let dir = TempDir::new("live");
    let config = write_config(dir.path(), &fake.base_url(), "");
    let args = ["check", "--live", "--config", config.to_str().unwrap()];
    let envs = [("WXLOGIN_SECRET_MAIN", SECRET)];
    let (code, out, err) = run_bare(&args, &envs);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("app main") && out.contains("OK"), "{out}");
    let cases = [
        (40013, 1, "wrong AppID"),
        (40125, 1, "wrong AppSecret"),
        (40164, 1, "add this server's IP (127.0.0.1) to the API IP whitelist"),
        (45009, 1, "daily quota"),
        (-1, 2, "busy"),
    ];
    for (errcode, times, words) in cases {
        fake_fail(&fake, "stable_token", errcode, times);
        let (code, out, err) = run_bare(&args, &envs);
        assert_eq!(code, 1, "{errcode}: {out}{err}");
        assert!(out.contains("FAILED") && out.contains(words), "{errcode}: {out}");
        assert!(!out.contains("rid:"), "{out}");
    }
    // A wrong secret, for real.
    let (code, out, _) = run_bare(&args, &[("WXLOGIN_SECRET_MAIN", "not-the-secret")]);
    assert_eq!(code, 1);
    assert!(out.contains("wrong AppSecret"), "{out}");
    // Nothing listening.
    let config = write_config(dir.path(), "http://127.0.0.1:9", "");
    let (code, out, _) = run_bare(&["check", "--live", "--config", config.to_str().unwrap()], &envs);
    assert_eq!(code, 1);
    assert!(out.contains("could not be reached at http://127.0.0.1:9"), "{out}");
}

/// The real binary: `users check-key`, and no access token in a trace-level log.
#[test]
fn token_users_check_key_and_no_access_token_in_the_log() {
    let fake = fake();
    let dir = TempDir::new("checkkey");
    let config = write_config(dir.path(), &fake.base_url(), "");
    let cfg = config.to_str().unwrap();
    let log = dir.path().join("stderr.log");
    let envs = [("WXLOGIN_SECRET_MAIN", SECRET), ("RUST_LOG", "trace")];
    let (mut child, addr) = spawn_listening(&["serve", "--config", cfg], &envs, &log);
    let base = format!("http://{addr}");
    let code = fake.login_code(APPID, "fay");
    let r = send(&format!("{base}/v1/login"), "POST", None, Some(json!({"code": code}).to_string()), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let (session, id) = (r.json()["token"].as_str().unwrap().to_string(), r.json()["user"]["id"].to_string());

    let phone_code = {
        let body = json!({"appid": APPID, "user": "fay"}).to_string();
        let r = send(&format!("{}/__fake/phone_code", fake.base_url()), "POST", None, Some(body), &[]);
        r.json()["code"].as_str().unwrap().to_string()
    };
    let r = send(
        &format!("{base}/v1/me/phone"),
        "POST",
        Some(&session),
        Some(json!({"code": phone_code}).to_string()),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);

    let (code, out, err) = run_bare(&["users", "check-key", &id, "--config", cfg], &envs);
    assert_eq!((code, out.trim()), (0, "valid"), "{err}");
    assert_eq!(fake.stats()["calls"]["checksession"], 1);
    // A newer wx.login code rotates the user's session_key at WeChat.
    let _ = fake.login_code(APPID, "fay");
    let (code, out, err) = run_bare(&["users", "check-key", &id, "--config", cfg], &envs);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out.trim(), "stale (WeChat answered 87009: the user must wx.login again)");
    let (code, _, err) = run_bare(&["users", "check-key", "999", "--config", cfg], &envs);
    assert_eq!(code, 1);
    assert!(err.contains("no user with ID 999"), "{err}");
    assert_eq!(fake.stats()["calls"]["stable_token"], 1, "the CLI reused the server's stored token");

    let status = sigterm_and_wait(&mut child, Duration::from_secs(10));
    assert!(status.success());
    let access_token = fake.stats()["current_tokens"][APPID].as_str().unwrap().to_string();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("POST /v1/me/phone 200"), "{text}");
    assert!(
        !text.contains(&access_token),
        "the access token reached the log: {:?}",
        text.lines().filter(|l| l.contains(&access_token)).collect::<Vec<_>>()
    );
    assert!(!text.contains("access_token="), "a URL with the access token reached the log");
    assert!(!text.contains(SECRET));
}

/// 40164's errmsg names this server's outbound IP: it goes to the log, not to clients.
#[test]
fn wechat_errmsg_never_reaches_the_client() {
    let s = TestServer::start_with(|c| c.internal.api_keys = vec![Secret::from("internal-key-0123456789")]);
    let (token, _) = s.login("erin");
    let leaks = |r: &Reply| r.text.contains("127.0.0.1") || r.text.contains("whitelist");
    for api in ["getuserphonenumber", "stable_token"] {
        s.fake_behaviour(json!({"fail": {"api": api, "errcode": 40164, "times": 1}, "invalidate_tokens": true}));
        let r = phone(&s, &token, "erin");
        assert_eq!((r.status, r.json()["error"]["wechat_errcode"].as_i64()), (502, Some(40164)), "{}", r.text);
        assert!(!leaks(&r), "{api}: {}", r.text);
    }
    s.fake_behaviour(json!({"fail": {"api": "stable_token", "errcode": 40164, "times": 1}, "invalidate_tokens": true}));
    let r = internal(&s, "GET", Some("internal-key-0123456789"), None);
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(!leaks(&r), "{}", r.text);
    s.fake_behaviour(json!({"fail": {"api": "jscode2session", "errcode": 40164, "times": 1}}));
    let r = s.post("/v1/login", None, &json!({"code": s.code("erin")}));
    assert_eq!((r.status, r.error_code()), (502, "wechat_error".into()), "{}", r.text);
    assert!(!leaks(&r), "{}", r.text);
}

/// Every lookup costs a call against the app's quota: each user has a budget.
#[test]
fn phone_lookups_have_a_per_user_budget() {
    let s = TestServer::start_with(|c| c.rate_limit.phone_per_user_per_hour = 3);
    let (token, _) = s.login("fay");
    for _ in 0..3 {
        assert_phone_ok(&phone(&s, &token, "fay"));
    }
    let r = phone(&s, &token, "fay");
    assert_eq!((r.status, r.error_code()), (429, "rate_limited".into()), "{}", r.text);
    let retry: u64 = r.header("Retry-After").expect("Retry-After").parse().unwrap();
    assert!((3000..=3600).contains(&retry), "the budget frees when the hour is over: {retry}");
    assert_eq!(s.fake_calls("getuserphonenumber"), 3, "the refused lookup never reached WeChat");
    // Another session of the same user shares the budget; another user has their own.
    let (again, _) = s.login("fay");
    assert_eq!(phone(&s, &again, "fay").status, 429);
    let (other, _) = s.login("gil");
    assert_phone_ok(&phone(&s, &other, "gil"));
    assert_eq!(s.fake_calls("getuserphonenumber"), 4);
}
