//! POST /v1/login against the fake WeChat: every status of the contract's table.

use std::sync::Arc;

use serde_json::json;

use crate::support::*;

#[test]
fn first_login_creates_the_user_and_later_ones_find_it() {
    let s = TestServer::start();
    let (token, body) = s.login("alice");
    assert_eq!(token.len(), 43);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 2_592_000);
    assert_eq!(body["new_user"], true);
    let user = &body["user"];
    assert_eq!(user["app"], "main");
    assert!(user["openid"].as_str().unwrap().starts_with('o'));
    for key in ["unionid", "nickname", "avatar_url", "gender", "phone_number", "country_code"] {
        assert!(user.get(key).is_some(), "User lacks {key}");
    }
    let (token2, again) = s.login("alice");
    assert_eq!(again["new_user"], false);
    assert_eq!(again["user"]["id"], user["id"]);
    assert_ne!(token, token2, "each login is a new session");
    // Both sessions live: many sessions per user.
    assert_eq!(s.get("/v1/session", Some(&token)).status, 200);
    assert_eq!(s.get("/v1/session", Some(&token2)).status, 200);
}

#[test]
fn a_retried_code_inside_the_window_gets_a_new_session_without_asking_wechat() {
    let s = TestServer::start();
    let code = s.code("bob");
    let first = s.post("/v1/login", None, &json!({"code": code}));
    assert_eq!(first.status, 200);
    let second = s.post("/v1/login", None, &json!({"code": code}));
    assert_eq!(second.status, 200, "{}", second.text);
    let (a, b) = (first.json(), second.json());
    assert_eq!(a["user"]["id"], b["user"]["id"]);
    assert_eq!(b["new_user"], true, "the replay repeats the first answer's new_user");
    assert_ne!(a["token"], b["token"]);
    assert_eq!(s.fake_calls("jscode2session"), 1);
}

#[test]
fn a_used_code_outside_the_window_is_invalid_code() {
    let s = TestServer::start_with(|c| c.session.code_replay_seconds = 0);
    let code = s.code("carol");
    assert_eq!(s.post("/v1/login", None, &json!({"code": code})).status, 200);
    let r = s.post("/v1/login", None, &json!({"code": code}));
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "invalid_code");
    assert_eq!(r.json()["error"]["wechat_errcode"], 40163);
}

#[test]
fn simultaneous_requests_with_one_code_share_one_exchange() {
    let s = Arc::new(TestServer::start());
    s.fake_behaviour(json!({"latency_ms": 300}));
    let code = s.code("dave");
    // One exchange and the three replays a code allows, all from the same client.
    let handles: Vec<_> = (0..1 + wxlogin::store::MAX_CODE_REPLAYS)
        .map(|_| {
            let (s, code) = (s.clone(), code.clone());
            std::thread::spawn(move || s.post("/v1/login", None, &json!({"code": code})))
        })
        .collect();
    let replies: Vec<Reply> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["new_user"], true);
    }
    let ids: std::collections::HashSet<String> = replies.iter().map(|r| r.json()["user"]["id"].to_string()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(s.fake_calls("jscode2session"), 1);
}

/// A server that takes the client IP from `X-Forwarded-For`, so that tests can speak
/// from several addresses.
fn behind_proxy() -> TestServer {
    TestServer::start_with(|c| c.server.trust_forwarded_for = true)
}

/// POST /v1/login with `code`, from client `ip` (through X-Forwarded-For), with an
/// Idempotency-Key when `key` is given.
fn login_from(s: &TestServer, code: &str, ip: &str, key: Option<&str>) -> Reply {
    let mut headers = vec![("Content-Type", "application/json"), ("X-Forwarded-For", ip)];
    if let Some(k) = key {
        headers.push(("Idempotency-Key", k));
    }
    send(&s.url("/v1/login"), "POST", None, Some(json!({"code": code}).to_string()), &headers)
}

/// 401 invalid_code with WeChat's 40163, exactly as a used code outside the window.
fn assert_code_used(r: &Reply, what: &str) {
    assert_eq!((r.status, r.error_code()), (401, "invalid_code".to_string()), "{what}: {}", r.text);
    assert_eq!(r.json()["error"]["wechat_errcode"], 40163, "{what}");
}

#[test]
fn a_replay_from_another_ip_is_invalid_code() {
    let s = behind_proxy();
    let code = s.code("rita");
    let first = login_from(&s, &code, "203.0.113.5", None);
    assert_eq!(first.status, 200, "{}", first.text);
    assert_code_used(&login_from(&s, &code, "198.51.100.9", None), "another IP");
    // The first caller still gets its replay: the refusal did not spend it.
    let again = login_from(&s, &code, "203.0.113.5", None);
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["user"]["id"], first.json()["user"]["id"]);
    assert_eq!(s.fake_calls("jscode2session"), 1, "a refused replay does not ask WeChat either");
}

