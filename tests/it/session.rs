//! Sessions, /v1/auth, /v1/me, and the HTTP layer's own answers.

use std::sync::Arc;

use serde_json::json;

use crate::support::*;

fn now() -> i64 {
    wxlogin::store::now()
}

#[test]
fn session_answers_the_user_and_expiry() {
    let s = TestServer::start();
    let (token, login) = s.login("alice");
    let r = s.get("/v1/session", Some(&token));
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["user"], login["user"]);
    assert_eq!(v["app"], "main");
    let expires = v["expires_at"].as_i64().unwrap();
    assert!((expires - now() - 2_592_000).abs() < 5);
}

#[test]
fn a_login_beyond_max_per_user_ends_the_least_recently_used_sessions() {
    let s = TestServer::start_with(|c| c.session.max_per_user = 3);
    // Each login is made to look 100 s older than the next, so that "last used" is
    // unambiguous (it is kept to the second, and slid at most once a minute).
    let age = || {
        s.sql("UPDATE sessions SET last_seen_at = last_seen_at - 100, created_at = created_at - 100");
    };
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(s.login("max").0);
        age();
    }
    // The oldest is used now (its expiry slides, which records the use)...
    assert_eq!(s.get("/v1/session", Some(&tokens[0])).status, 200);
    // ...so two more logins end the second and the third, which were not.
    tokens.push(s.login("max").0);
    age();
    tokens.push(s.login("max").0);
    let status: Vec<u16> = tokens.iter().map(|t| s.get("/v1/session", Some(t)).status).collect();
    assert_eq!(status, [200, 401, 401, 200, 200]);
    assert_eq!(s.get("/v1/session", Some(&tokens[1])).error_code(), "unauthorized");
    // Another user's sessions are theirs alone.
    let (other, _) = s.login("other");
    assert_eq!(s.get("/v1/session", Some(&other)).status, 200);
    assert_eq!(s.get("/v1/session", Some(&tokens[0])).status, 200);
}

#[test]
fn missing_or_unknown_tokens_are_unauthorized() {
    let s = TestServer::start();
    // RFC 6750: no token, no error attribute; a token we do not know is invalid_token,
    // with our code as the description (nginx's auth_request passes only the header on).
    let r = s.get("/v1/session", None);
    assert_eq!((r.status, r.error_code()), (401, "unauthorized".into()));
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="wxlogin""#));
    for token in [Some("not-a-token"), Some("")] {
        let r = s.get("/v1/session", token);
        assert_eq!((r.status, r.error_code()), (401, "unauthorized".into()));
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer realm="wxlogin", error="invalid_token", error_description="unauthorized""#)
        );
    }
}

#[test]
fn expired_sessions_say_so() {
    let s = TestServer::start();
    let (token, _) = s.login("bob");
    s.sql(&format!("UPDATE sessions SET expires_at = {}", now() - 1));
    let r = s.get("/v1/session", Some(&token));
    assert_eq!((r.status, r.error_code()), (401, "session_expired".into()));
    let expired = r#"Bearer realm="wxlogin", error="invalid_token", error_description="session_expired""#;
    assert_eq!(r.header("www-authenticate"), Some(expired));
    // /v1/auth answers nginx's auth_request, which keeps only the status and this header.
    let r = s.get("/v1/auth", Some(&token));
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some(expired)));
}

#[test]
fn use_slides_the_idle_expiry_but_never_past_the_absolute_cap() {
    let s = TestServer::start();
    let (token, _) = s.login("carol");
    let t = now();
    s.sql(&format!("UPDATE sessions SET last_seen_at = {}, expires_at = {}", t - 120, t + 100));
    let v = s.get("/v1/session", Some(&token)).json();
    assert!(v["expires_at"].as_i64().unwrap() > t + 2_000_000, "slid: {v}");
    s.sql(&format!(
        "UPDATE sessions SET last_seen_at = {}, expires_at = {}, max_expires_at = {}",
        t - 120,
        t + 100,
        t + 500
    ));
    let v = s.get("/v1/session", Some(&token)).json();
    assert_eq!(v["expires_at"].as_i64().unwrap(), t + 500, "capped: {v}");
}

