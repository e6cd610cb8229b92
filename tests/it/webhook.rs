//! The webhook against a real receiver on loopback (a std TcpListener, one thread per
//! connection): every event arrives, in order for each order, signed; through failed
//! answers, slow answers, timeouts, a receiver that is down, and a server SIGKILLed
//! mid-delivery (the real binary), which sends again only the attempt it cut.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use serde_json::Value;
use wxlogin::config;
use wxlogin::fake_wechat::{FakeOptions, FakeWeChat};
use wxlogin::store::{NewOrder, Payment, Store};

use crate::support::*;

const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";
const MERCHANT_KEY: &str = include_str!("../../src/pay/testdata/wechat_docs_merchant_key.pem");
const PUBLIC_KEY: &str = include_str!("../../src/pay/testdata/fake_wechatpay_platform_public_key.pem");

/// A `[pay]` table posting to `webhook_url`, its key files written into `dir`.
pub(super) fn pay_table(dir: &Path, webhook_url: &str, api_base: &str) -> String {
    std::fs::write(dir.join("apiclient_key.pem"), MERCHANT_KEY).unwrap();
    std::fs::write(dir.join("pub_key.pem"), PUBLIC_KEY).unwrap();
    format!(
        "[pay]\nmchid = \"1900007291\"\nmerchant_serial = \"408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB\"\n\
         merchant_key_file = \"{}\"\napiv3_key = \"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb\"\n\
         public_key_file = \"{}\"\npublic_key_id = \"PUB_KEY_ID_0114232134912410000000000000\"\n\
         notify_url = \"https://login.example.com/v1/pay/notify\"\napi_base = \"{api_base}\"\n\
         webhook_url = \"{webhook_url}\"\nwebhook_secret = \"{WEBHOOK_SECRET}\"\n",
        dir.join("apiclient_key.pem").display(),
        dir.join("pub_key.pem").display(),
    )
}

/// What the receiver does with a request.
#[derive(Clone, Copy, Debug)]
pub(super) enum Answer {
    Status(u16),
    /// Answers after a pause.
    #[allow(dead_code)] // used by a sqlite_only! test: unused in the PostgreSQL copy
    After(Duration, u16),
    /// Never answers (until released): the sender times out or is killed.
    Hold,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(super) struct Got {
    /// Arrival order.
    n: usize,
    pub(super) id: String,
    order: String,
    signed_ok: bool,
    content_type: String,
    body: Value,
    /// What it answered once done (0: no answer).
    pub(super) status: u16,
    answered_at: Option<Instant>,
    arrived_at: Instant,
}

type Plan = dyn Fn(usize, &Got) -> Answer + Send + Sync;

pub(super) struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub(super) fn start(plan: impl Fn(usize, &Got) -> Answer + Send + Sync + 'static) -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap(), plan)
    }

    fn start_on(addr: SocketAddr, plan: impl Fn(usize, &Got) -> Answer + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind(addr).expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let plan: Arc<Plan> = Arc::new(plan);
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (g, s, plan) = (g.clone(), s.clone(), plan.clone());
                std::thread::spawn(move || serve_one(conn, &g, &s, &*plan));
            }
        });
        Receiver { addr, got, stop }
    }

    pub(super) fn url(&self) -> String {
        format!("http://{}/hooks/wxlogin", self.addr)
    }

    pub(super) fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (bounded) until `done` holds for what was received.
    pub(super) fn wait_until(&self, limit: Duration, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "{what} not within {limit:?}; received: {:#?}", summary(&got));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn summary(got: &[Got]) -> Vec<String> {
    got.iter().map(|g| format!("#{} {} ({}) -> {}", g.n, g.id, g.order, g.status)).collect()
}

