//! The fake WeChat Pay over real HTTP, driven with correctly (and incorrectly) signed
//! requests as wxlogin's client sends them, and a tiny notification receiver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::fake_wechat::{FakeOptions, FakePayOptions, FakeWeChat};
use crate::pay::{ApiV3Key, Merchant, PayVerifier, Resource, Signed, SigningKey, VerifyingKey};

use super::{
    PLATFORM_PUBLIC_KEY_ID, PLATFORM_PUBLIC_KEY_PEM, TEST_APIV3_KEY, TEST_MCHID, TEST_MERCHANT_KEY_PEM,
    TEST_MERCHANT_SERIAL,
};

const APPID: &str = "wx_pay_app";

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    json: Value,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v.as_str())
    }

    fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }

    /// Every answer, refusals included, is signed with the fake's platform key.
    fn assert_signed(&self) {
        let verifier = verifier();
        let signed = Signed {
            timestamp: self.header("Wechatpay-Timestamp"),
            nonce: self.header("Wechatpay-Nonce"),
            signature: self.header("Wechatpay-Signature"),
            serial: self.header("Wechatpay-Serial"),
            body: self.body.as_bytes(),
        };
        verifier.verify(&signed, crate::pay::unix_now()).expect("the answer verifies with the fake's public key");
        assert!(!self.header("Request-ID").is_empty());
    }
}

fn verifier() -> PayVerifier {
    PayVerifier::new(PLATFORM_PUBLIC_KEY_ID, VerifyingKey::from_pem(PLATFORM_PUBLIC_KEY_PEM).expect("pem"))
}

fn merchant() -> Merchant {
    let key = SigningKey::from_pem(TEST_MERCHANT_KEY_PEM).expect("pem");
    Merchant::new(TEST_MCHID, TEST_MERCHANT_SERIAL, key).expect("merchant")
}

struct Client {
    agent: ureq::Agent,
    base: String,
    merchant: Merchant,
}

