//! WeChat Pay (issue 13): a real server with `[pay]` against the fake WeChat Pay, from
//! `POST /v1/pay/orders` to paid, notifications (duplicates, concurrent duplicates,
//! probes, tampering), `?sync=true`, the maintenance pass, the internal API and a hung
//! WeChat Pay.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use wxlogin::fake_wechat as fake_pay;
use wxlogin::pay::verify::response_message;
use wxlogin::pay::{ApiV3Key, Resource, SigningKey, VerifyingKey};
use wxlogin::secrets::Secret;
use wxlogin::store::OrderState;

use crate::support::*;

const API_KEY: &str = "internal-key-0123456789";
const PLATFORM_KEY_PEM: &str = include_str!("../../src/pay/testdata/fake_wechatpay_platform_key.pem");

fn now() -> i64 {
    wxlogin::store::now()
}

/// Logs `user` in and orders vip30: the token and the 201 answer.
fn order(s: &TestServer, user: &str) -> (String, Value) {
    let (token, _) = s.login(user);
    let r = s.post("/v1/pay/orders", Some(&token), &json!({"product": "vip30"}));
    assert_eq!(r.status, 201, "order: {}", r.text);
    (token, r.json())
}

fn no(answer: &Value) -> String {
    answer["order"]["out_trade_no"].as_str().expect("out_trade_no").to_string()
}

fn state(s: &TestServer, out_trade_no: &str) -> OrderState {
    s.app().store.order(out_trade_no).expect("read").expect("order").state
}

fn events(s: &TestServer, out_trade_no: &str) -> Vec<String> {
    s.app().store.order_events(out_trade_no).expect("events").into_iter().map(|e| e.kind).collect()
}

fn metrics(s: &TestServer) -> String {
    send(&s.url("/metrics"), "GET", None, None, &[]).text
}

fn internal(s: &TestServer, method: &str, path: &str, body: Option<Value>) -> Reply {
    send(&s.url(path), method, Some(API_KEY), body.map(|b| b.to_string()), &[])
}

fn with_api_key(c: &mut wxlogin::config::Config) {
    c.internal.api_keys = vec![Secret::from(API_KEY)];
}

#[test]
fn an_order_goes_from_created_to_paid_through_the_notification() {
    let s = TestServer::start_pay();
    let (token, answer) = order(&s, "alice");
    let o = &answer["order"];
    assert_eq!(
        (o["state"].as_str(), o["amount"].as_i64(), o["product"].as_str()),
        (Some("created"), Some(990), Some("vip30"))
    );
    assert!(o.get("openid").is_none(), "the Order object has no openid: {o}");
    // The payment parameters are signed by the merchant over the app's appid.
    let p = &answer["payment"];
    assert_eq!(p["signType"], "RSA");
    assert!(p["package"].as_str().unwrap().starts_with("prepay_id=wx"), "{p}");
    let message = wxlogin::pay::sign::pay_sign_message(
        APPID,
        p["timeStamp"].as_str().unwrap(),
        p["nonceStr"].as_str().unwrap(),
        p["package"].as_str().unwrap(),
    );
    let signature = base64::engine::general_purpose::STANDARD.decode(p["paySign"].as_str().unwrap()).unwrap();
    let merchant = VerifyingKey::from_pem(fake_pay::TEST_MERCHANT_PUBLIC_KEY_PEM).unwrap();
    assert!(merchant.verify(message.as_bytes(), &signature), "paySign verifies with the merchant key");

    let no = no(&answer);
    let paid = s.pay(&no, json!({}));
    assert_eq!(paid.status, 200, "{}", paid.text);
    let d = s.deliveries(&no);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["status"], 204, "{d:?}");
    let r = s.get(&format!("/v1/pay/orders/{no}"), Some(&token));
    assert_eq!(r.status, 200);
    let o = r.json();
    assert_eq!(o["state"], "paid");
    assert_eq!(o["transaction_id"], paid.json()["transaction_id"]);
    assert!(o["paid_at"].as_i64().is_some());
    assert_eq!(events(&s, &no), ["order.paid"]);
    let list = s.get("/v1/pay/orders", Some(&token)).json();
    assert_eq!(list["orders"][0]["out_trade_no"], no.as_str());
    let m = metrics(&s);
    assert!(m.contains("wxlogin_pay_orders{state=\"paid\"} 1"), "{m}");
    assert!(m.contains("wxlogin_pay_notifications_total{result=\"applied\"} 1"), "{m}");
    assert!(m.contains("wxlogin_pay_calls_total{api=\"jsapi\",code=\"OK\"} 1"), "{m}");
}