/// Reads one request, records it, answers as the plan says, and closes.
fn serve_one(conn: TcpStream, got: &Mutex<Vec<Got>>, stop: &AtomicBool, plan: &Plan) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut headers = HashMap::new();
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let record = {
        let mut all = got.lock().unwrap();
        let g = Got {
            n: all.len(),
            id: parsed["id"].as_str().unwrap_or("").to_string(),
            order: parsed["data"]["out_trade_no"].as_str().unwrap_or("").to_string(),
            signed_ok: signature_ok(headers.get("x-wxlogin-signature").map(String::as_str).unwrap_or(""), &body),
            content_type: headers.get("content-type").cloned().unwrap_or_default(),
            body: parsed,
            status: 0,
            answered_at: None,
            arrived_at: Instant::now(),
        };
        all.push(g.clone());
        g
    };
    let status = match plan(record.n, &record) {
        Answer::Status(s) => s,
        Answer::After(pause, s) => {
            std::thread::sleep(pause);
            s
        }
        Answer::Hold => {
            let until = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
    };
    let mut conn = conn;
    let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    if conn.write_all(reply.as_bytes()).and_then(|_| conn.flush()).is_ok() {
        let mut all = got.lock().unwrap();
        all[record.n].status = status;
        all[record.n].answered_at = Some(Instant::now());
    }
}

