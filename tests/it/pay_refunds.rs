//! WeChat Pay refunds (issue 14): a real server with `[pay]` against the fake WeChat Pay.
//! Partial and full refunds, an over-refund, retries with the same and with a new
//! `out_refund_no`, a refund that fails, one that stays processing until the maintenance
//! pass finds it done, a notification delivered twice, an unpaid order.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wxlogin::fake_wechat as fake_pay;
use wxlogin::pay::verify::response_message;
use wxlogin::pay::{ApiV3Key, Resource, SigningKey};
use wxlogin::secrets::Secret;
use wxlogin::store::{OrderState, RefundState};

use crate::support::*;

const API_KEY: &str = "internal-key-0123456789";
const PLATFORM_KEY_PEM: &str = include_str!("../../src/pay/testdata/fake_wechatpay_platform_key.pem");

fn internal(s: &TestServer, method: &str, path: &str, body: Option<Value>) -> Reply {
    send(&s.url(path), method, Some(API_KEY), body.map(|b| b.to_string()), &[])
}

fn start() -> TestServer {
    TestServer::start_pay_with(|c| c.internal.api_keys = vec![Secret::from(API_KEY)])
}

/// A paid order of `amount` fen, `no`, made by the service for a new user.
fn paid_order(s: &TestServer, no: &str, amount: i64) {
    let (_, login) = s.login(&format!("user-{no}"));
    let user_id = login["user"]["id"].as_i64().unwrap();
    let body = json!({"user_id": user_id, "amount": amount, "description": "Service order", "out_trade_no": no});
    let r = internal(s, "POST", "/internal/v1/pay/orders", Some(body));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(s.pay(no, json!({})).status, 200);
    assert_eq!(s.app().store.order(no).unwrap().unwrap().state, OrderState::Paid);
}