#[test]
fn a_notification_delivered_twice_or_twice_at_once_changes_the_order_once() {
    let s = TestServer::start_pay();
    for mode in ["twice", "concurrent"] {
        let (_, answer) = order(&s, &format!("user-{mode}"));
        let no = no(&answer);
        assert_eq!(s.pay(&no, json!({"mode": mode})).status, 200);
        let d = s.deliveries(&no);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().all(|d| d["status"] == 204), "both answered 204 ({mode}): {d:?}");
        assert_eq!(state(&s, &no), OrderState::Paid);
        assert_eq!(events(&s, &no), ["order.paid"], "one event ({mode})");
    }
    let m = metrics(&s);
    assert!(m.contains("wxlogin_pay_notifications_total{result=\"applied\"} 2"), "{m}");
    assert!(m.contains("wxlogin_pay_notifications_total{result=\"duplicate\"} 2"), "{m}");
}

#[test]
fn a_payment_never_notified_is_found_by_sync_and_by_the_maintenance_pass() {
    let s = TestServer::start_pay();
    let (token, answer) = order(&s, "alice");
    let no1 = no(&answer);
    assert_eq!(s.pay(&no1, json!({"mode": "never"})).status, 200);
    assert_eq!(s.get(&format!("/v1/pay/orders/{no1}"), Some(&token)).json()["state"], "created");
    // WeChat Pay unreachable: the answer is what the database knows.
    s.fake_pay_behaviour(json!({"fail": {"api": "query_out_trade_no", "error": "http_500", "times": 5}}));
    let r = s.get(&format!("/v1/pay/orders/{no1}?sync=true"), Some(&token));
    assert_eq!((r.status, r.json()["state"].as_str()), (200, Some("created")), "{}", r.text);
    s.fake_pay_behaviour(json!({"clear_failures": true}));
    std::thread::sleep(Duration::from_millis(2100));
    let queries = s.fake_pay_calls("query_out_trade_no");
    let r = s.get(&format!("/v1/pay/orders/{no1}?sync=true"), Some(&token));
    assert_eq!(r.json()["state"], "paid", "{}", r.text);
    assert_eq!(s.fake_pay_calls("query_out_trade_no"), queries + 1);
    assert_eq!(events(&s, &no1), ["order.paid"]);

    // A second order, unpaid: ?sync=true asks WeChat Pay at most once every 2 s.
    let (_, answer) = order(&s, "bob");
    let no2 = no(&answer);
    let (bob, _) = s.login("bob");
    let before = s.fake_pay_calls("query_out_trade_no");
    for _ in 0..3 {
        assert_eq!(s.get(&format!("/v1/pay/orders/{no2}?sync=true"), Some(&bob)).json()["state"], "created");
    }
    assert_eq!(s.fake_pay_calls("query_out_trade_no"), before + 1, "one query for three syncs");

    // Paid without a notification: the maintenance pass (once the first query is due)
    // finds it and records it exactly once.
    assert_eq!(s.pay(&no2, json!({"mode": "never"})).status, 200);
    assert_eq!(s.app().pay_pass(now() + 61), 1);
    assert_eq!(state(&s, &no2), OrderState::Paid);
    assert_eq!(s.app().pay_pass(now() + 61), 0, "nothing left to do");
    assert_eq!(events(&s, &no2), ["order.paid"]);
}

#[test]
fn an_expired_order_is_closed_at_wechat_pay_and_here() {
    let s = TestServer::start_pay();
    let (token, answer) = order(&s, "alice");
    let no = no(&answer);
    let closes = s.fake_pay_calls("close");
    assert_eq!(s.app().pay_pass(now() + 7201), 1);
    assert_eq!(s.fake_pay_calls("close"), closes + 1);
    assert_eq!(state(&s, &no), OrderState::Closed);
    assert_eq!(events(&s, &no), ["order.closed"]);
    // Closed at WeChat Pay too: the user can no longer pay it.
    assert_eq!(s.pay(&no, json!({})).status, 409);
    let r = send(&s.url(&format!("/v1/pay/orders/{no}/payment")), "POST", Some(&token), None, &[]);
    assert_eq!((r.status, r.error_code().as_str()), (409, "order_not_payable"));
}