#[test]
fn without_sliding_the_expiry_stays() {
    let s = TestServer::start_with(|c| c.session.sliding = false);
    let (token, _) = s.login("dan");
    let t = now();
    s.sql(&format!("UPDATE sessions SET last_seen_at = {}, expires_at = {}", t - 120, t + 100));
    assert_eq!(s.get("/v1/session", Some(&token)).json()["expires_at"], t + 100);
}

#[test]
fn logout_ends_only_that_session() {
    let s = TestServer::start();
    let (a, _) = s.login("erin");
    let (b, _) = s.login("erin");
    assert_eq!(s.delete("/v1/session", Some(&a)).status, 204);
    assert_eq!(s.delete("/v1/session", Some(&a)).status, 204, "already gone is still 204");
    assert_eq!(s.get("/v1/session", Some(&a)).status, 401);
    assert_eq!(s.get("/v1/session", Some(&b)).status, 200);
    let r = s.delete("/v1/session", None);
    assert_eq!((r.status, r.error_code()), (401, "unauthorized".into()));
}

#[test]
fn auth_gives_the_proxy_identity_headers() {
    let s = TestServer::start_with(|c| c.session.expose_openid = false);
    let (token, login) = s.login("frank");
    assert!(login["user"].get("openid").is_none(), "expose_openid = false hides openid");
    let r = s.get("/v1/auth", Some(&token));
    assert_eq!(r.status, 200);
    assert!(r.text.is_empty());
    assert_eq!(r.header("x-user-id").unwrap(), login["user"]["id"].to_string());
    assert_eq!(r.header("x-app"), Some("main"));
    assert!(r.header("x-openid").unwrap().starts_with('o'), "the proxy still gets the openid");
    assert_eq!(s.get("/v1/auth", None).status, 401);
}