#[test]
fn a_replay_needs_the_same_idempotency_key_and_is_answered_three_times() {
    let s = behind_proxy();
    let code = s.code("kim");
    let first = login_from(&s, &code, "203.0.113.5", Some("key-1"));
    assert_eq!(first.status, 200, "{}", first.text);
    let user = first.json()["user"]["id"].clone();
    assert_code_used(&login_from(&s, &code, "203.0.113.5", Some("key-2")), "another key");
    assert_code_used(&login_from(&s, &code, "203.0.113.5", None), "no key, same IP");
    let mut tokens = std::collections::HashSet::new();
    // The key decides, wherever the client now is (a phone moving from Wi-Fi to 4G).
    for ip in ["203.0.113.5", "198.51.100.9", "192.0.2.1"] {
        let r = login_from(&s, &code, ip, Some("key-1"));
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["user"]["id"], user);
        assert_eq!(r.json()["new_user"], first.json()["new_user"]);
        tokens.insert(r.json()["token"].as_str().unwrap().to_string());
    }
    assert_eq!(tokens.len(), 3, "each replay is a new session");
    assert_code_used(&login_from(&s, &code, "203.0.113.5", Some("key-1")), "a fourth replay");
    assert_eq!(s.fake_calls("jscode2session"), 1);
}

#[test]
fn malformed_idempotency_keys_are_refused_naming_the_header() {
    let s = TestServer::start();
    let long = "k".repeat(129);
    for bad in ["has space", long.as_str()] {
        let r = send(
            &s.url("/v1/login"),
            "POST",
            None,
            Some(json!({"code": s.code("lee")}).to_string()),
            &[("Content-Type", "application/json"), ("Idempotency-Key", bad)],
        );
        assert_eq!((r.status, r.error_code()), (400, "invalid_request".into()), "{bad:?}: {}", r.text);
        assert!(r.json()["error"]["message"].as_str().unwrap().contains("Idempotency-Key"), "{}", r.text);
    }
    assert_eq!(s.fake_calls("jscode2session"), 0, "a refused request does not spend the code");
    let ok = "k".repeat(128);
    let r = login_from(&s, &s.code("lee"), "127.0.0.1", Some(&ok));
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn a_shared_exchange_answers_only_the_first_caller_and_at_most_three_followers() {
    let s = Arc::new(TestServer::start_with(|c| {
        c.server.trust_forwarded_for = true;
        c.wechat.timeout_ms = 10_000;
    }));
    s.fake_behaviour(json!({"latency_ms": 3000}));
    let code = s.code("nia");
    let spawn = |ip: &'static str, key: &'static str| {
        let (s, code) = (s.clone(), code.clone());
        std::thread::spawn(move || login_from(&s, &code, ip, Some(key)))
    };
    let leader = spawn("203.0.113.5", "first");
    // Generous: the leader only has to reach the exchange, which then takes 3 s.
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let mine: Vec<_> = (0..4).map(|_| spawn("203.0.113.5", "first")).collect();
    let others: Vec<_> = [("198.51.100.9", "first-guess"), ("198.51.100.9", "other"), ("203.0.113.5", "other")]
        .into_iter()
        .map(|(ip, key)| spawn(ip, key))
        .collect();
    let leader = leader.join().unwrap();
    assert_eq!(leader.status, 200, "{}", leader.text);
    let mine: Vec<Reply> = mine.into_iter().map(|h| h.join().unwrap()).collect();
    let answered: Vec<&Reply> = mine.iter().filter(|r| r.status == 200).collect();
    assert_eq!(answered.len(), 3, "three of the first caller's four followers: {mine:?}");
    for r in answered {
        assert_eq!(r.json()["user"]["id"], leader.json()["user"]["id"]);
    }
    for r in mine.iter().filter(|r| r.status != 200) {
        assert_code_used(r, "the first caller's fourth follower");
    }
    for h in others {
        assert_code_used(&h.join().unwrap(), "another caller's follower");
    }
    assert_eq!(s.fake_calls("jscode2session"), 1);
}

#[test]
fn form_bodies_are_accepted() {
    let s = TestServer::start();
    let body = format!("code={}&app=main", s.code("erin"));
    let r =
        send(&s.url("/v1/login"), "POST", None, Some(body), &[("Content-Type", "application/x-www-form-urlencoded")]);
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn unionid_is_kept_once_wechat_sends_it() {
    let s = TestServer::start();
    let r = send(
        &format!("{}/__fake/login", s.fake.base_url()),
        "POST",
        None,
        Some(json!({"user": "uma", "unionid": true}).to_string()),
        &[],
    );
    let fake = r.json();
    let login = s.post("/v1/login", None, &json!({"code": fake["code"]}));
    assert_eq!(login.json()["user"]["unionid"], fake["unionid"]);
    assert!(fake["unionid"].is_string());
}

#[test]
fn bad_bodies_name_the_field() {
    let s = TestServer::start();
    let r = s.post("/v1/login", None, &json!({}));
    assert_eq!((r.status, r.error_code()), (400, "invalid_request".into()));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("`code`"));
    let r = s.post("/v1/login", None, &json!({"code": 12}));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("`code`"));
    let r = s.post("/v1/login", None, &json!({"code": "has space"}));
    assert_eq!((r.status, r.error_code()), (400, "invalid_request".into()));
    let r = send(&s.url("/v1/login"), "POST", None, Some("{not json".into()), &[("Content-Type", "application/json")]);
    assert_eq!((r.status, r.error_code()), (400, "invalid_request".into()));
    assert_eq!(s.fake_calls("jscode2session"), 0, "WeChat is not asked about malformed codes");
}