#[test]
fn the_maintenance_pass_skips_an_order_wechat_pay_refuses_and_stops_at_an_outage() {
    let s = TestServer::start_pay();
    let (_, a) = order(&s, "alice");
    std::thread::sleep(Duration::from_millis(1100));
    let (_, b) = order(&s, "bob");
    let (a, b) = (no(&a), no(&b));
    // The first expired order's close is refused: the pass goes on to the next one.
    s.fake_pay_behaviour(json!({"fail": {"api": "close", "error": "NO_AUTH"}}));
    assert_eq!(s.app().pay_pass(now() + 7201), 1);
    assert_eq!((state(&s, &a), state(&s, &b)), (OrderState::Created, OrderState::Closed));
    // WeChat Pay unreachable (an unsigned 500): the pass stops, the order waits.
    s.fake_pay_behaviour(json!({"fail": {"api": "close", "error": "http_500", "times": 5}}));
    assert_eq!(s.app().pay_pass(now() + 7201), 0);
    assert_eq!(state(&s, &a), OrderState::Created);
    s.fake_pay_behaviour(json!({"clear_failures": true}));
    assert_eq!(s.app().pay_pass(now() + 7201), 1);
    assert_eq!(state(&s, &a), OrderState::Closed);
}

#[test]
fn payment_parameters_are_renewed_when_the_prepay_id_is_old() {
    let s = TestServer::start_pay();
    let (token, answer) = order(&s, "alice");
    let no = no(&answer);
    let path = format!("/v1/pay/orders/{no}/payment");
    let jsapi = s.fake_pay_calls("jsapi");
    let r = send(&s.url(&path), "POST", Some(&token), None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["payment"]["package"], answer["payment"]["package"], "a fresh prepay id is reused");
    assert_eq!(s.fake_pay_calls("jsapi"), jsapi);
    s.app().store.set_prepay(&no, "wx_expired_prepay_id", now() - 7200).unwrap();
    let r = send(&s.url(&path), "POST", Some(&token), None, &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.fake_pay_calls("jsapi"), jsapi + 1, "an old prepay id is renewed");
    assert_ne!(r.json()["payment"]["package"], "prepay_id=wx_expired_prepay_id");
}

/// A notification as WeChat Pay sends it, about `transaction`, with every part that a
/// test may tamper with.
struct Notification {
    transaction: Value,
    apiv3_key: String,
    timestamp: i64,
    serial: String,
    probe: bool,
    tamper_body: bool,
}

impl Notification {
    fn for_order(order: &wxlogin::store::Order) -> Notification {
        Notification {
            transaction: json!({
                "appid": APPID, "mchid": fake_pay::TEST_MCHID, "out_trade_no": order.out_trade_no,
                "transaction_id": "4200000000202612020000000001", "trade_type": "JSAPI",
                "trade_state": "SUCCESS", "trade_state_desc": "ok", "bank_type": "OTHERS", "attach": "",
                "success_time": "2026-12-02T18:00:00+08:00", "payer": {"openid": order.openid},
                "amount": {"total": order.amount, "payer_total": order.amount, "currency": "CNY", "payer_currency": "CNY"},
            }),
            apiv3_key: fake_pay::TEST_APIV3_KEY.into(),
            timestamp: now(),
            serial: fake_pay::PLATFORM_PUBLIC_KEY_ID.into(),
            probe: false,
            tamper_body: false,
        }
    }

