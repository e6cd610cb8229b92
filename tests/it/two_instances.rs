//! Two instances on one PostgreSQL database and one fake WeChat, as two backends behind
//! a balancer: what must hold across instances holds through the database alone.
//! (Compiled only under `pg::`: see pg.rs.)

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use wxlogin::fake_wechat::{FakeOptions, FakeWeChat};
use wxlogin::store::OrderState;

use crate::support::*;

/// A second instance beside `a`; asserts that both really share a PostgreSQL database.
fn pair(a: &TestServer) -> Peer {
    assert_eq!(a.engine(), Engine::Postgres, "two instances need the shared engine");
    let b = a.peer();
    let url = |app: &wxlogin::app::App| app.config.database.url.as_ref().map(|u| u.expose().to_string());
    assert_eq!(url(b.app()), url(a.app()), "one database");
    b
}

fn login_at(url: &str, code: &str, ip: &str, key: Option<&str>) -> Reply {
    let mut headers = vec![("Content-Type", "application/json"), ("X-Forwarded-For", ip)];
    if let Some(k) = key {
        headers.push(("Idempotency-Key", k));
    }
    send(&format!("{url}/v1/login"), "POST", None, Some(json!({"code": code}).to_string()), &headers)
}

#[test]
fn a_session_made_on_one_instance_verifies_slides_and_ends_on_the_other() {
    let a = TestServer::start();
    let b = pair(&a);
    let (token, login) = a.login("alice");
    let me = b.get("/v1/me", Some(&token));
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json()["id"], login["user"]["id"], "{}", me.text);
    // A profile written on B is what A reads.
    let r = b.patch("/v1/me", Some(&token), &json!({"nickname": "Alice B"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(a.get("/v1/me", Some(&token)).json()["nickname"], "Alice B");

    // Used on B, the session slides, and A sees the new expiry.
    let t = wxlogin::store::now();
    a.sql(&format!("UPDATE sessions SET last_seen_at = {}, expires_at = {}", t - 120, t + 100));
    let v = b.get("/v1/session", Some(&token)).json();
    assert!(v["expires_at"].as_i64().unwrap() > t + 2_000_000, "slid on B: {v}");
    let v = a.get("/v1/session", Some(&token)).json();
    assert!(v["expires_at"].as_i64().unwrap() > t + 2_000_000, "A sees B's slide: {v}");

    // Logged out on A: ended on B at once.
    assert_eq!(a.delete("/v1/session", Some(&token)).status, 204);
    let r = b.get("/v1/me", Some(&token));
    assert_eq!((r.status, r.error_code()), (401, "unauthorized".into()), "{}", r.text);
    let r = b.get("/v1/session", Some(&token));
    assert_eq!(r.status, 401, "{}", r.text);
}

#[test]
fn one_code_sent_to_both_at_once_is_exchanged_once() {
    let tweak = |c: &mut wxlogin::config::Config| {
        c.server.trust_forwarded_for = true;
        c.server.wechat_workers = 16;
        c.wechat.timeout_ms = 5000;
    };
    let a = TestServer::start_with(tweak);
    let b = pair(&a);
    // A WeChat round trip long enough that both requests are in it at once.
    a.fake_behaviour(json!({"latency_ms": 80}));
    let rounds = 12;
    for round in 0..rounds {
        let code = a.code(&format!("both-{round}"));
        // One client retrying through both backends (same IP; or, a phone changing
        // networks, another IP and the same Idempotency-Key), so the second is its
        // follower and gets the same user; or two clients with one code.
        let (same_client, ips, key) = match round % 3 {
            0 => (true, ["203.0.113.5", "203.0.113.5"], None),
            1 => (true, ["203.0.113.5", "198.51.100.9"], Some("phone-1")),
            _ => (false, ["203.0.113.5", "198.51.100.9"], None),
        };
        let barrier = Barrier::new(2);
        let replies: Vec<Reply> = std::thread::scope(|s| {
            let handles: Vec<_> = [(&a.base, ips[0]), (&b.base, ips[1])]
                .into_iter()
                .map(|(base, ip)| {
                    let (code, barrier) = (&code, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        login_at(base, code, ip, key)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("login thread")).collect()
        });
        for r in &replies {
            assert!(r.status == 200 || r.status == 401, "round {round}: never 5xx: {} {}", r.status, r.text);
        }
        let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
        assert!(!ok.is_empty(), "round {round}: nobody logged in: {replies:?}");
        if same_client {
            assert_eq!(ok.len(), 2, "round {round}: the same client is answered on both: {replies:?}");
            assert_eq!(ok[0].json()["user"]["id"], ok[1].json()["user"]["id"]);
            assert_ne!(ok[0].json()["token"], ok[1].json()["token"], "two sessions");
        } else {
            assert_eq!(ok.len(), 1, "round {round}: only the first client: {replies:?}");
            let refused = replies.iter().find(|r| r.status == 401).expect("the other");
            assert_eq!(refused.error_code(), "invalid_code", "{}", refused.text);
        }
        assert_eq!(a.fake_calls("jscode2session"), round + 1, "round {round}: one exchange with WeChat");
    }
    // One user per code: no exchange ran twice and recorded its user twice.
    assert_eq!(a.sql_i64("SELECT count(*) FROM users"), rounds as i64);
}

#[test]
fn the_replay_rules_and_their_count_hold_across_instances() {
    let tweak = |c: &mut wxlogin::config::Config| c.server.trust_forwarded_for = true;
    let a = TestServer::start_with(tweak);
    let b = pair(&a);
    let code = a.code("kim");
    let first = login_at(&a.base, &code, "203.0.113.5", Some("key-1"));
    assert_eq!(first.status, 200, "{}", first.text);
    let user = first.json()["user"]["id"].clone();
    // Another key, on the other instance: refused as WeChat would (40163).
    let r = login_at(&b.base, &code, "203.0.113.5", Some("key-2"));
    assert_eq!((r.status, r.json()["error"]["wechat_errcode"].as_i64()), (401, Some(40163)), "{}", r.text);
    // Three replays in all, wherever they land.
    for (i, base) in [&b.base, &a.base, &b.base].into_iter().enumerate() {
        let r = login_at(base, &code, "198.51.100.9", Some("key-1"));
        assert_eq!(r.status, 200, "replay {i}: {}", r.text);
        assert_eq!(r.json()["user"]["id"], user);
    }
    for base in [&a.base, &b.base] {
        let r = login_at(base, &code, "203.0.113.5", Some("key-1"));
        assert_eq!((r.status, r.json()["error"]["wechat_errcode"].as_i64()), (401, Some(40163)), "a fourth replay");
    }
    assert_eq!(a.fake_calls("jscode2session"), 1);
}

fn phone(url: &str, token: &str, code: &str) -> Reply {
    send(
        &format!("{url}/v1/me/phone"),
        "POST",
        Some(token),
        Some(json!({ "code": code }).to_string()),
        &[("Content-Type", "application/json")],
    )
}

#[test]
fn sixteen_callers_on_two_instances_after_a_40001_cause_one_refresh() {
    let tweak = |c: &mut wxlogin::config::Config| {
        c.server.wechat_workers = 24;
        c.rate_limit.phone_per_user_per_hour = 100;
    };
    let a = TestServer::start_with(tweak);
    let b = pair(&a);
    let (token, _) = a.login("bob");
    for base in [&a.base, &b.base] {
        let r = phone(base, &token, &a.phone_code("bob"));
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(a.fake_calls("stable_token"), 1, "B uses the token A fetched and stored");
    // Every token WeChat issued so far answers 40001 from now on; replies take 50 ms,
    // so that the 16 requests overlap the refresh.
    a.fake_behaviour(json!({"invalidate_tokens": true, "latency_ms": 50}));
    let codes: Vec<String> = (0..16).map(|_| a.phone_code("bob")).collect();
    let barrier = Barrier::new(16);
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = codes
            .iter()
            .enumerate()
            .map(|(i, code)| {
                let base = if i % 2 == 0 { &a.base } else { &b.base };
                let (token, barrier) = (&token, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    phone(base, token, code)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("phone thread")).collect()
    });
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(a.fake_calls("stable_token"), 2, "exactly one refresh for 16 callers on two instances");
}

#[test]
fn a_payment_notification_sent_to_both_at_once_applies_once() {
    let a = TestServer::start_pay();
    let b = pair(&a);
    let (token, _) = a.login("payer");
    let fake = a.fake.base_url();
    let rounds = 6;
    for round in 0..rounds {
        let r = a.post("/v1/pay/orders", Some(&token), &json!({"product": "vip30"}));
        assert_eq!(r.status, 201, "{}", r.text);
        let no = r.json()["order"]["out_trade_no"].as_str().expect("out_trade_no").to_string();
        // Paid at WeChat Pay, its notification held back...
        let r = send(
            &format!("{fake}/__fake/pay/pay"),
            "POST",
            None,
            Some(json!({"out_trade_no": no, "notify": {"mode": "never"}}).to_string()),
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.text);
        // ...then delivered to both instances at the same moment.
        let barrier = Barrier::new(2);
        let replies: Vec<Reply> = std::thread::scope(|s| {
            let handles: Vec<_> = [a.url("/v1/pay/notify"), b.url("/v1/pay/notify")]
                .into_iter()
                .map(|to| {
                    let (no, fake, barrier) = (&no, &fake, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let body = json!({"out_trade_no": no, "mode": "once", "to": to, "wait": true});
                        send(&format!("{fake}/__fake/pay/notify"), "POST", None, Some(body.to_string()), &[])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("notify thread")).collect()
        });
        for r in &replies {
            assert_eq!(r.status, 200, "round {round}: {}", r.text);
        }
        let deliveries = a.deliveries(&no);
        assert_eq!(deliveries.len(), 2, "{deliveries:?}");
        assert!(deliveries.iter().all(|d| d["status"] == 204), "both answered 204: {deliveries:?}");
        for store in [&a.app().store, &b.app().store] {
            assert_eq!(store.order(&no).unwrap().expect("order").state, OrderState::Paid);
            let events: Vec<String> = store.order_events(&no).unwrap().into_iter().map(|e| e.kind).collect();
            assert_eq!(events, ["order.paid"], "round {round}: one event");
        }
    }
    let metric = |text: &str, result: &str| -> u64 {
        let needle = format!("wxlogin_pay_notifications_total{{result=\"{result}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(needle.as_str())).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let (ma, mb) = (a.get("/metrics", None).text, b.get("/metrics", None).text);
    assert_eq!(metric(&ma, "applied") + metric(&mb, "applied"), rounds, "each payment applied once:\n{ma}\n{mb}");
    assert_eq!(metric(&ma, "duplicate") + metric(&mb, "duplicate"), rounds, "the other copy a duplicate");
    assert_eq!(a.sql_i64("SELECT count(*) FROM pay_events WHERE type = 'order.paid'"), rounds as i64);
}

/// Logins as fresh users, as fast as four threads go, alternating between two
/// instances, until stopped; every 200 kept. Transport errors (an instance killed) are
/// counted; any other answer than 200 fails the test.
struct LoginLoad {
    stop: Arc<AtomicBool>,
    answered: Arc<Mutex<Vec<(String, SocketAddr)>>>,
    /// The first answer other than 200 (its thread stopped there).
    error: Arc<Mutex<Option<String>>>,
    threads: Vec<std::thread::JoinHandle<usize>>,
}

impl LoginLoad {
    fn start(fake: &Arc<FakeWeChat>, addrs: [SocketAddr; 2]) -> LoginLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let error = Arc::new(Mutex::new(None));
        let threads = (0..4)
            .map(|t| {
                let (fake, stop, answered, error) = (fake.clone(), stop.clone(), answered.clone(), error.clone());
                std::thread::spawn(move || {
                    let mut failures = 0;
                    let mut i = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        let addr = addrs[(i + t) % 2];
                        let code = fake.login_code(APPID, &format!("load-{t}-{i}"));
                        i += 1;
                        let body = Some(json!({"code": code}).to_string());
                        let url = format!("http://{addr}/v1/login");
                        match try_send(&url, "POST", None, body, &[("Content-Type", "application/json")]) {
                            Ok(r) if r.status == 200 => {
                                let token = r.json()["token"].as_str().expect("token").to_string();
                                answered.lock().unwrap_or_else(|p| p.into_inner()).push((token, addr));
                            }
                            Ok(r) => {
                                let e = format!("login on {addr} answered {}: {}", r.status, r.text);
                                error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                                break;
                            }
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
        LoginLoad { stop, answered, error, threads }
    }

    fn count_on(&self, addr: SocketAddr) -> usize {
        self.answered.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|(_, a)| *a == addr).count()
    }

    fn wait_for(&self, addr: SocketAddr, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.count_on(addr) < n {
            if let Some(e) = self.error.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                panic!("{e}");
            }
            assert!(Instant::now() < deadline, "fewer than {n} logins answered by {addr} in 30 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(self) -> Vec<(String, SocketAddr)> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("login thread");
        }
        if let Some(e) = self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            panic!("{e}");
        }
        let answered = self.answered.lock().unwrap_or_else(|p| p.into_inner()).clone();
        answered
    }
}

#[test]
fn sigkill_of_one_instance_under_login_load_loses_no_answered_session() {
    let fake = Arc::new(
        FakeWeChat::start(
            "127.0.0.1:0",
            FakeOptions { apps: vec![(APPID.into(), SECRET.into())], ..FakeOptions::default() },
        )
        .expect("fake wechat"),
    );
    let dir = TempDir::new("two-kill");
    // One configuration, so one database, for both binaries.
    let cfg = write_config(dir.path(), &fake.base_url(), "[rate_limit]\nlogin_per_ip_per_minute = 1000000\n");
    let cfg = cfg.to_str().unwrap();
    let env = [("WXLOGIN_SECRET_MAIN", SECRET)];
    let (mut a, a_addr) = spawn_listening(&["serve", "--config", cfg], &env, &dir.path().join("a.log"));
    let (mut b, b_addr) = spawn_listening(&["serve", "--config", cfg], &env, &dir.path().join("b.log"));
    let load = LoginLoad::start(&fake, [a_addr, b_addr]);
    load.wait_for(a_addr, 20);
    load.wait_for(b_addr, 20);
    signal(&a, "KILL");
    assert!(!wait_with_limit(&mut a, Duration::from_secs(10)).success());
    // B keeps serving the load alone.
    let on_b = load.count_on(b_addr);
    load.wait_for(b_addr, on_b + 20);
    let answered = load.stop();
    let by_a = answered.iter().filter(|(_, addr)| *addr == a_addr).count();
    assert!(by_a >= 20, "only {by_a} logins answered by A");
    for (token, addr) in &answered {
        let r = send(&format!("http://{b_addr}/v1/session"), "GET", Some(token), None, &[]);
        assert_eq!(r.status, 200, "a session answered by {addr} does not verify on B: {}", r.text);
    }
    let distinct: HashSet<&String> = answered.iter().map(|(t, _)| t).collect();
    assert_eq!(distinct.len(), answered.len());
    assert!(sigterm_and_wait(&mut b, Duration::from_secs(20)).success());
}

/// Through `App::exclusively`, which every maintenance pass runs under: `serve`'s purge
/// timer (cli/serve.rs MAINTENANCE_EVERY, 10 minutes) has no configuration key, and
/// passes that short rarely overlap on their own.
#[test]
fn each_maintenance_pass_runs_on_one_instance_at_a_time_and_metrics_say_which() {
    let a = TestServer::start();
    let b = pair(&a);
    // While A runs a purge pass, B's finds the task's lock held and skips it.
    let inner = a.app().exclusively("purge", || b.app().exclusively("purge", || ()));
    assert_eq!(inner, Some(None), "B ran the purge while A held it");
    // Once A is done, B may run it.
    assert_eq!(b.app().exclusively("purge", || ()), Some(()));
    // Another task is not held by the purge.
    assert_eq!(a.app().exclusively("purge", || b.app().exclusively("pay", || ())), Some(Some(())));
    let count = |text: &str, outcome: &str| -> u64 {
        let needle = format!("wxlogin_maintenance_passes_total{{task=\"purge\",outcome=\"{outcome}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(needle.as_str())).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let (ma, mb) = (a.get("/metrics", None).text, b.get("/metrics", None).text);
    assert_eq!((count(&ma, "ran"), count(&ma, "skipped")), (2, 0), "A:\n{ma}");
    assert_eq!((count(&mb, "ran"), count(&mb, "skipped")), (1, 1), "B:\n{mb}");
}

#[test]
fn two_instances_drain_one_outbox_sending_each_event_once_and_in_order() {
    use super::webhook::{assert_delivered_in_order, count, order_with_events, pay_table, user, Answer, Receiver};

    let receiver = Receiver::start(|_, _| Answer::Status(200));
    let keys = TempDir::new("hook2");
    let pay = wxlogin::config::parse(
        &format!(
            "[[apps]]\nname = \"main\"\nappid = \"{APPID}\"\nsecret = \"{SECRET}\"\n{}",
            pay_table(keys.path(), &receiver.url(), "http://127.0.0.1:9")
        ),
        keys.path(),
        &|_| None,
    )
    .expect("pay config")
    .pay;
    let a = TestServer::start_with(move |c| c.pay = pay);
    let b = pair(&a);
    // The outbox filled before either instance sends: both then drain it at once.
    let (store, database) = (&a.app().store, &a.app().config.database);
    let orders: Vec<Vec<String>> = (0..8)
        .map(|i| {
            let (uid, openid) = user(&a.base, &a.fake, &format!("drain{i}"));
            order_with_events(store, database, uid, &openid, &format!("WD{i}"), 2)
        })
        .collect();
    for app in [a.app(), b.app()] {
        wxlogin::pay::webhook::spawn(app).expect("spawn").expect("a webhook thread");
    }
    let all: Vec<&String> = orders.iter().flatten().collect();
    let got = receiver.wait_until(Duration::from_secs(60), "all 24 events delivered", |got| {
        all.iter().all(|id| got.iter().any(|g| &g.id == *id && g.status == 200))
    });
    // Each order's events in order, though two senders took from the same outbox...
    assert_delivered_in_order(&got, &orders);
    // ...and each event sent once: one attempt, one request.
    std::thread::sleep(Duration::from_millis(500));
    let got = receiver.got();
    for id in &all {
        let e = store.pay_event(id).unwrap().expect("event");
        assert_eq!((e.attempts, count(&got, id)), (1, 1), "{id} sent more than once");
    }
    assert_eq!(got.len(), all.len());
}

/// Runs `calls` at once (released together), one thread each; their replies in order.
fn at_once<F: Fn() -> Reply + Sync>(calls: &[F]) -> Vec<Reply> {
    let barrier = Barrier::new(calls.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = calls
            .iter()
            .map(|call| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    call()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("request thread")).collect()
    })
}

#[test]
fn the_session_cap_holds_for_logins_on_both_instances_at_once() {
    let a = TestServer::start_with(|c| {
        c.session.max_per_user = 3;
        c.server.wechat_workers = 16;
    });
    let b = pair(&a);
    let (first_token, first) = a.login("capped");
    let user = first["user"]["id"].as_i64().expect("id");
    let codes: Vec<String> = (0..12).map(|_| a.code("capped")).collect();
    let calls: Vec<_> = codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let base = if i % 2 == 0 { a.base.clone() } else { b.base.clone() };
            move || login_at(&base, code, "203.0.113.5", None)
        })
        .collect();
    let replies = at_once(&calls);
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let live = a.sql_i64(&format!("SELECT count(*) FROM sessions WHERE user_id = {user}"));
    assert_eq!(live, 3, "max_per_user holds across instances");
    // The three kept verify on either. Which three: the most recently used, ties (the
    // same second, the first login's too) broken by token hash, as on SQLite.
    let verified = replies
        .iter()
        .map(|r| r.json()["token"].as_str().expect("token").to_string())
        .chain([first_token])
        .filter(|t| a.get("/v1/session", Some(t)).status == 200 && b.get("/v1/session", Some(t)).status == 200)
        .count();
    assert_eq!(verified, 3);
}

#[test]
fn two_refunds_sent_to_both_at_once_never_refund_more_than_was_paid() {
    const API_KEY: &str = "internal-key-0123456789";
    let a = TestServer::start_pay_with(|c| c.internal.api_keys = vec![wxlogin::secrets::Secret::from(API_KEY)]);
    let b = pair(&a);
    let internal =
        |url: String, body: serde_json::Value| send(&url, "POST", Some(API_KEY), Some(body.to_string()), &[]);
    let next = json!({"outcome": "success", "times": 20, "notify": {"mode": "never"}});
    let r = send(&format!("{}/__fake/pay/refunds/next", a.fake.base_url()), "POST", None, Some(next.to_string()), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let (_, login) = a.login("refunded");
    let user = login["user"]["id"].as_i64().expect("id");
    for round in 0..5 {
        let no = format!("SVC-2I-{round}");
        let body = json!({"user_id": user, "amount": 990, "description": "Service order", "out_trade_no": no});
        let r = internal(a.url("/internal/v1/pay/orders"), body);
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(a.pay(&no, json!({})).status, 200);
        let path = format!("/internal/v1/pay/orders/{no}/refunds");
        let calls: Vec<_> = [("A", a.url(&path)), ("B", b.url(&path))]
            .into_iter()
            .map(|(on, url)| {
                move || internal(url.clone(), json!({"amount": 600, "out_refund_no": format!("RF-{on}-{round}")}))
            })
            .collect();
        let replies = at_once(&calls);
        let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 422], "round {round}: one refund of 600 out of 990: {replies:?}");
        let refunds = a.app().store.refunds_of_order(&no).expect("refunds");
        assert_eq!(refunds.len(), 1, "round {round}: {refunds:?}");
    }
    assert_eq!(a.fake_pay_calls("refund"), 5, "WeChat Pay asked once per order");
}

#[test]
fn replays_at_once_on_both_instances_never_exceed_the_count() {
    let a = TestServer::start_with(|c| c.server.trust_forwarded_for = true);
    let b = pair(&a);
    for round in 0..4 {
        let code = a.code(&format!("replayer-{round}"));
        let first = login_at(&a.base, &code, "203.0.113.5", Some("key-1"));
        assert_eq!(first.status, 200, "{}", first.text);
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let (base, code) = (if i % 2 == 0 { a.base.clone() } else { b.base.clone() }, code.clone());
                move || login_at(&base, &code, "203.0.113.5", Some("key-1"))
            })
            .collect();
        let replies = at_once(&calls);
        let ok = replies.iter().filter(|r| r.status == 200).count();
        assert_eq!(ok, wxlogin::store::MAX_CODE_REPLAYS as usize, "round {round}: {replies:?}");
        for r in replies.iter().filter(|r| r.status != 200) {
            assert_eq!((r.status, r.json()["error"]["wechat_errcode"].as_i64()), (401, Some(40163)), "{}", r.text);
        }
    }
    assert_eq!(a.fake_calls("jscode2session"), 4);
}