/// The receiver's check, written apart from the server's code: HMAC-SHA256 over
/// `t + "." + body` with the shared secret, and a `t` within 5 minutes.
fn signature_ok(header: &str, body: &[u8]) -> bool {
    let fields: HashMap<&str, &str> = header.split(',').filter_map(|p| p.split_once('=')).collect();
    let (Some(t), Some(v1)) = (fields.get("t"), fields.get("v1")) else { return false };
    let Ok(t_secs) = t.parse::<i64>() else { return false };
    if (wxlogin::store::now() - t_secs).abs() > 300 {
        return false;
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    wxlogin::secrets::hex(&mac.finalize().into_bytes()) == *v1
}

/// A paid order of a fresh user, `order.paid` written by the store like the notify
/// handler does, and `extra` further events of the order after it (as part 2's refund
/// events will be written). Returns the order's event ids in `seq` order.
pub(super) fn order_with_events(
    store: &Store,
    database: &config::DatabaseConfig,
    uid: i64,
    openid: &str,
    no: &str,
    extra: usize,
) -> Vec<String> {
    let now = wxlogin::store::now();
    store
        .create_order(&NewOrder {
            out_trade_no: no,
            app: "main",
            user_id: uid,
            openid,
            product: None,
            description: "webhook test",
            amount: 990,
            attach: None,
            created_at: now,
            expires_at: now + 7200,
        })
        .expect("create order");
    let tx_id = format!("42000{no}");
    store
        .apply_payment(&Payment { out_trade_no: no, transaction_id: &tx_id, amount_total: 990, paid_at: now }, now)
        .expect("pay");
    for i in 0..extra {
        database_sql(
            database,
            &format!(
                "INSERT INTO pay_events (id, out_trade_no, seq, type, created_at, data, next_attempt_at)
                 SELECT 'evt_{no}_r{i}', '{no}', max(seq) + 1, 'refund.succeeded', {now},
                        '{{\"out_trade_no\":\"{no}\",\"n\":{i}}}', {now}
                 FROM pay_events WHERE out_trade_no = '{no}'"
            ),
        );
    }
    store.order_events(no).expect("events").into_iter().map(|e| e.id).collect()
}

/// A user id and openid, logged in through the server.
pub(super) fn user(base: &str, fake: &FakeWeChat, name: &str) -> (i64, String) {
    let r = send(
        &format!("{base}/v1/login"),
        "POST",
        None,
        Some(serde_json::json!({"code": fake.login_code(APPID, name)}).to_string()),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(r.status, 200, "login: {}", r.text);
    let v = r.json();
    (v["user"]["id"].as_i64().expect("id"), v["user"]["openid"].as_str().expect("openid").to_string())
}

/// Every event arrived with a 2xx, signed; and for each order, no event was sent before
/// every earlier one of its order had been answered 2xx.
pub(super) fn assert_delivered_in_order(got: &[Got], orders: &[Vec<String>]) {
    for g in got {
        assert!(g.signed_ok, "bad signature on {g:?}");
        assert_eq!(g.content_type, "application/json");
        assert!(g.body["type"].is_string() && g.body["created_at"].is_i64() && g.body["data"].is_object(), "{g:?}");
    }
    for events in orders {
        for (k, id) in events.iter().enumerate() {
            assert!(got.iter().any(|g| &g.id == id && (200..300).contains(&g.status)), "{id} never delivered");
            for g in got.iter().filter(|g| &g.id == id) {
                for earlier in &events[..k] {
                    let before = got.iter().any(|e| {
                        &e.id == earlier && e.status == 200 && e.answered_at.is_some_and(|a| a <= g.arrived_at)
                    });
                    assert!(before, "{id} (#{}) sent before {earlier} was delivered: {:#?}", g.n, summary(got));
                }
            }
        }
    }
}

pub(super) fn count(got: &[Got], id: &str) -> usize {
    got.iter().filter(|g| g.id == id).count()
}

/// An in-process server whose webhook posts to `url`, its delivery thread started.
fn server_posting_to(url: &str) -> TestServer {
    let dir = TempDir::new("hookcfg");
    let text = format!(
        "[[apps]]\nname = \"main\"\nappid = \"{APPID}\"\nsecret = \"{SECRET}\"\n{}",
        pay_table(dir.path(), url, "http://127.0.0.1:9")
    );
    let pay = config::parse(&text, dir.path(), &|_| None).expect("pay config").pay;
    let server = TestServer::start_with(move |c| c.pay = pay);
    wxlogin::pay::webhook::spawn(server.app()).expect("spawn").expect("a webhook thread");
    server
}

#[test]
fn every_event_arrives_in_order_and_signed_when_the_first_deliveries_fail() {
    // The first three requests get 500, 503 and 404; everything after, 200.
    let receiver = Receiver::start(|n, _| match n {
        0 => Answer::Status(500),
        1 => Answer::Status(503),
        2 => Answer::Status(404),
        _ => Answer::Status(200),
    });
    let server = server_posting_to(&receiver.url());
    let store = &server.app().store;
    let database = &server.app().config.database;
    let orders: Vec<Vec<String>> = (0..3)
        .map(|i| {
            let (uid, openid) = user(&server.base, &server.fake, &format!("payer{i}"));
            order_with_events(store, database, uid, &openid, &format!("WH{i}"), 2)
        })
        .collect();
    let all: Vec<&String> = orders.iter().flatten().collect();
    let got = receiver.wait_until(Duration::from_secs(90), "all 9 events delivered", |got| {
        all.iter().all(|id| got.iter().any(|g| &g.id == *id && g.status == 200))
    });
    assert_delivered_in_order(&got, &orders);
    // The receiver saw each event once per attempt the server recorded, no more.
    std::thread::sleep(Duration::from_millis(300));
    for id in &all {
        let e = store.pay_event(id).unwrap().unwrap();
        assert!(e.delivered_at.is_some(), "{id} not marked delivered");
        assert_eq!(count(&receiver.got(), id), e.attempts as usize, "{id}");
    }
    assert_eq!(receiver.got().len(), 9 + 3);
    let metrics = server.get("/metrics", None).text;
    assert!(metrics.contains("wxlogin_webhook_deliveries_total{result=\"delivered\"} 9"), "{metrics}");
    assert!(metrics.contains("wxlogin_webhook_deliveries_total{result=\"rejected\"} 3"), "{metrics}");
}

// Not in the PostgreSQL copy (see main.rs): its 25 s measure HTTP timeouts, not the store.
sqlite_only! {
    #[test]
    fn a_slow_receiver_is_waited_for_10_s_and_the_api_never_waits_for_it() {
        // Event 0's first attempt gets no answer within 10 s (then 200, too late: a failed
        // attempt); the others are answered after 2 s, within the timeout.
        let receiver = Receiver::start(|n, _| match n {
            0 => Answer::After(Duration::from_secs(13), 200),
            _ => Answer::After(Duration::from_secs(2), 200),
        });
        let server = server_posting_to(&receiver.url());
        let store = &server.app().store;
        let database = &server.app().config.database;
        let (uid, openid) = user(&server.base, &server.fake, "slowpayer");
        let first = order_with_events(store, database, uid, &openid, "WSLOW1", 1);
        receiver.wait_until(Duration::from_secs(10), "the first request", |got| !got.is_empty());
        // While the delivery thread waits on the receiver, the API answers at once.
        for _ in 0..5 {
            let t = Instant::now();
            assert_eq!(server.get("/healthz", None).status, 200);
            let (_, _) = user(&server.base, &server.fake, &format!("meanwhile{}", t.elapsed().as_nanos()));
            assert!(t.elapsed() < Duration::from_secs(2), "the API waited for the webhook: {:?}", t.elapsed());
        }
        let second = order_with_events(store, database, uid, &openid, "WSLOW2", 0);
        let orders = vec![first, second];
        let all: Vec<&String> = orders.iter().flatten().collect();
        let got = receiver.wait_until(Duration::from_secs(90), "every event delivered", |got| {
            all.iter().all(|id| got.iter().any(|g| &g.id == *id && g.status == 200 && g.n > 0))
        });
        assert_delivered_in_order(&got, &orders);
        let timed_out = &got[0].id;
        let e = store.pay_event(timed_out).unwrap().unwrap();
        assert_eq!(e.attempts, 2, "the timed-out attempt, then one more");
        assert_eq!(count(&got, timed_out), 2);
        for id in all.iter().filter(|id| **id != timed_out) {
            assert_eq!(count(&got, id), 1, "{id} answered within 10 s is sent once");
        }
        let metrics = server.get("/metrics", None).text;
        assert!(metrics.contains("wxlogin_webhook_deliveries_total{result=\"timeout\"} 1"), "{metrics}");
    }
}

// Not in the PostgreSQL copy either: 10 s of backoff; the failed attempts and retries it
// sees on the store are the first test's too.
sqlite_only! {
    #[test]
    fn events_wait_for_a_receiver_that_is_down() {
        // A port with nothing listening, for now.
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let server = server_posting_to(&format!("http://{addr}/hooks/wxlogin"));
        let store = &server.app().store;
        let database = &server.app().config.database;
        let (uid, openid) = user(&server.base, &server.fake, "downpayer");
        let orders = [order_with_events(store, database, uid, &openid, "WDOWN1", 1)];
        let first = orders[0][0].clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let e = store.pay_event(&first).unwrap().unwrap();
            if e.last_error.is_some() {
                assert_eq!(e.last_error.as_deref(), Some("connection failed"));
                assert!(e.delivered_at.is_none());
                break;
            }
            assert!(Instant::now() < deadline, "no failed attempt recorded");
            std::thread::sleep(Duration::from_millis(50));
        }
        let backlog = store.outbox_backlog().unwrap();
        assert_eq!(backlog.pending, 2);
        // The receiver comes up: the retry (10 s, then 20 s ...) delivers both, in order.
        let receiver = Receiver::start_on(addr, |_, _| Answer::Status(204));
        let got = receiver.wait_until(Duration::from_secs(90), "both events delivered", |got| {
            orders[0].iter().all(|id| got.iter().any(|g| &g.id == id && g.status == 204))
        });
        assert_eq!(got.len(), 2, "{:#?}", summary(&got));
        for g in &got {
            assert!(g.signed_ok);
        }
        assert!(got[0].id == orders[0][0] && got[1].id == orders[0][1]);
    }
}

#[test]
fn sigkill_during_delivery_loses_nothing_and_resends_only_the_cut_attempt() {
    let fake = FakeWeChat::start(
        "127.0.0.1:0",
        FakeOptions { apps: vec![(APPID.into(), SECRET.into())], ..FakeOptions::default() },
    )
    .expect("fake wechat");
    // The very first request is never answered: the server is killed while it waits.
    let receiver = Receiver::start(|n, _| if n == 0 { Answer::Hold } else { Answer::Status(200) });
    let dir = TempDir::new("hookcrash");
    let cfg = write_config(dir.path(), &fake.base_url(), &pay_table(dir.path(), &receiver.url(), &fake.base_url()));
    let cfg = cfg.to_str().unwrap();
    let env = [("WXLOGIN_SECRET_MAIN", SECRET)];
    let (mut child, addr) = spawn_listening(&["serve", "--config", cfg], &env, &dir.path().join("serve1.log"));
    let base = format!("http://{addr}");
    let (uid, openid) = user(&base, &fake, "crashpayer");
    // Events written beside the running server, as its own handlers would.
    let database = database_of(&dir.path().join("appliance.toml"));
    let store = Store::connect(&database).expect("open the server's database");
    let orders: Vec<Vec<String>> =
        (0..3).map(|i| order_with_events(&store, &database, uid, &openid, &format!("WK{i}"), 1)).collect();
    let got = receiver.wait_until(Duration::from_secs(20), "the first request", |got| !got.is_empty());
    let cut = got[0].id.clone();
    signal(&child, "KILL");
    wait_with_limit(&mut child, Duration::from_secs(10));
    let (mut child, _) = spawn_listening(&["serve", "--config", cfg], &env, &dir.path().join("serve2.log"));
    let all: Vec<&String> = orders.iter().flatten().collect();
    // The cut attempt's lease (20 s) runs out, then everything goes.
    let got = receiver.wait_until(Duration::from_secs(90), "all 6 events delivered", |got| {
        all.iter().all(|id| got.iter().any(|g| &g.id == *id && g.status == 200))
    });
    sigterm_and_wait(&mut child, Duration::from_secs(20));
    assert_delivered_in_order(&got, &orders);
    let got = receiver.got();
    for id in &all {
        let e = store.pay_event(id).unwrap().unwrap();
        assert!(e.delivered_at.is_some(), "{id} not marked delivered");
        let seen = count(&got, id);
        assert!(seen <= e.attempts as usize, "{id}: {seen} requests for {} attempts", e.attempts);
        let expected = if **id == cut { 2 } else { 1 };
        assert_eq!(seen, expected, "{id}: {:#?}", summary(&got));
    }
    for log in ["serve1.log", "serve2.log"] {
        let text = std::fs::read_to_string(dir.path().join(log)).unwrap();
        assert!(!text.contains(WEBHOOK_SECRET), "the webhook secret in {log}");
    }
}

#[test]
fn pay_events_list_and_retry_from_the_command_line() {
    let dir = TempDir::new("hookcli");
    let cfg = write_config(dir.path(), "http://127.0.0.1:9", &pay_table(dir.path(), "", "http://127.0.0.1:9"));
    let cfg = cfg.to_str().unwrap();
    let database = database_of(&dir.path().join("appliance.toml"));
    let store = Store::connect(&database).unwrap();
    let key = wxlogin::secrets::Secret::new("k");
    let uid = store
        .record_login(&wxlogin::store::NewLogin {
            app: "main",
            openid: "o-cli",
            unionid: None,
            session_key: &key,
            code_hash: [7; 32],
            token_hash: [7; 32],
            terms: wxlogin::store::Terms { now: wxlogin::store::now(), ttl: 100, max_lifetime: 1000, max_per_user: 5 },
            caller: wxlogin::store::Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) },
        })
        .unwrap()
        .user
        .id;
    let ids = order_with_events(&store, &database, uid, "o-cli", "WCLI1", 1);
    store.mark_delivered(&ids[0], wxlogin::store::now()).unwrap();
    database_sql(
        &database,
        &format!("UPDATE pay_events SET failed_at = 1, last_error = 'HTTP 500' WHERE id = '{}'", ids[1]),
    );

    let (code, out, err) = run_bare(&["pay", "events", "list", "--config", cfg], &[]);
    assert_eq!(code, 0, "{err}");
    let line = |id: &str| {
        out.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id} not listed: {out}")).to_string()
    };
    assert!(line(&ids[0]).contains("order.paid") && line(&ids[0]).contains("delivered"), "{out}");
    assert!(line(&ids[1]).contains("failed") && line(&ids[1]).contains("HTTP 500"), "{out}");
    assert!(err.contains("pay.webhook_url is empty"), "{err}");

    let (code, out, _) = run_bare(&["pay", "events", "list", "--pending", "--config", cfg], &[]);
    assert_eq!(code, 0);
    assert!(out.contains(&ids[1]) && !out.contains(&ids[0]), "{out}");

    let (code, out, err) = run_bare(&["pay", "events", "retry", &ids[1], "--config", cfg], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("had been given up on"), "{out}");
    let e = store.pay_event(&ids[1]).unwrap().unwrap();
    assert!(e.failed_at.is_none() && e.delivered_at.is_none());
    assert!((e.next_attempt_at - wxlogin::store::now()).abs() <= 5);

    let (code, _, err) = run_bare(&["pay", "events", "retry", "evt_nope", "--config", cfg], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no event with ID `evt_nope`"), "{err}");
    let (code, _, _) = run_bare(&["pay", "nope", "--config", cfg], &[]);
    assert_eq!(code, 2);
    let (code, _, _) = run_bare(&["pay", "events", "retry", "--config", cfg], &[]);
    assert_eq!(code, 2);
}