#[test]
fn me_reads_and_updates_the_profile() {
    let s = TestServer::start();
    let (token, _) = s.login("gina");
    assert_eq!(s.get("/v1/me", Some(&token)).json()["nickname"], serde_json::Value::Null);
    let r =
        s.patch("/v1/me", Some(&token), &json!({"nickname": "Gina", "avatar_url": "https://img.example.com/g.png"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let me = s.get("/v1/me", Some(&token)).json();
    assert_eq!(
        (me["nickname"].as_str(), me["avatar_url"].as_str()),
        (Some("Gina"), Some("https://img.example.com/g.png"))
    );
    let r = s.patch("/v1/me", Some(&token), &json!({"nickname": "G2"}));
    assert_eq!(r.json()["avatar_url"], "https://img.example.com/g.png", "a field not sent is kept");

    let r = s.patch("/v1/me", Some(&token), &json!({}));
    assert_eq!((r.status, r.error_code()), (400, "invalid_request".into()));
    let r = s.patch("/v1/me", Some(&token), &json!({"nickname": "x".repeat(65)}));
    assert_eq!((r.status, r.error_code()), (422, "invalid_field".into()));
    let r = s.patch("/v1/me", Some(&token), &json!({"avatar_url": "javascript:alert(1)"}));
    assert_eq!((r.status, r.error_code()), (422, "invalid_field".into()));
    let r = s.patch("/v1/me", Some(&token), &json!({"nickname": 5}));
    assert_eq!((r.status, r.error_code()), (400, "invalid_request".into()));
    assert_eq!(s.patch("/v1/me", None, &json!({"nickname": "x"})).status, 401);
}

#[test]
fn unknown_paths_methods_and_big_bodies() {
    let s = TestServer::start();
    let r = s.get("/v1/nothing", None);
    assert_eq!((r.status, r.error_code()), (404, "not_found".into()));
    let r = s.get("/v1/login", None);
    assert_eq!((r.status, r.error_code()), (405, "method_not_allowed".into()));
    assert_eq!(r.header("allow"), Some("POST"));
    let r = send(&s.url("/v1/session"), "PUT", None, Some("{}".into()), &[]);
    assert_eq!(r.header("allow"), Some("GET, HEAD, DELETE"));
    let big = json!({"code": "x".repeat(70_000)});
    let r = s.post("/v1/login", None, &big);
    assert_eq!((r.status, r.error_code()), (413, "body_too_large".into()));
}

#[test]
fn request_ids_are_echoed_or_made() {
    let s = TestServer::start();
    let r = send(&s.url("/healthz"), "GET", None, None, &[("X-Request-Id", "trace-42")]);
    assert_eq!(r.header("x-request-id"), Some("trace-42"));
    let r = send(&s.url("/healthz"), "GET", None, None, &[("X-Request-Id", "bad id with spaces")]);
    let id = r.header("x-request-id").unwrap();
    assert!(id != "bad id with spaces" && !id.is_empty());
    let r = s.get("/nope", None);
    assert!(r.header("x-request-id").is_some(), "errors carry the id too");
}

#[test]
fn healthz_reflects_the_database() {
    let s = TestServer::start();
    let r = s.get("/healthz", None);
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
    s.app().begin_shutdown();
    let r = s.get("/v1/session", None);
    assert_eq!((r.status, r.error_code()), (503, "unavailable".into()));
}

#[test]
fn metrics_are_prometheus_text_for_loopback() {
    let s = TestServer::start();
    let (token, _) = s.login("hal");
    s.get("/v1/session", Some(&token));
    let r = s.get("/metrics", None);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    for needle in [
        "wxlogin_requests_total{route=\"/v1/session\",status=\"200\"} 1",
        "wxlogin_logins_total{result=\"new_user\"} 1",
        "wxlogin_wechat_calls_total{api=\"jscode2session\",errcode=\"0\"} 1",
        "wxlogin_live_sessions 1",
        "wxlogin_request_duration_seconds_count",
    ] {
        assert!(r.text.contains(needle), "missing {needle} in\n{}", r.text);
    }
    for line in r.text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').expect("name value");
        assert!(name.starts_with("wxlogin_"), "{line}");
        value.parse::<f64>().unwrap_or_else(|_| panic!("not a number: {line}"));
    }
}

#[test]
fn a_hung_wechat_does_not_slow_session_checks_and_a_full_lane_answers_503() {
    // One WeChat worker and a queue of one: the lane holds two logins in all.
    let s = Arc::new(TestServer::start_with(|c| {
        c.server.wechat_workers = 1;
        c.wechat.timeout_ms = 5000;
        c.wechat.retries = 0;
    }));
    let (token, _) = s.login("ivy");
    s.fake_behaviour(json!({"latency_ms": 2000}));
    let slow_login = |name: &'static str| {
        let s = s.clone();
        let code = s.code(name);
        let handle = std::thread::spawn(move || s.post("/v1/login", None, &json!({"code": code})).status);
        // Give the lane time to take it (the worker, then the queue's one place).
        std::thread::sleep(std::time::Duration::from_millis(300));
        handle
    };
    let running = slow_login("slow-running");
    let queued = slow_login("slow-queued");
    // Session checks are answered while the WeChat lane is stuck.
    for _ in 0..20 {
        assert_eq!(s.get("/v1/session", Some(&token)).status, 200);
    }
    assert!(!running.is_finished() && !queued.is_finished(), "session checks finished before the slow logins");
    // The lane is full: another login is refused at once.
    let r = s.post("/v1/login", None, &json!({"code": s.code("late")}));
    assert_eq!((r.status, r.error_code()), (503, "unavailable".into()));
    assert_eq!((running.join().unwrap(), queued.join().unwrap()), (200, 200));
}