    fn send(&self, s: &TestServer) -> Reply {
        let key = ApiV3Key::new(self.apiv3_key.as_bytes()).unwrap();
        let resource =
            Resource::encrypt(&key, "transaction", "transaction", self.transaction.to_string().as_bytes()).unwrap();
        let body = json!({
            "id": "EV-test", "create_time": "2026-12-02T18:00:00+08:00", "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS", "summary": "ok", "resource": resource,
        })
        .to_string();
        let timestamp = self.timestamp.to_string();
        let nonce = "0123456789abcdef0123456789abcdef";
        let signature = if self.probe {
            format!("WECHATPAY/SIGNTEST/{}", "A".repeat(40))
        } else {
            let signer = SigningKey::from_pem(PLATFORM_KEY_PEM).unwrap();
            signer.sign_base64(&response_message(&timestamp, nonce, body.as_bytes())).unwrap()
        };
        // One byte changed after signing: `"summary":"ok"` -> `"summary":"OK"`.
        let body = if self.tamper_body { body.replace("\"ok\"", "\"OK\"") } else { body };
        let headers = [
            ("Content-Type", "application/json"),
            ("Wechatpay-Timestamp", timestamp.as_str()),
            ("Wechatpay-Nonce", nonce),
            ("Wechatpay-Signature", signature.as_str()),
            ("Wechatpay-Serial", self.serial.as_str()),
            ("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048"),
        ];
        send(&s.url("/v1/pay/notify"), "POST", None, Some(body), &headers)
    }
}

#[test]
fn notifications_that_cannot_be_trusted_or_used_are_refused_and_change_nothing() {
    let s = TestServer::start_pay();
    let (_, answer) = order(&s, "alice");
    let no = no(&answer);
    let stored = s.app().store.order(&no).unwrap().unwrap();
    let base = || Notification::for_order(&stored);
    let mut cases: Vec<(&str, Notification, u16)> = vec![
        ("a probe", Notification { probe: true, ..base() }, 401),
        ("a tampered body", Notification { tamper_body: true, ..base() }, 401),
        ("a timestamp 6 minutes old", Notification { timestamp: now() - 360, ..base() }, 401),
        ("an unknown serial", Notification { serial: "PUB_KEY_ID_OTHER".into(), ..base() }, 401),
        ("another APIv3 key", Notification { apiv3_key: "0123456789abcdef0123456789abcdef".into(), ..base() }, 400),
    ];
    let mut n = base();
    n.transaction["amount"]["total"] = 1.into();
    cases.push(("another amount", n, 400));
    let mut n = base();
    n.transaction["appid"] = "wxother0000000001".into();
    cases.push(("another appid", n, 400));
    let mut n = base();
    n.transaction["mchid"] = "1900000109".into();
    cases.push(("another mchid", n, 400));
    let mut n = base();
    n.transaction["out_trade_no"] = "W_UNKNOWN_ORDER".into();
    cases.push(("an unknown order", n, 400));
    for (what, n, status) in cases {
        let r = n.send(&s);
        assert_eq!(r.status, status, "{what}: {}", r.text);
        let body = r.json();
        assert_eq!(body["code"], "FAIL", "{what}: {}", r.text);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
        assert_eq!(state(&s, &no), OrderState::Created, "{what} changed nothing");
    }
    assert!(events(&s, &no).is_empty());
    // The same notification untampered is applied: the refusals above were for cause.
    let r = base().send(&s);
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(state(&s, &no), OrderState::Paid);
    assert_eq!(events(&s, &no), ["order.paid"]);
    let m = metrics(&s);
    assert!(m.contains("wxlogin_pay_notifications_total{result=\"untrusted\"} 4"), "{m}");
    assert!(m.contains("wxlogin_pay_notifications_total{result=\"refused\"} 5"), "{m}");
}