impl Client {
    fn new(fake: &FakeWeChat) -> Client {
        Client {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(20)))
                .build()
                .into(),
            base: fake.base_url(),
            merchant: merchant(),
        }
    }

    /// A request with the given Authorization (None: correctly signed now).
    fn send(&self, method: &str, path: &str, body: Option<&str>, auth: Option<String>) -> Resp {
        let auth = auth.unwrap_or_else(|| {
            self.merchant.authorization(method, path, body.unwrap_or("").as_bytes()).expect("signs")
        });
        let url = format!("{}{path}", self.base);
        let result = match body {
            Some(body) => self
                .agent
                .post(url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .header("Content-Type", "application/json")
                .header("User-Agent", "wxlogin-test")
                .send(body),
            None => self
                .agent
                .get(url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .header("User-Agent", "wxlogin-test")
                .call(),
        };
        let mut resp = result.expect("the fake answers");
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = resp.body_mut().read_to_string().expect("body");
        Resp { status: resp.status().as_u16(), headers, json: serde_json::from_str(&body).unwrap_or(Value::Null), body }
    }

    fn jsapi(&self, order: &Value) -> Resp {
        self.send("POST", "/v3/pay/transactions/jsapi", Some(&order.to_string()), None)
    }

    fn query(&self, out_trade_no: &str) -> Resp {
        self.send("GET", &format!("/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={TEST_MCHID}"), None, None)
    }

    fn close(&self, out_trade_no: &str) -> Resp {
        let body = json!({"mchid": TEST_MCHID}).to_string();
        self.send("POST", &format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close"), Some(&body), None)
    }

    fn control(&self, path: &str, body: Value) -> (u16, Value) {
        let mut resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("the fake answers");
        let text = resp.body_mut().read_to_string().expect("body");
        (resp.status().as_u16(), serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn deliveries(&self, out_trade_no: &str) -> Vec<Value> {
        let mut resp = self
            .agent
            .get(format!("{}/__fake/pay/deliveries?out_trade_no={out_trade_no}", self.base))
            .call()
            .expect("answers");
        let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("json");
        v["deliveries"].as_array().cloned().unwrap_or_default()
    }
}

fn start() -> (FakeWeChat, Client) {
    let opts = FakeOptions {
        apps: vec![(APPID.into(), "secret".into())],
        pay: Some(FakePayOptions { allow_http_notify: true, ..FakePayOptions::test() }),
        ..FakeOptions::default()
    };
    let fake = FakeWeChat::start("127.0.0.1:0", opts).expect("starts");
    let client = Client::new(&fake);
    (fake, client)
}

fn order(out_trade_no: &str, total: i64, notify_url: &str) -> Value {
    json!({
        "appid": APPID,
        "mchid": TEST_MCHID,
        "description": "VIP 30 天",
        "out_trade_no": out_trade_no,
        "attach": "order-attach",
        "notify_url": notify_url,
        "amount": {"total": total, "currency": "CNY"},
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
    })
}

const NOTIFY: &str = "https://example.com/v1/pay/notify";

#[test]
fn a_good_jsapi_order_gets_a_signed_prepay_id_and_the_same_one_again() {
    let (_fake, client) = start();
    let first = client.jsapi(&order("T20261202000001", 100, NOTIFY));
    assert_eq!(first.status, 200, "{}", first.body);
    first.assert_signed();
    let prepay_id = first.json["prepay_id"].as_str().expect("prepay_id");
    assert!(prepay_id.starts_with("wx") && prepay_id.len() == 36, "{prepay_id}");
    let again = client.jsapi(&order("T20261202000001", 100, NOTIFY));
    assert_eq!(again.json["prepay_id"], first.json["prepay_id"]);
    // Same number, other amount: WeChat Pay's duplicate-order refusal.
    let other = client.jsapi(&order("T20261202000001", 200, NOTIFY));
    assert_eq!((other.status, other.code()), (403, "OUT_TRADE_NO_USED"), "{}", other.body);
    other.assert_signed();
}

#[test]
fn bad_signatures_old_timestamps_and_wrong_merchants_are_refused() {
    let (_fake, client) = start();
    let body = order("T20261202000002", 100, NOTIFY).to_string();
    let path = "/v3/pay/transactions/jsapi";
    let m = merchant();
    // Signed over another body.
    let auth = m.authorization("POST", path, b"{}").expect("signs");
    let resp = client.send("POST", path, Some(&body), Some(auth));
    assert_eq!((resp.status, resp.code()), (401, "SIGN_ERROR"), "{}", resp.body);
    resp.assert_signed();
    // Signed correctly, ten minutes ago.
    let old = m.authorization_at("POST", path, body.as_bytes(), crate::pay::unix_now() - 600, "abc123").expect("signs");
    let resp = client.send("POST", path, Some(&body), Some(old));
    assert_eq!((resp.status, resp.code()), (401, "SIGN_ERROR"), "{}", resp.body);
    // Not the scheme.
    let resp = client.send("POST", path, Some(&body), Some("Bearer x".into()));
    assert_eq!((resp.status, resp.code()), (401, "SIGN_ERROR"));
    // Another merchant number in the Authorization.
    let other =
        Merchant::new("1900000109", TEST_MERCHANT_SERIAL, SigningKey::from_pem(TEST_MERCHANT_KEY_PEM).expect("pem"))
            .expect("merchant");
    let auth = other.authorization("POST", path, body.as_bytes()).expect("signs");
    let resp = client.send("POST", path, Some(&body), Some(auth));
    assert_eq!((resp.status, resp.code()), (400, "MCH_NOT_EXISTS"), "{}", resp.body);
    // The body's mchid not the signer's.
    let mut wrong = order("T20261202000002", 100, NOTIFY);
    wrong["mchid"] = json!("1900000109");
    let resp = client.jsapi(&wrong);
    assert_eq!((resp.status, resp.code()), (400, "PARAM_ERROR"), "{}", resp.body);
    // An appid not bound to the merchant.
    let mut wrong = order("T20261202000002", 100, NOTIFY);
    wrong["appid"] = json!("wx_not_bound");
    let resp = client.jsapi(&wrong);
    assert_eq!((resp.status, resp.code()), (400, "APPID_MCHID_NOT_MATCH"), "{}", resp.body);
}

#[test]
fn order_fields_are_checked() {
    let (_fake, client) = start();
    let cases: Vec<(&str, Value)> = vec![
        ("out_trade_no", json!("short")),
        ("out_trade_no", json!("has space 123")),
        ("notify_url", json!("https://example.com/n?x=1")),
        ("description", json!("emoji 😀")),
        ("description", json!("x".repeat(128))),
        ("time_expire", json!("2020-01-01T00:00:00+08:00")),
        ("time_expire", json!("tomorrow")),
    ];
    for (field, value) in cases {
        let mut o = order("T20261202000003", 100, NOTIFY);
        o[field] = value.clone();
        let resp = client.jsapi(&o);
        assert_eq!((resp.status, resp.code()), (400, "PARAM_ERROR"), "{field}={value}: {}", resp.body);
    }
    for total in [json!(0), json!(1_000_000_001), json!(1.5), json!("100")] {
        let mut o = order("T20261202000003", 100, NOTIFY);
        o["amount"]["total"] = total.clone();
        assert_eq!(client.jsapi(&o).code(), "PARAM_ERROR", "{total}");
    }
    let mut o = order("T20261202000003", 100, NOTIFY);
    o["amount"]["currency"] = json!("USD");
    assert_eq!(client.jsapi(&o).code(), "PARAM_ERROR");
    let mut o = order("T20261202000003", 100, NOTIFY);
    o["payer"] = json!({});
    assert_eq!(client.jsapi(&o).code(), "PARAM_ERROR");
}

#[test]
fn plain_http_notify_urls_need_the_option() {
    let fake = FakeWeChat::start(
        "127.0.0.1:0",
        FakeOptions { apps: vec![(APPID.into(), "s".into())], ..FakeOptions::default() },
    )
    .expect("starts");
    let client = Client::new(&fake);
    let resp = client.jsapi(&order("T20261202000004", 100, "http://127.0.0.1:9/notify"));
    assert_eq!((resp.status, resp.code()), (400, "PARAM_ERROR"), "{}", resp.body);
    assert_eq!(client.jsapi(&order("T20261202000004", 100, NOTIFY)).status, 200);
}

#[test]
fn query_before_and_after_paying_close_and_pay_a_closed_order() {
    let (_fake, client) = start();
    let missing = client.query("T20261202999999");
    assert_eq!((missing.status, missing.code()), (404, "ORDER_NOT_EXIST"));
    missing.assert_signed();

    assert_eq!(client.jsapi(&order("T20261202000005", 100, NOTIFY)).status, 200);
    let before = client.query("T20261202000005");
    assert_eq!(before.status, 200, "{}", before.body);
    before.assert_signed();
    assert_eq!(before.json["trade_state"], "NOTPAY");
    assert!(before.json.get("transaction_id").is_none());

    let (status, paid) =
        client.control("/__fake/pay/pay", json!({"out_trade_no": "T20261202000005", "notify": {"mode": "never"}}));
    assert_eq!(status, 200, "{paid}");
    let after = client.query("T20261202000005");
    after.assert_signed();
    assert_eq!(after.json["trade_state"], "SUCCESS");
    assert_eq!(after.json["transaction_id"], paid["transaction_id"]);
    assert_eq!(after.json["amount"]["total"], 100);
    assert_eq!(after.json["payer"]["openid"], "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
    assert_eq!(after.json["attach"], "order-attach");
    let id = paid["transaction_id"].as_str().expect("id");
    let by_id = client.send("GET", &format!("/v3/pay/transactions/id/{id}?mchid={TEST_MCHID}"), None, None);
    assert_eq!(by_id.json["out_trade_no"], "T20261202000005");
    // A paid order cannot be closed, nor ordered again.
    let close = client.close("T20261202000005");
    assert_eq!((close.status, close.code()), (400, "ORDERPAID"));
    assert_eq!(client.jsapi(&order("T20261202000005", 100, NOTIFY)).code(), "ORDERPAID");

    assert_eq!(client.jsapi(&order("T20261202000006", 100, NOTIFY)).status, 200);
    let closed = client.close("T20261202000006");
    assert_eq!(closed.status, 204, "{}", closed.body);
    assert!(closed.body.is_empty());
    closed.assert_signed();
    assert_eq!(client.close("T20261202000006").status, 204);
    assert_eq!(client.query("T20261202000006").json["trade_state"], "CLOSED");
    let (status, refused) = client.control("/__fake/pay/pay", json!({"out_trade_no": "T20261202000006"}));
    assert_eq!(status, 409, "{refused}");
    assert!(refused["errmsg"].as_str().is_some_and(|m| m.starts_with("ORDER_CLOSED")), "{refused}");
    assert_eq!(client.jsapi(&order("T20261202000006", 100, NOTIFY)).code(), "ORDER_CLOSED");
    // Query without the mchid.
    let resp = client.send("GET", "/v3/pay/transactions/out-trade-no/T20261202000006", None, None);
    assert_eq!((resp.status, resp.code()), (400, "PARAM_ERROR"));
}

/// One notification as the receiver saw it.
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v.as_str())
    }
}

/// A tiny HTTP receiver on loopback that answers every POST with `status`.
fn receiver(status: u16) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}/notify", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            thread::spawn(move || {
                if let Some(r) = read_request(&stream) {
                    let _ = tx.send(r);
                }
                let mut stream = stream;
                let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            });
        }
    });
    (url, rx)
}