/// What the fake does with the next `times` refunds: `outcome`, notified to this server
/// as `mode` says.
fn next_refunds(s: &TestServer, outcome: &str, mode: &str, times: u32) {
    let body = json!({"outcome": outcome, "times": times, "notify": {"mode": mode, "to": s.url("/v1/pay/notify")}});
    let r = send(&format!("{}/__fake/pay/refunds/next", s.fake.base_url()), "POST", None, Some(body.to_string()), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
}

fn refund(s: &TestServer, no: &str, body: Value) -> Reply {
    internal(s, "POST", &format!("/internal/v1/pay/orders/{no}/refunds"), Some(body))
}

/// The refund as the internal API answers it, once its state is `want` (notifications
/// come on the fake's own thread).
fn refund_once(s: &TestServer, out_refund_no: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = internal(s, "GET", &format!("/internal/v1/pay/refunds/{out_refund_no}"), None);
        assert_eq!(r.status, 200, "{}", r.text);
        if r.json()["state"] == want {
            return r.json();
        }
        assert!(Instant::now() < deadline, "refund {out_refund_no} never became {want}: {}", r.text);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn events(s: &TestServer, no: &str) -> Vec<String> {
    s.app().store.order_events(no).unwrap().into_iter().map(|e| e.kind).collect()
}

fn fake_refunds(s: &TestServer) -> u64 {
    let r = send(&format!("{}/__fake/pay/stats", s.fake.base_url()), "GET", None, None, &[]);
    r.json()["refunds"].as_u64().expect("refunds in the fake's stats")
}

fn refund_deliveries(s: &TestServer, out_refund_no: &str) -> Vec<Value> {
    let url = format!("{}/__fake/pay/deliveries?out_refund_no={out_refund_no}", s.fake.base_url());
    send(&url, "GET", None, None, &[]).json()["deliveries"].as_array().cloned().unwrap_or_default()
}

#[test]
fn partial_and_full_refunds_refund_the_order_and_an_over_refund_is_refused() {
    let s = start();
    paid_order(&s, "SVC-R001", 990);
    next_refunds(&s, "success", "once", 2);
    let r = refund(&s, "SVC-R001", json!({"amount": 400, "reason": "partial", "out_refund_no": "RF-0001"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let created = r.json();
    assert_eq!((created["out_trade_no"].as_str(), created["amount"].as_i64()), (Some("SVC-R001"), Some(400)));
    assert_eq!(created["reason"], "partial");
    let done = refund_once(&s, "RF-0001", "succeeded");
    assert!(done["refund_id"].as_str().is_some_and(|id| id.starts_with("50")), "{done}");
    assert!(done["succeeded_at"].as_i64().is_some(), "{done}");
    let o = internal(&s, "GET", "/internal/v1/pay/orders/SVC-R001", None).json();
    assert_eq!((o["state"].as_str(), o["refunded_amount"].as_i64()), (Some("paid"), Some(400)), "{o}");
    assert_eq!(o["refunds"], json!([done]));

    // 590 fen are left: 591 is refused before WeChat Pay is asked.
    let calls = s.fake_pay_calls("refund");
    let r = refund(&s, "SVC-R001", json!({"amount": 591}));
    assert_eq!((r.status, r.error_code().as_str()), (422, "invalid_field"), "{}", r.text);
    assert!(r.text.contains("590"), "{}", r.text);
    assert_eq!(s.fake_pay_calls("refund"), calls);

    let r = refund(&s, "SVC-R001", json!({"amount": 590}));
    assert_eq!(r.status, 201, "{}", r.text);
    let second = r.json()["out_refund_no"].as_str().unwrap().to_string();
    refund_once(&s, &second, "succeeded");
    let o = internal(&s, "GET", "/internal/v1/pay/orders/SVC-R001", None).json();
    assert_eq!((o["state"].as_str(), o["refunded_amount"].as_i64()), (Some("refunded"), Some(990)), "{o}");
    assert_eq!(o["refunds"].as_array().map(Vec::len), Some(2));
    assert_eq!(events(&s, "SVC-R001"), ["order.paid", "refund.succeeded", "refund.succeeded"]);
    let r = refund(&s, "SVC-R001", json!({"amount": 1}));
    assert_eq!((r.status, r.error_code().as_str()), (422, "invalid_field"), "nothing left: {}", r.text);
}

#[test]
fn a_retry_with_the_same_out_refund_no_refunds_once_and_a_new_number_refunds_again() {
    let s = start();
    paid_order(&s, "SVC-R002", 990);
    next_refunds(&s, "success", "once", 2);
    let body = json!({"amount": 100, "out_refund_no": "RF-0002"});
    let first = refund(&s, "SVC-R002", body.clone());
    assert_eq!(first.status, 201, "{}", first.text);
    let done = refund_once(&s, "RF-0002", "succeeded");
    let again = refund(&s, "SVC-R002", body.clone());
    assert_eq!(again.status, 200, "the same refund: {}", again.text);
    assert_eq!(again.json(), done);
    assert_eq!((s.fake_pay_calls("refund"), fake_refunds(&s)), (1, 1), "WeChat Pay was not asked again");
    let r = refund(&s, "SVC-R002", json!({"amount": 200, "out_refund_no": "RF-0002"}));
    assert_eq!((r.status, r.error_code().as_str()), (409, "refund_conflict"), "{}", r.text);

    // A new number is a new refund, as at WeChat Pay: the money goes back again.
    let r = refund(&s, "SVC-R002", json!({"amount": 100, "out_refund_no": "RF-0003"}));
    assert_eq!(r.status, 201, "{}", r.text);
    refund_once(&s, "RF-0003", "succeeded");
    assert_eq!(fake_refunds(&s), 2);
    assert_eq!(s.app().store.order("SVC-R002").unwrap().unwrap().refunded_amount, 200);
}

#[test]
fn a_refund_whose_answer_is_lost_is_retried_with_its_number_and_refunds_once() {
    let s = start();
    paid_order(&s, "SVC-R003", 990);
    next_refunds(&s, "processing", "never", 1);
    // WeChat Pay takes the refund but its answer cannot be believed (unsigned).
    s.fake_pay_behaviour(json!({"fail": {"api": "refund", "error": "unsigned", "times": 1}}));
    let body = json!({"amount": 300, "out_refund_no": "RF-0004"});
    let r = refund(&s, "SVC-R003", body.clone());
    assert_eq!((r.status, r.error_code().as_str()), (502, "pay_error"), "{}", r.text);
    let kept = internal(&s, "GET", "/internal/v1/pay/refunds/RF-0004", None);
    assert_eq!((kept.status, kept.json()["state"].as_str()), (200, Some("processing")), "{}", kept.text);
    let r = refund(&s, "SVC-R003", body);
    assert_eq!(r.status, 200, "the retry: {}", r.text);
    assert!(r.json()["refund_id"].is_string(), "{}", r.text);
    assert_eq!((s.fake_pay_calls("refund"), fake_refunds(&s)), (2, 1), "asked twice, refunded once");
}

#[test]
fn a_refund_that_fails_is_closed_with_its_event_and_frees_the_money() {
    let s = start();
    paid_order(&s, "SVC-R004", 990);
    next_refunds(&s, "closed", "once", 1);
    let r = refund(&s, "SVC-R004", json!({"amount": 990, "out_refund_no": "RF-0005"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let closed = refund_once(&s, "RF-0005", "closed");
    assert_eq!(closed["succeeded_at"], Value::Null);
    let o = s.app().store.order("SVC-R004").unwrap().unwrap();
    assert_eq!((o.state, o.refunded_amount), (OrderState::Paid, 0));
    assert_eq!(events(&s, "SVC-R004"), ["order.paid", "refund.failed"]);
    next_refunds(&s, "success", "once", 1);
    let r = refund(&s, "SVC-R004", json!({"amount": 990, "out_refund_no": "RF-0006"}));
    assert_eq!(r.status, 201, "a closed refund holds no money: {}", r.text);
    refund_once(&s, "RF-0006", "succeeded");
    assert_eq!(s.app().store.order("SVC-R004").unwrap().unwrap().state, OrderState::Refunded);
}

#[test]
fn a_refund_still_processing_is_found_done_by_the_maintenance_pass() {
    let s = start();
    paid_order(&s, "SVC-R005", 990);
    next_refunds(&s, "processing", "never", 1);
    let r = refund(&s, "SVC-R005", json!({"amount": 500, "out_refund_no": "RF-0007"}));
    assert_eq!((r.status, r.json()["state"].as_str()), (201, Some("processing")), "{}", r.text);
    let now = wxlogin::store::now();
    assert_eq!(s.app().pay_pass(now + 61), 0, "still processing at WeChat Pay");
    let queries = s.fake_pay_calls("query_refund");
    assert_eq!(queries, 1);
    // WeChat Pay finishes it, and its notification never comes.
    let body = json!({"out_refund_no": "RF-0007", "outcome": "success", "notify": {"mode": "never"}});
    let r = send(&format!("{}/__fake/pay/refund", s.fake.base_url()), "POST", None, Some(body.to_string()), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.app().pay_pass(now + 61), 0, "the next query waits (backoff)");
    assert_eq!(s.app().pay_pass(now + 61 + 121), 1);
    let done = internal(&s, "GET", "/internal/v1/pay/refunds/RF-0007", None).json();
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(s.app().store.order("SVC-R005").unwrap().unwrap().refunded_amount, 500);
    assert_eq!(s.app().pay_pass(now + 100_000), 0, "nothing left to follow");
    assert_eq!(events(&s, "SVC-R005"), ["order.paid", "refund.succeeded"]);
}

#[test]
fn a_refund_notification_delivered_twice_changes_the_refund_once() {
    let s = start();
    paid_order(&s, "SVC-R006", 990);
    for (mode, no, n) in [("twice", "RF-0008", 2), ("concurrent", "RF-0009", 2)] {
        next_refunds(&s, "success", mode, 1);
        let r = refund(&s, "SVC-R006", json!({"amount": 100, "out_refund_no": no}));
        assert_eq!(r.status, 201, "{}", r.text);
        let deadline = Instant::now() + Duration::from_secs(10);
        let d = loop {
            let d = refund_deliveries(&s, no);
            if d.len() == n && d.iter().all(|d| !d["status"].is_null()) {
                break d;
            }
            assert!(Instant::now() < deadline, "{mode}: {d:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(d.iter().all(|d| d["status"] == 204), "{mode}: {d:?}");
    }
    assert_eq!(events(&s, "SVC-R006"), ["order.paid", "refund.succeeded", "refund.succeeded"]);
    assert_eq!(s.app().store.order("SVC-R006").unwrap().unwrap().refunded_amount, 200);
    // Delivered once more, later: still nothing changes.
    let body = json!({"out_refund_no": "RF-0008", "to": s.url("/v1/pay/notify"), "wait": true});
    let r = send(&format!("{}/__fake/pay/notify", s.fake.base_url()), "POST", None, Some(body.to_string()), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(refund_deliveries(&s, "RF-0008").last().unwrap()["status"], 204);
    assert_eq!(events(&s, "SVC-R006").len(), 3);
}

#[test]
fn an_unpaid_or_unknown_order_is_not_refunded() {
    let s = start();
    let (_, login) = s.login("alice");
    let user_id = login["user"]["id"].as_i64().unwrap();
    let body = json!({"user_id": user_id, "amount": 990, "description": "Unpaid", "out_trade_no": "SVC-R007"});
    assert_eq!(internal(&s, "POST", "/internal/v1/pay/orders", Some(body)).status, 201);
    let r = refund(&s, "SVC-R007", json!({"amount": 100}));
    assert_eq!((r.status, r.error_code().as_str()), (409, "order_not_paid"), "{}", r.text);
    let r = refund(&s, "NOPE-0001", json!({"amount": 100}));
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    let r = internal(&s, "GET", "/internal/v1/pay/refunds/NOPE-0001", None);
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    for bad in
        [json!({"amount": 0}), json!({"amount": 1, "out_refund_no": "bad no"}), json!({"amount": 1, "reason": ""})]
    {
        let r = refund(&s, "SVC-R007", bad.clone());
        assert_eq!((r.status, r.error_code().as_str()), (422, "invalid_field"), "{bad}: {}", r.text);
    }
    let r = refund(&s, "SVC-R007", json!({"amount": 1, "currency": "USD"}));
    assert_eq!(r.status, 400, "an unknown field: {}", r.text);
    assert_eq!(s.fake_pay_calls("refund"), 0);
    assert!(s.app().store.refunds_of_order("SVC-R007").unwrap().is_empty());
}

/// A REFUND.SUCCESS notification as WeChat Pay sends it (research §7), with `refund` as
/// its plaintext, signed with the fake's platform key.
fn send_refund_notification(s: &TestServer, refund: &Value) -> Reply {
    let key = ApiV3Key::new(fake_pay::TEST_APIV3_KEY.as_bytes()).unwrap();
    let resource = Resource::encrypt(&key, "refund", "refund", refund.to_string().as_bytes()).unwrap();
    let body = json!({
        "id": "EV-refund", "create_time": "2026-12-02T18:00:00+08:00", "resource_type": "encrypt-resource",
        "event_type": "REFUND.SUCCESS", "summary": "退款成功", "resource": resource,
    })
    .to_string();
    let timestamp = wxlogin::store::now().to_string();
    let nonce = "0123456789abcdef0123456789abcdef";
    let signer = SigningKey::from_pem(PLATFORM_KEY_PEM).unwrap();
    let signature = signer.sign_base64(&response_message(&timestamp, nonce, body.as_bytes())).unwrap();
    let headers = [
        ("Content-Type", "application/json"),
        ("Wechatpay-Timestamp", timestamp.as_str()),
        ("Wechatpay-Nonce", nonce),
        ("Wechatpay-Signature", signature.as_str()),
        ("Wechatpay-Serial", fake_pay::PLATFORM_PUBLIC_KEY_ID),
        ("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048"),
    ];
    send(&s.url("/v1/pay/notify"), "POST", None, Some(body), &headers)
}

#[test]
fn refund_notifications_not_about_our_refunds_are_refused_and_change_nothing() {
    let s = start();
    paid_order(&s, "SVC-R008", 990);
    next_refunds(&s, "processing", "never", 1);
    let r = refund(&s, "SVC-R008", json!({"amount": 300, "out_refund_no": "RF-0010"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let base = json!({
        "mchid": fake_pay::TEST_MCHID, "transaction_id": "4200000000202612020000000001",
        "out_trade_no": "SVC-R008", "refund_id": r.json()["refund_id"], "out_refund_no": "RF-0010",
        "refund_status": "SUCCESS", "success_time": "2026-12-02T18:00:00+08:00",
        "user_received_account": "支付用户零钱",
        "amount": {"total": 990, "refund": 300, "payer_total": 990, "payer_refund": 300},
    });
    let mut cases = Vec::new();
    for (what, field, value) in [
        ("another mchid", "/mchid", json!("1900000109")),
        ("no mchid", "/mchid", Value::Null),
        ("an unknown refund", "/out_refund_no", json!("RF-UNKNOWN")),
        ("another order", "/out_trade_no", json!("SVC-OTHER")),
        ("another amount", "/amount/refund", json!(301)),
        ("another total", "/amount/total", json!(991)),
        ("another refund_id", "/refund_id", json!("50000000000000000000000000001")),
    ] {
        let mut n = base.clone();
        *n.pointer_mut(field).unwrap() = value;
        cases.push((what, n));
    }
    for (what, n) in cases {
        let r = send_refund_notification(&s, &n);
        assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("FAIL")), "{what}: {}", r.text);
        assert_eq!(s.app().store.refund("RF-0010").unwrap().unwrap().state, RefundState::Processing, "{what}");
    }
    assert_eq!(events(&s, "SVC-R008"), ["order.paid"]);
    // The same notification about our refund is applied: the refusals were for cause.
    let r = send_refund_notification(&s, &base);
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(s.app().store.refund("RF-0010").unwrap().unwrap().state, RefundState::Succeeded);
    assert_eq!(events(&s, "SVC-R008"), ["order.paid", "refund.succeeded"]);
}

#[test]
fn a_refund_wechat_pay_refuses_is_forgotten_unless_it_has_it() {
    let s = start();
    paid_order(&s, "SVC-R009", 990);
    next_refunds(&s, "processing", "never", 2);
    s.fake_pay_behaviour(json!({"fail": {"api": "refund", "error": "NO_AUTH", "times": 1}}));
    let r = refund(&s, "SVC-R009", json!({"amount": 990, "out_refund_no": "RF-0011"}));
    assert_eq!((r.status, r.error_code().as_str()), (502, "pay_error"), "{}", r.text);
    assert_eq!(r.json()["error"]["wechatpay_code"], "NO_AUTH");
    let r = internal(&s, "GET", "/internal/v1/pay/refunds/RF-0011", None);
    assert_eq!(r.status, 404, "not at WeChat Pay, so forgotten: {}", r.text);

    // Taken by WeChat Pay with its answer lost, then the retry refused: WeChat Pay has
    // it, so it is kept and recorded, and its money stays reserved.
    s.fake_pay_behaviour(json!({"fail": {"api": "refund", "error": "unsigned", "times": 1}}));
    let body = json!({"amount": 990, "out_refund_no": "RF-0012"});
    assert_eq!(refund(&s, "SVC-R009", body.clone()).status, 502);
    s.fake_pay_behaviour(json!({"fail": {"api": "refund", "error": "RATELIMIT_EXCEEDED", "times": 1}}));
    let r = refund(&s, "SVC-R009", body);
    assert_eq!(r.json()["error"]["wechatpay_code"], "RATELIMIT_EXCEEDED", "{}", r.text);
    let kept = internal(&s, "GET", "/internal/v1/pay/refunds/RF-0012", None).json();
    assert_eq!(kept["state"], "processing", "{kept}");
    assert!(kept["refund_id"].is_string(), "found by a query: {kept}");
    let r = refund(&s, "SVC-R009", json!({"amount": 1}));
    assert_eq!((r.status, r.error_code().as_str()), (422, "invalid_field"), "{}", r.text);
    assert_eq!(fake_refunds(&s), 1);
}