#[test]
fn the_fakes_signature_probe_is_refused() {
    let s = TestServer::start_pay();
    let (_, answer) = order(&s, "alice");
    let no = no(&answer);
    assert_eq!(s.pay(&no, json!({})).status, 200);
    let r = send(
        &format!("{}/__fake/pay/notify", s.fake.base_url()),
        "POST",
        None,
        Some(json!({"out_trade_no": no, "probe": true, "to": s.url("/v1/pay/notify"), "wait": true}).to_string()),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let d = s.deliveries(&no);
    assert_eq!(d.last().unwrap()["status"], 401, "{d:?}");
    assert_eq!(events(&s, &no), ["order.paid"]);
}

#[test]
fn the_service_creates_idempotently_reads_and_closes_orders() {
    let s = TestServer::start_pay_with(with_api_key);
    let (_, login) = s.login("alice");
    let user_id = login["user"]["id"].as_i64().unwrap();
    let body = json!({"user_id": user_id, "amount": 1234, "description": "Service order", "out_trade_no": "SVC-0001", "attach": "cart=7"});
    let r = internal(&s, "POST", "/internal/v1/pay/orders", Some(body.clone()));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["order"]["attach"], "cart=7");
    assert_eq!(r.json()["order"]["product"], Value::Null);
    let again = internal(&s, "POST", "/internal/v1/pay/orders", Some(body.clone()));
    assert_eq!(again.status, 200, "a safe retry: {}", again.text);
    assert_eq!(again.json()["order"], r.json()["order"]);
    assert!(again.json()["payment"]["paySign"].is_string());
    let mut other = body.clone();
    other["amount"] = 999.into();
    let r = internal(&s, "POST", "/internal/v1/pay/orders", Some(other));
    assert_eq!((r.status, r.error_code().as_str()), (409, "order_conflict"));

    let r = internal(&s, "GET", "/internal/v1/pay/orders/SVC-0001", None);
    assert_eq!((r.status, r.json()["amount"].as_i64()), (200, Some(1234)));
    let r = internal(&s, "POST", "/internal/v1/pay/orders/SVC-0001/close", None);
    assert_eq!((r.status, r.json()["state"].as_str()), (200, Some("closed")), "{}", r.text);
    let r = internal(&s, "POST", "/internal/v1/pay/orders/SVC-0001/close", None);
    assert_eq!((r.status, r.json()["state"].as_str()), (200, Some("closed")), "closing again: {}", r.text);
    assert_eq!(events(&s, "SVC-0001"), ["order.closed"]);

    // A paid order cannot be closed; nor one WeChat Pay says was paid before its
    // notification came (the payment is then recorded).
    let mut paid = body.clone();
    paid["out_trade_no"] = "SVC-0002".into();
    assert_eq!(internal(&s, "POST", "/internal/v1/pay/orders", Some(paid)).status, 201);
    assert_eq!(s.pay("SVC-0002", json!({"mode": "never"})).status, 200);
    let r = internal(&s, "POST", "/internal/v1/pay/orders/SVC-0002/close", None);
    assert_eq!((r.status, r.error_code().as_str()), (409, "order_paid"), "{}", r.text);
    assert_eq!(state(&s, "SVC-0002"), OrderState::Paid);
    let r = internal(&s, "POST", "/internal/v1/pay/orders/SVC-0002/close", None);
    assert_eq!((r.status, r.error_code().as_str()), (409, "order_paid"));

    let r = send(&s.url("/internal/v1/pay/orders/SVC-0001"), "GET", Some("wrong-key"), None, &[]);
    assert_eq!(r.status, 401);
    let r = internal(&s, "GET", "/internal/v1/pay/orders/NOPE-0001", None);
    assert_eq!(r.status, 404);
    let r = internal(
        &s,
        "POST",
        "/internal/v1/pay/orders",
        Some(json!({"user_id": user_id, "amount": 0, "description": "x"})),
    );
    assert_eq!((r.status, r.error_code().as_str()), (422, "invalid_field"));
}

#[test]
fn another_users_order_is_not_found() {
    let s = TestServer::start_pay();
    let (_, answer) = order(&s, "alice");
    let no = no(&answer);
    let (bob, _) = s.login("bob");
    let r = s.get(&format!("/v1/pay/orders/{no}"), Some(&bob));
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    let r = send(&s.url(&format!("/v1/pay/orders/{no}/payment")), "POST", Some(&bob), None, &[]);
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    assert_eq!(s.get("/v1/pay/orders", Some(&bob)).json()["orders"], json!([]));
}

#[test]
fn the_mini_program_orders_only_configured_products_and_sends_no_price() {
    let s = TestServer::start_pay();
    let (token, _) = s.login("alice");
    let r = s.post("/v1/pay/orders", Some(&token), &json!({"product": "gold"}));
    assert_eq!((r.status, r.error_code().as_str()), (400, "unknown_product"));
    let r = s.post("/v1/pay/orders", Some(&token), &json!({"product": "vip30", "amount": 1}));
    assert_eq!((r.status, r.error_code().as_str()), (400, "invalid_request"));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("amount"), "{}", r.text);
    assert_eq!(s.fake_pay_calls("jsapi"), 0, "WeChat Pay was not asked");
    assert_eq!(s.post("/v1/pay/orders", None, &json!({"product": "vip30"})).status, 401);
}