#[test]
fn apps_are_chosen_by_name() {
    let s = TestServer::start_with(|c| {
        let mut second = c.apps[0].clone();
        second.name = "shop".into();
        second.appid = "wxshop00000000002".into();
        c.apps.push(second);
    });
    let r = s.post("/v1/login", None, &json!({"code": s.code("x")}));
    assert_eq!((r.status, r.error_code()), (400, "invalid_request".into()));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("`app`"));
    let r = s.post("/v1/login", None, &json!({"code": s.code("x"), "app": "nope"}));
    assert_eq!((r.status, r.error_code()), (400, "unknown_app".into()));
    let code = s.fake.login_code("wxshop00000000002", "x");
    let r = s.post("/v1/login", None, &json!({"code": code, "app": "shop"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["user"]["app"], "shop");
    let main = s.post("/v1/login", None, &json!({"code": s.code("x"), "app": "main"}));
    assert_ne!(main.json()["user"]["id"], r.json()["user"]["id"], "users are per app");
}

#[test]
fn wechat_errors_map_to_the_contract() {
    let s = TestServer::start();
    let r = s.post("/v1/login", None, &json!({"code": "never-issued"}));
    assert_eq!((r.status, r.error_code()), (401, "invalid_code".into()));
    assert_eq!(r.json()["error"]["wechat_errcode"], 40029);
    for (errcode, status, code) in
        [(40226, 403, "user_blocked"), (45011, 429, "wechat_rate_limited"), (40999, 502, "wechat_error")]
    {
        s.fake_behaviour(json!({"fail": {"api": "jscode2session", "errcode": errcode, "times": 1}}));
        let r = s.post("/v1/login", None, &json!({"code": s.code("f")}));
        assert_eq!((r.status, r.error_code()), (status, code.to_string()), "errcode {errcode}: {}", r.text);
        assert_eq!(r.json()["error"]["wechat_errcode"], errcode);
    }
    assert_eq!(s.post("/v1/login", None, &json!({"code": "x"})).status, 401, "no injected failure is left over");
}

#[test]
fn busy_wechat_is_retried_then_reported() {
    let s = TestServer::start();
    // One -1 is absorbed by the retry (retries = 1 in tests).
    s.fake_behaviour(json!({"fail": {"api": "jscode2session", "errcode": -1, "times": 1}}));
    assert_eq!(s.post("/v1/login", None, &json!({"code": s.code("g")})).status, 200);
    // Two are not.
    s.fake_behaviour(json!({"fail": {"api": "jscode2session", "errcode": -1, "times": 2}}));
    let r = s.post("/v1/login", None, &json!({"code": s.code("g")}));
    assert_eq!((r.status, r.error_code()), (502, "wechat_error".into()));
    assert_eq!(r.json()["error"]["wechat_errcode"], -1);
    s.fake_behaviour(json!({"fail": {"api": "jscode2session", "errcode": "http_500", "times": 2}}));
    let r = s.post("/v1/login", None, &json!({"code": s.code("g")}));
    assert_eq!((r.status, r.error_code()), (502, "wechat_error".into()));
    s.fake_behaviour(json!({"fail": {"api": "jscode2session", "errcode": "garbage", "times": 1}}));
    let r = s.post("/v1/login", None, &json!({"code": s.code("g")}));
    assert_eq!((r.status, r.error_code()), (502, "wechat_error".into()));
}

#[test]
fn hung_wechat_is_a_timeout() {
    let s = TestServer::start_with(|c| {
        c.wechat.timeout_ms = 300;
        c.wechat.retries = 0;
    });
    s.fake_behaviour(json!({"fail": {"api": "jscode2session", "errcode": "hang", "times": 1}}));
    let r = s.post("/v1/login", None, &json!({"code": s.code("h")}));
    assert_eq!((r.status, r.error_code()), (504, "wechat_timeout".into()));
}

#[test]
fn unreachable_wechat_is_a_502() {
    let s = TestServer::start_with(|c| c.wechat.api_base = "http://127.0.0.1:9".into());
    let r = s.post("/v1/login", None, &json!({"code": "abc"}));
    assert_eq!((r.status, r.error_code()), (502, "wechat_error".into()));
    assert!(!r.text.contains("secret"), "{}", r.text);
}

#[test]
fn the_per_ip_limit_answers_429_with_retry_after() {
    let s = TestServer::start_with(|c| c.rate_limit.login_per_ip_per_minute = 3);
    for _ in 0..3 {
        assert_eq!(s.post("/v1/login", None, &json!({"code": "x"})).status, 401);
    }
    let r = s.post("/v1/login", None, &json!({"code": s.code("i")}));
    assert_eq!((r.status, r.error_code()), (429, "rate_limited".into()));
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry));
}