fn read_request(stream: &TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (k, v) = trimmed.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length"))?.1.parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received { headers, body })
}

fn next(rx: &mpsc::Receiver<Received>) -> Received {
    rx.recv_timeout(Duration::from_secs(20)).expect("a notification arrives")
}

/// Verifies and decrypts a notification as wxlogin must, returning the Transaction.
fn open(r: &Received) -> Value {
    let signed = Signed {
        timestamp: r.header("Wechatpay-Timestamp"),
        nonce: r.header("Wechatpay-Nonce"),
        signature: r.header("Wechatpay-Signature"),
        serial: r.header("Wechatpay-Serial"),
        body: &r.body,
    };
    verifier().verify(&signed, crate::pay::unix_now()).expect("the notification verifies");
    assert_eq!(r.header("Wechatpay-Signature-Type"), "WECHATPAY2-SHA256-RSA2048");
    let envelope: Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(envelope["event_type"], "TRANSACTION.SUCCESS");
    assert_eq!(envelope["resource_type"], "encrypt-resource");
    assert!(envelope["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(envelope["create_time"].as_str().is_some_and(|t| t.ends_with("+08:00")));
    assert_eq!(envelope["resource"]["original_type"], "transaction");
    assert_eq!(envelope["resource"]["associated_data"], "transaction");
    let resource: Resource = serde_json::from_value(envelope["resource"].clone()).expect("resource");
    let key = ApiV3Key::new(TEST_APIV3_KEY.as_bytes()).expect("key");
    serde_json::from_slice(&resource.decrypt(&key).expect("decrypts with the APIv3 key")).expect("json")
}

fn wait_for_deliveries(client: &Client, out_trade_no: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let list = client.deliveries(out_trade_no);
        if list.len() >= n {
            return list;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("fewer than {n} deliveries recorded for {out_trade_no}");
}

#[test]
fn a_payment_notification_verifies_and_decrypts_to_the_transaction() {
    let (_fake, client) = start();
    let (url, rx) = receiver(204);
    let resp = client.jsapi(&order("T20261202000007", 2990, &url));
    let prepay_id = resp.json["prepay_id"].as_str().expect("prepay_id");
    let (status, paid) = client.control("/__fake/pay/pay", json!({"prepay_id": prepay_id}));
    assert_eq!(status, 200, "{paid}");
    let t = open(&next(&rx));
    assert_eq!(t["trade_state"], "SUCCESS");
    assert_eq!(t["amount"]["total"], 2990);
    assert_eq!(t["amount"]["payer_total"], 2990);
    assert_eq!(t["appid"], APPID);
    assert_eq!(t["mchid"], TEST_MCHID);
    assert_eq!(t["out_trade_no"], "T20261202000007");
    assert_eq!(t["transaction_id"], paid["transaction_id"]);
    assert_eq!(t["payer"]["openid"], "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
    let deliveries = wait_for_deliveries(&client, "T20261202000007", 1);
    assert_eq!(deliveries[0]["status"], 204);
    assert_eq!(deliveries[0]["ok"], true);

    // Redelivered twice, one after the other: the same transaction under a new id.
    let (status, _) =
        client.control("/__fake/pay/notify", json!({"out_trade_no": "T20261202000007", "mode": "twice", "wait": true}));
    assert_eq!(status, 200);
    assert_eq!(open(&next(&rx)), t);
    assert_eq!(open(&next(&rx)), t);
    let list = client.deliveries("T20261202000007");
    assert_eq!(list.len(), 3);
    assert_ne!(list[0]["notification_id"], list[1]["notification_id"]);
    assert_eq!(list[1]["notification_id"], list[2]["notification_id"]);
}

#[test]
fn an_order_past_its_time_expire_cannot_be_paid_or_placed_again() {
    let (fake, client) = start();
    let mut o = order("T20261202000013", 100, NOTIFY);
    o["time_expire"] = json!(super::wire::format_cst(crate::pay::unix_now() + 120));
    assert_eq!(client.jsapi(&o).status, 200);
    fake.advance_clock(150);
    let (status, refused) = client.control("/__fake/pay/pay", json!({"out_trade_no": "T20261202000013"}));
    assert_eq!(status, 409, "{refused}");
    let again = client.jsapi(&o);
    assert_eq!((again.status, again.code()), (400, "ORDER_CLOSED"), "{}", again.body);
    assert_eq!(client.query("T20261202000013").json["trade_state"], "NOTPAY");
}

#[test]
fn notifications_twice_at_once_as_a_probe_and_retried() {
    let (_fake, client) = start();
    let (url, rx) = receiver(200);
    assert_eq!(client.jsapi(&order("T20261202000008", 100, &url)).status, 200);
    let (status, _) = client.control(
        "/__fake/pay/pay",
        json!({"out_trade_no": "T20261202000008", "notify": {"mode": "concurrent", "wait": true}}),
    );
    assert_eq!(status, 200);
    let (a, b) = (open(&next(&rx)), open(&next(&rx)));
    assert_eq!(a, b);
    assert_eq!(wait_for_deliveries(&client, "T20261202000008", 2).len(), 2);

    let (status, _) = client.control("/__fake/pay/notify", json!({"out_trade_no": "T20261202000008", "probe": true}));
    assert_eq!(status, 200);
    let probe = next(&rx);
    assert!(probe.header("Wechatpay-Signature").starts_with("WECHATPAY/SIGNTEST/"));
    let list = wait_for_deliveries(&client, "T20261202000008", 3);
    assert_eq!(list[2]["probe"], true);

    // A receiver that refuses gets the retries asked for, each recorded.
    let (refusing, rx) = receiver(500);
    assert_eq!(client.jsapi(&order("T20261202000009", 100, &refusing)).status, 200);
    let (status, _) = client.control(
        "/__fake/pay/pay",
        json!({"out_trade_no": "T20261202000009", "notify": {"mode": "once", "retries": 2, "retry_interval_ms": 10, "wait": true}}),
    );
    assert_eq!(status, 200);
    let list = client.deliveries("T20261202000009");
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(list.iter().all(|d| d["status"] == 500 && d["ok"] == false));
    for _ in 0..3 {
        open(&next(&rx));
    }
    // Nothing to notify for an unpaid order.
    assert_eq!(client.jsapi(&order("T20261202000010", 100, &url)).status, 200);
    let (status, _) = client.control("/__fake/pay/notify", json!({"out_trade_no": "T20261202000010"}));
    assert_eq!(status, 409);
}

#[test]
fn injected_failures_answer_as_asked_once() {
    let (_fake, client) = start();
    let fail = |api: &str, error: &str| {
        let (status, v) = client.control("/__fake/pay/behaviour", json!({"fail": {"api": api, "error": error}}));
        assert_eq!(status, 200, "{v}");
    };
    fail("jsapi", "SYSTEM_ERROR");
    let resp = client.jsapi(&order("T20261202000011", 100, NOTIFY));
    assert_eq!((resp.status, resp.code()), (500, "SYSTEM_ERROR"));
    resp.assert_signed();
    assert_eq!(client.query("T20261202000011").code(), "ORDER_NOT_EXIST", "a refused order is not created");

    fail("jsapi", "unsigned");
    let resp = client.jsapi(&order("T20261202000011", 100, NOTIFY));
    assert_eq!(resp.status, 200);
    assert!(resp.header("Wechatpay-Signature").is_empty());

    fail("*", "bad_signature");
    let resp = client.query("T20261202000011");
    assert_eq!(resp.status, 200);
    let signed = Signed {
        timestamp: resp.header("Wechatpay-Timestamp"),
        nonce: resp.header("Wechatpay-Nonce"),
        signature: resp.header("Wechatpay-Signature"),
        serial: resp.header("Wechatpay-Serial"),
        body: resp.body.as_bytes(),
    };
    assert!(verifier().verify(&signed, crate::pay::unix_now()).is_err());

    fail("query_out_trade_no", "http_500");
    let resp = client.query("T20261202000011");
    assert_eq!(resp.status, 500);
    assert!(resp.header("Wechatpay-Signature").is_empty());
    // Each failure is used up by one call.
    client.query("T20261202000011").assert_signed();
    let (status, _) = client.control("/__fake/pay/behaviour", json!({"fail": {"api": "refund", "error": "hang"}}));
    assert_eq!(status, 400);
}

#[test]
fn a_late_notification_comes_after_the_delay() {
    let (_fake, client) = start();
    let (url, rx) = receiver(204);
    assert_eq!(client.jsapi(&order("T20261202000012", 100, &url)).status, 200);
    let (status, _) = client.control(
        "/__fake/pay/pay",
        json!({"out_trade_no": "T20261202000012", "notify": {"mode": "once", "delay_ms": 3000}}),
    );
    assert_eq!(status, 200);
    assert!(client.deliveries("T20261202000012").is_empty(), "nothing delivered before the delay");
    open(&next(&rx));
    assert_eq!(wait_for_deliveries(&client, "T20261202000012", 1)[0]["status"], 204);
}

#[test]
fn a_stopped_fake_drops_its_late_deliveries() {
    let (fake, client) = start();
    let (url, rx) = receiver(204);
    assert_eq!(client.jsapi(&order("T20261202000014", 100, &url)).status, 200);
    let (status, _) = client.control(
        "/__fake/pay/pay",
        json!({"out_trade_no": "T20261202000014", "notify": {"mode": "once", "delay_ms": 1000}}),
    );
    assert_eq!(status, 200);
    fake.stop();
    assert!(rx.recv_timeout(Duration::from_secs(3)).is_err(), "nothing delivered after stop");
}

#[test]
fn notifications_can_be_sent_elsewhere_than_the_https_notify_url() {
    // Per request: the order keeps its https notify_url, the test's receiver gets it.
    let (_fake, client) = start();
    let (url, rx) = receiver(204);
    assert_eq!(client.jsapi(&order("T20261202000015", 100, NOTIFY)).status, 200);
    let (status, _) =
        client.control("/__fake/pay/pay", json!({"out_trade_no": "T20261202000015", "notify": {"to": url}}));
    assert_eq!(status, 200);
    assert_eq!(open(&next(&rx))["out_trade_no"], "T20261202000015");

    // For every notification, from the fake's options (plain http notify_urls refused).
    let (url, rx) = receiver(204);
    let opts = FakeOptions {
        apps: vec![(APPID.into(), "secret".into())],
        pay: Some(FakePayOptions { notify_override: Some(url), ..FakePayOptions::test() }),
        ..FakeOptions::default()
    };
    let fake = FakeWeChat::start("127.0.0.1:0", opts).expect("starts");
    let client = Client::new(&fake);
    assert_eq!(client.jsapi(&order("T20261202000016", 100, NOTIFY)).status, 200);
    let (status, _) = client.control("/__fake/pay/pay", json!({"out_trade_no": "T20261202000016"}));
    assert_eq!(status, 200);
    assert_eq!(open(&next(&rx))["out_trade_no"], "T20261202000016");
}