#[test]
fn a_refusal_by_wechat_pay_is_a_pay_error_with_its_code() {
    let s = TestServer::start_pay();
    let (token, _) = s.login("alice");
    s.fake_pay_behaviour(json!({"fail": {"api": "jsapi", "error": "NO_AUTH"}}));
    let r = s.post("/v1/pay/orders", Some(&token), &json!({"product": "vip30"}));
    assert_eq!((r.status, r.error_code().as_str()), (502, "pay_error"), "{}", r.text);
    assert_eq!(r.json()["error"]["wechatpay_code"], "NO_AUTH");
    s.fake_pay_behaviour(json!({"fail": {"api": "jsapi", "error": "bad_signature"}}));
    let r = s.post("/v1/pay/orders", Some(&token), &json!({"product": "vip30"}));
    assert_eq!((r.status, r.error_code().as_str()), (502, "pay_error"), "{}", r.text);
    assert!(r.json()["error"].get("wechatpay_code").is_none(), "an unverified answer has no code: {}", r.text);
}

#[test]
fn a_hung_wechat_pay_keeps_session_checks_fast_and_the_order_call_bounded() {
    // One 4 s attempt: a session check stuck behind a hung order call would take that long.
    let s = TestServer::start_pay_with(|c| {
        c.wechat.timeout_ms = 4000;
        c.wechat.retries = 0;
    });
    let (token, _) = s.login("alice");
    s.fake_pay_behaviour(json!({"fail": {"api": "*", "error": "hang", "times": 20}}));
    // More hung order calls than the server has local workers (4).
    let orders: Vec<_> = (0..6)
        .map(|_| {
            let url = s.url("/v1/pay/orders");
            let token = token.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let r = send(&url, "POST", Some(&token), Some(json!({"product": "vip30"}).to_string()), &[]);
                (r.status, start.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let start = Instant::now();
        assert_eq!(s.get("/v1/session", Some(&token)).status, 200);
        assert!(start.elapsed() < Duration::from_secs(2), "session check took {:?}", start.elapsed());
    }
    for t in orders {
        let (status, took) = t.join().unwrap();
        assert!(status == 504 || status == 502, "{status}");
        // One 4 s attempt, far below the fake's 60 s hang.
        assert!(took < Duration::from_secs(20), "the order call took {took:?}");
    }
}

#[test]
fn payments_off_every_pay_route_is_not_found() {
    let s = TestServer::start_with(with_api_key);
    let (token, _) = s.login("alice");
    for (method, path, key) in [
        ("GET", "/v1/pay/orders", Some(token.as_str())),
        ("POST", "/v1/pay/orders", Some(token.as_str())),
        ("GET", "/v1/pay/orders/W123456", Some(token.as_str())),
        ("POST", "/v1/pay/orders/W123456/payment", Some(token.as_str())),
        ("POST", "/v1/pay/notify", None),
        ("POST", "/internal/v1/pay/orders", Some(API_KEY)),
        ("GET", "/internal/v1/pay/orders/W123456", Some(API_KEY)),
        ("POST", "/internal/v1/pay/orders/W123456/close", Some(API_KEY)),
        ("POST", "/internal/v1/pay/orders/W123456/refunds", Some(API_KEY)),
        ("GET", "/internal/v1/pay/refunds/R123456", Some(API_KEY)),
    ] {
        let r = send(&s.url(path), method, key, Some("{}".into()), &[]);
        assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"), "{method} {path}");
        assert!(r.json()["error"]["message"].as_str().unwrap().contains("not configured"), "{method} {path}");
    }
}

/// `?sync=true` records what `wxlogin orders sync` does (one logic, `payments.rs`): an
/// order closed at WeChat Pay (by the merchant platform, say) is closed here too, once.
#[test]
fn sync_closes_an_order_wechat_pay_has_closed() {
    let s = TestServer::start_pay();
    let (token, answer) = order(&s, "alice");
    let no = no(&answer);
    s.app().payments.as_ref().expect("payments").client.close(&no).expect("closed at WeChat Pay");
    let r = s.get(&format!("/v1/pay/orders/{no}?sync=true"), Some(&token));
    assert_eq!((r.status, r.json()["state"].as_str()), (200, Some("closed")), "{}", r.text);
    std::thread::sleep(Duration::from_millis(2100));
    let r = s.get(&format!("/v1/pay/orders/{no}?sync=true"), Some(&token));
    assert_eq!(r.json()["state"], "closed");
    assert_eq!(events(&s, &no), ["order.closed"]);
}
