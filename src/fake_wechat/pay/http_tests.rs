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
    PlatformMode, PLATFORM2_CERT_PEM, PLATFORM2_CERT_SERIAL, PLATFORM2_PUBLIC_KEY_PEM, PLATFORM_CERT_PEM,
    PLATFORM_CERT_SERIAL, PLATFORM_PUBLIC_KEY_ID, PLATFORM_PUBLIC_KEY_PEM, TEST_APIV3_KEY, TEST_MCHID,
    TEST_MERCHANT_KEY_PEM, TEST_MERCHANT_SERIAL,
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
        self.assert_signed_by(&verifier());
    }

    fn assert_signed_by(&self, verifier: &PayVerifier) {
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
        self.deliveries_where(&format!("out_trade_no={out_trade_no}"))
    }

    fn deliveries_where(&self, query: &str) -> Vec<Value> {
        let mut resp = self.agent.get(format!("{}/__fake/pay/deliveries?{query}", self.base)).call().expect("answers");
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
    let (status, _) = client.control("/__fake/pay/behaviour", json!({"fail": {"api": "refunds", "error": "hang"}}));
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

// ---- Refunds ----

fn refund_body(by: (&str, &str), out_refund_no: &str, refund: i64, total: i64, notify_url: Option<&str>) -> Value {
    let mut v = json!({
        by.0: by.1,
        "out_refund_no": out_refund_no,
        "reason": "不想要了",
        "amount": {"refund": refund, "total": total, "currency": "CNY"},
    });
    if let Some(url) = notify_url {
        v["notify_url"] = json!(url);
    }
    v
}

impl Client {
    fn refund(&self, body: &Value) -> Resp {
        self.send("POST", "/v3/refund/domestic/refunds", Some(&body.to_string()), None)
    }

    fn query_refund(&self, out_refund_no: &str) -> Resp {
        self.send("GET", &format!("/v3/refund/domestic/refunds/{out_refund_no}"), None, None)
    }

    /// A paid order of `total` fen (no payment notification), and its transaction_id.
    fn paid_order(&self, out_trade_no: &str, total: i64, notify_url: &str) -> String {
        assert_eq!(self.jsapi(&order(out_trade_no, total, notify_url)).status, 200);
        let (status, paid) =
            self.control("/__fake/pay/pay", json!({"out_trade_no": out_trade_no, "notify": {"mode": "never"}}));
        assert_eq!(status, 200, "{paid}");
        paid["transaction_id"].as_str().expect("transaction_id").to_string()
    }
}

#[test]
fn partial_and_full_refunds_and_an_over_refund_refused() {
    let (_fake, client) = start();
    let transaction_id = client.paid_order("T20261202000101", 1000, NOTIFY);
    let first = client.refund(&refund_body(("out_trade_no", "T20261202000101"), "R20261202000101", 300, 1000, None));
    assert_eq!(first.status, 200, "{}", first.body);
    first.assert_signed();
    assert_eq!(first.json["status"], "PROCESSING", "the answer shows the refund as created");
    assert_eq!(first.json["out_trade_no"], "T20261202000101");
    assert_eq!(first.json["transaction_id"], transaction_id.as_str());
    assert_eq!(first.json["amount"]["refund"], 300);
    assert_eq!(first.json["amount"]["total"], 1000);
    let refund_id = first.json["refund_id"].as_str().expect("refund_id");
    assert!(refund_id.len() == 29 && refund_id.starts_with("50"), "{refund_id}");
    let queried = client.query_refund("R20261202000101");
    queried.assert_signed();
    assert_eq!(
        (queried.json["status"].as_str(), queried.json["refund_id"].as_str()),
        (Some("SUCCESS"), Some(refund_id))
    );
    assert!(queried.json["success_time"].as_str().is_some_and(|t| t.ends_with("+08:00")));
    assert_eq!(client.query("T20261202000101").json["trade_state"], "REFUND");

    // 700 fen are left: 800 is too much, the rest (by transaction_id) is not.
    let over = client.refund(&refund_body(("out_trade_no", "T20261202000101"), "R20261202000102", 800, 1000, None));
    assert_eq!((over.status, over.code()), (400, "INVALID_REQUEST"), "{}", over.body);
    over.assert_signed();
    let rest = client.refund(&refund_body(("transaction_id", &transaction_id), "R20261202000103", 700, 1000, None));
    assert_eq!(rest.status, 200, "{}", rest.body);
    assert_eq!(rest.json["out_trade_no"], "T20261202000101");
    let more = client.refund(&refund_body(("out_trade_no", "T20261202000101"), "R20261202000104", 1, 1000, None));
    assert_eq!(more.code(), "INVALID_REQUEST", "nothing is left: {}", more.body);
    assert_eq!(client.query_refund("R20261202000102").code(), "RESOURCE_NOT_EXISTS", "a refused refund is not kept");
}

#[test]
fn refund_requests_are_checked() {
    let (_fake, client) = start();
    client.paid_order("T20261202000111", 500, NOTIFY);
    let good = || refund_body(("out_trade_no", "T20261202000111"), "R20261202000111", 100, 500, None);
    let mut cases = Vec::new();
    let mut v = good();
    v["amount"]["currency"] = Value::Null;
    cases.push(("no currency", v, "PARAM_ERROR"));
    let mut v = good();
    v.as_object_mut().expect("object").remove("out_trade_no");
    cases.push(("no order", v, "PARAM_ERROR"));
    let mut v = good();
    v["amount"]["refund"] = json!(0);
    cases.push(("refund 0", v, "PARAM_ERROR"));
    let mut v = good();
    v["out_refund_no"] = json!("R 1");
    cases.push(("space in out_refund_no", v, "PARAM_ERROR"));
    let mut v = good();
    v["notify_url"] = json!("https://example.com/refund?x=1");
    cases.push(("notify_url with a query", v, "PARAM_ERROR"));
    let mut v = good();
    v["amount"]["total"] = json!(400);
    cases.push(("total not the order's", v, "INVALID_REQUEST"));
    let mut v = good();
    v["out_trade_no"] = json!("T20261202999999");
    cases.push(("unknown order", v, "RESOURCE_NOT_EXISTS"));
    for (what, body, code) in cases {
        let resp = client.refund(&body);
        assert_eq!(resp.code(), code, "{what}: {}", resp.body);
        resp.assert_signed();
    }
    let missing = client.query_refund("R20261202999999");
    assert_eq!((missing.status, missing.code()), (404, "RESOURCE_NOT_EXISTS"));
    assert_eq!(client.refund(&good()).status, 200);
}

#[test]
fn the_same_out_refund_no_refunds_once_and_a_new_one_refunds_again() {
    let (_fake, client) = start();
    client.paid_order("T20261202000121", 500, NOTIFY);
    let body = refund_body(("out_trade_no", "T20261202000121"), "R20261202000121", 200, 500, None);
    let first = client.refund(&body);
    let retry = client.refund(&body);
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.json["refund_id"], first.json["refund_id"]);
    assert_eq!(retry.json["status"], "SUCCESS", "a retry answers the refund as it is now");
    let other = client.refund(&refund_body(("out_trade_no", "T20261202000121"), "R20261202000121", 300, 500, None));
    assert_eq!((other.status, other.code()), (400, "INVALID_REQUEST"), "{}", other.body);
    // A new number for the same money is a new refund, as with WeChat Pay.
    let again = client.refund(&refund_body(("out_trade_no", "T20261202000121"), "R20261202000122", 200, 500, None));
    assert_eq!(again.status, 200, "{}", again.body);
    assert_ne!(again.json["refund_id"], first.json["refund_id"]);
    // 400 of 500 refunded: a third 200 is over.
    let third = client.refund(&refund_body(("out_trade_no", "T20261202000121"), "R20261202000123", 200, 500, None));
    assert_eq!(third.code(), "INVALID_REQUEST");
}

#[test]
fn an_unpaid_or_closed_order_cannot_be_refunded() {
    let (_fake, client) = start();
    assert_eq!(client.jsapi(&order("T20261202000131", 500, NOTIFY)).status, 200);
    let resp = client.refund(&refund_body(("out_trade_no", "T20261202000131"), "R20261202000131", 100, 500, None));
    assert_eq!((resp.status, resp.code()), (400, "INVALID_REQUEST"), "{}", resp.body);
    assert!(resp.json["message"].as_str().is_some_and(|m| m.contains("未支付")), "refused as unpaid: {}", resp.body);
    assert_eq!(client.close("T20261202000131").status, 204);
    let resp = client.refund(&refund_body(("out_trade_no", "T20261202000131"), "R20261202000131", 100, 500, None));
    assert_eq!(resp.code(), "INVALID_REQUEST");
    assert_eq!(client.query_refund("R20261202000131").code(), "RESOURCE_NOT_EXISTS");
}

/// Verifies and decrypts a refund notification, returning its event_type and plaintext.
fn open_refund(r: &Received) -> (String, Value) {
    let signed = Signed {
        timestamp: r.header("Wechatpay-Timestamp"),
        nonce: r.header("Wechatpay-Nonce"),
        signature: r.header("Wechatpay-Signature"),
        serial: r.header("Wechatpay-Serial"),
        body: &r.body,
    };
    verifier().verify(&signed, crate::pay::unix_now()).expect("the notification verifies");
    let envelope: Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(envelope["resource_type"], "encrypt-resource");
    assert_eq!(envelope["resource"]["original_type"], "refund");
    assert_eq!(envelope["resource"]["algorithm"], "AEAD_AES_256_GCM");
    let resource: Resource = serde_json::from_value(envelope["resource"].clone()).expect("resource");
    let key = ApiV3Key::new(TEST_APIV3_KEY.as_bytes()).expect("key");
    let plain = serde_json::from_slice(&resource.decrypt(&key).expect("decrypts")).expect("json");
    (envelope["event_type"].as_str().unwrap_or("").to_string(), plain)
}

#[test]
fn a_refund_notification_verifies_and_decrypts() {
    let (_fake, client) = start();
    let (url, rx) = receiver(204);
    let transaction_id = client.paid_order("T20261202000141", 800, NOTIFY);
    let created =
        client.refund(&refund_body(("out_trade_no", "T20261202000141"), "R20261202000141", 300, 800, Some(&url)));
    assert_eq!(created.status, 200, "{}", created.body);
    let (event, r) = open_refund(&next(&rx));
    assert_eq!(event, "REFUND.SUCCESS");
    assert_eq!(r["refund_status"], "SUCCESS");
    assert_eq!(r["mchid"], TEST_MCHID);
    assert_eq!(r["out_trade_no"], "T20261202000141");
    assert_eq!(r["transaction_id"], transaction_id.as_str());
    assert_eq!(r["out_refund_no"], "R20261202000141");
    assert_eq!(r["refund_id"], created.json["refund_id"]);
    assert_eq!(r["amount"], json!({"total": 800, "refund": 300, "payer_total": 800, "payer_refund": 300}));
    assert!(r["success_time"].as_str().is_some_and(|t| t.ends_with("+08:00")));
    assert!(r.get("appid").is_none(), "a refund notification carries no appid: {r}");
    let list = wait_for_deliveries_where(&client, "out_refund_no=R20261202000141", 1);
    assert_eq!((list[0]["event_type"].as_str(), list[0]["ok"].as_bool()), (Some("REFUND.SUCCESS"), Some(true)));

    // Delivered again on demand, twice at once.
    let (status, v) = client
        .control("/__fake/pay/notify", json!({"out_refund_no": "R20261202000141", "mode": "concurrent", "wait": true}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(open_refund(&next(&rx)).1, r);
    assert_eq!(open_refund(&next(&rx)).1, r);
    let (status, _) =
        client.control("/__fake/pay/notify", json!({"out_refund_no": "R20261202000141", "out_trade_no": "x"}));
    assert_eq!(status, 400);
}

fn wait_for_deliveries_where(client: &Client, query: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let list = client.deliveries_where(query);
        if list.len() >= n {
            return list;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("fewer than {n} deliveries recorded for {query}");
}

#[test]
fn a_refund_that_fails_then_closes_and_one_that_stays_processing_until_told() {
    let (_fake, client) = start();
    let (url, rx) = receiver(204);
    client.paid_order("T20261202000151", 600, NOTIFY);
    let (status, v) = client.control("/__fake/pay/refunds/next", json!({"outcome": "abnormal"}));
    assert_eq!(status, 200, "{v}");
    let body = refund_body(("out_trade_no", "T20261202000151"), "R20261202000151", 600, 600, Some(&url));
    assert_eq!(client.refund(&body).status, 200);
    assert_eq!(client.query_refund("R20261202000151").json["status"], "ABNORMAL");
    let (event, r) = open_refund(&next(&rx));
    assert_eq!((event.as_str(), r["refund_status"].as_str()), ("REFUND.ABNORMAL", Some("ABNORMAL")));
    assert!(r.get("success_time").is_none());
    // An abnormal refund still holds the money.
    let more = client.refund(&refund_body(("out_trade_no", "T20261202000151"), "R20261202000152", 1, 600, None));
    assert_eq!(more.code(), "INVALID_REQUEST", "{}", more.body);
    assert_eq!(client.query("T20261202000151").json["trade_state"], "SUCCESS");
    // ABNORMAL is not final: closed, the money is free again.
    let (status, v) =
        client.control("/__fake/pay/refund", json!({"out_refund_no": "R20261202000151", "outcome": "closed"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(open_refund(&next(&rx)).0, "REFUND.CLOSED");
    assert_eq!(client.query_refund("R20261202000151").json["status"], "CLOSED");
    let (status, _) =
        client.control("/__fake/pay/refund", json!({"out_refund_no": "R20261202000151", "outcome": "success"}));
    assert_eq!(status, 409, "a closed refund is final");

    let (status, _) = client.control("/__fake/pay/refunds/next", json!({"outcome": "processing"}));
    assert_eq!(status, 200);
    let body = refund_body(("out_trade_no", "T20261202000151"), "R20261202000153", 600, 600, Some(&url));
    assert_eq!(client.refund(&body).status, 200);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(client.query_refund("R20261202000153").json["status"], "PROCESSING");
    assert!(client.deliveries_where("out_refund_no=R20261202000153").is_empty());
    let (status, _) = client.control("/__fake/pay/notify", json!({"out_refund_no": "R20261202000153"}));
    assert_eq!(status, 409, "nothing to notify while processing");
    let (status, v) = client.control(
        "/__fake/pay/refund",
        json!({"out_refund_no": "R20261202000153", "outcome": "success", "notify": {"wait": true}}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(client.query_refund("R20261202000153").json["status"], "SUCCESS");
    assert_eq!(open_refund(&next(&rx)).0, "REFUND.SUCCESS");
    assert_eq!(client.query("T20261202000151").json["trade_state"], "REFUND");
    // The next refund is back to the default: success at once.
    let (status, _) =
        client.control("/__fake/pay/refund", json!({"out_refund_no": "R20261202999999", "outcome": "success"}));
    assert_eq!(status, 404);
    let (status, _) = client.control("/__fake/pay/refunds/next", json!({"outcome": "later"}));
    assert_eq!(status, 400);
}

// ---- Platform certificates ----

/// One DER element: (tag, the whole element, its content, the rest).
fn der(input: &[u8]) -> (u8, &[u8], &[u8], &[u8]) {
    let (tag, first) = (input[0], input[1]);
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        (input[2..2 + n].iter().fold(0, |acc, b| acc << 8 | usize::from(*b)), 2 + n)
    };
    (tag, &input[..header + len], &input[header..header + len], &input[header + len..])
}

fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).expect("base64")
}

/// A certificate's serial (upper-case hex) and its SubjectPublicKeyInfo as a PEM.
fn serial_and_key(cert_pem: &str) -> (String, String) {
    let cert = pem_der(cert_pem);
    let (_, _, cert, _) = der(&cert);
    let (_, _, tbs, _) = der(cert);
    let (version, _, _, rest) = der(tbs);
    assert_eq!(version, 0xA0, "a v3 certificate");
    let (tag, _, serial, mut rest) = der(rest);
    assert_eq!(tag, 0x02);
    for _ in 0..4 {
        // signature algorithm, issuer, validity, subject
        rest = der(rest).3;
    }
    let (_, spki, _, _) = der(rest);
    let hex: String = serial.iter().skip_while(|b| **b == 0).map(|b| format!("{b:02X}")).collect();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, spki);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
    (hex, format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n")))
}

fn start_in(mode: PlatformMode) -> (FakeWeChat, Client) {
    let opts = FakeOptions {
        apps: vec![(APPID.into(), "secret".into())],
        pay: Some(FakePayOptions { allow_http_notify: true, platform_mode: mode, ..FakePayOptions::test() }),
        ..FakeOptions::default()
    };
    let fake = FakeWeChat::start("127.0.0.1:0", opts).expect("starts");
    let client = Client::new(&fake);
    (fake, client)
}

#[test]
fn the_committed_certificates_hold_the_committed_keys() {
    assert_eq!(
        serial_and_key(PLATFORM_CERT_PEM),
        (PLATFORM_CERT_SERIAL.to_string(), PLATFORM_PUBLIC_KEY_PEM.to_string())
    );
    assert_eq!(
        serial_and_key(PLATFORM2_CERT_PEM),
        (PLATFORM2_CERT_SERIAL.to_string(), PLATFORM2_PUBLIC_KEY_PEM.to_string())
    );
}

#[test]
fn certificates_decrypt_to_pem_certificates_of_the_serials_given() {
    let (_fake, client) = start_in(PlatformMode::Certificate);
    let resp = client.send("GET", "/v3/certificates", None, None);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let data = resp.json["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    let key = ApiV3Key::new(TEST_APIV3_KEY.as_bytes()).expect("key");
    let mut keys =
        PayVerifier::new(PLATFORM_PUBLIC_KEY_ID, VerifyingKey::from_pem(PLATFORM_PUBLIC_KEY_PEM).expect("pem"));
    for entry in data {
        let enc = &entry["encrypt_certificate"];
        assert_eq!(enc["associated_data"], "certificate");
        assert_eq!(enc["algorithm"], "AEAD_AES_256_GCM");
        let resource: Resource = serde_json::from_value(enc.clone()).expect("resource");
        let pem = String::from_utf8(resource.decrypt(&key).expect("decrypts with the APIv3 key")).expect("utf8");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
        let (serial, spki) = serial_and_key(&pem);
        assert_eq!(entry["serial_no"].as_str(), Some(serial.as_str()));
        for field in ["effective_time", "expire_time"] {
            assert!(entry[field].as_str().is_some_and(|t| t.ends_with("+08:00")), "{entry}");
        }
        keys.add(&serial, VerifyingKey::from_pem(&spki).expect("the certificate's key"));
    }
    // The answer itself, signed in certificate mode, verifies with a downloaded certificate.
    assert_eq!(resp.header("Wechatpay-Serial"), PLATFORM_CERT_SERIAL);
    resp.assert_signed_by(&keys);
    let wrong = ApiV3Key::new(b"0123456789abcdef0123456789abcdef").expect("key");
    let resource: Resource = serde_json::from_value(data[0]["encrypt_certificate"].clone()).expect("resource");
    assert!(resource.decrypt(&wrong).is_err());
}

/// A verifier that knows only one certificate's key, by its serial.
fn cert_verifier(cert_pem: &str) -> PayVerifier {
    let (serial, spki) = serial_and_key(cert_pem);
    PayVerifier::new(&serial, VerifyingKey::from_pem(&spki).expect("pem"))
}

#[test]
fn in_certificate_mode_answers_and_notifications_name_and_use_the_certificate() {
    let (_fake, client) = start_in(PlatformMode::Certificate);
    let (url, rx) = receiver(204);
    let resp = client.jsapi(&order("T20261202000161", 100, &url));
    assert_eq!(resp.header("Wechatpay-Serial"), PLATFORM_CERT_SERIAL);
    resp.assert_signed_by(&cert_verifier(PLATFORM_CERT_PEM));
    let (status, _) = client.control("/__fake/pay/pay", json!({"out_trade_no": "T20261202000161"}));
    assert_eq!(status, 200);
    let n = next(&rx);
    assert_eq!(n.header("Wechatpay-Serial"), PLATFORM_CERT_SERIAL);
    let signed = Signed {
        timestamp: n.header("Wechatpay-Timestamp"),
        nonce: n.header("Wechatpay-Nonce"),
        signature: n.header("Wechatpay-Signature"),
        serial: n.header("Wechatpay-Serial"),
        body: &n.body,
    };
    cert_verifier(PLATFORM_CERT_PEM).verify(&signed, crate::pay::unix_now()).expect("verifies");
    assert!(verifier().verify(&signed, crate::pay::unix_now()).is_err(), "the public key id is not its serial");
}

#[test]
fn mixed_mode_alternates_keys_and_the_mode_switches_mid_run() {
    let (_fake, client) = start();
    assert_eq!(client.query("T20261202999999").header("Wechatpay-Serial"), PLATFORM_PUBLIC_KEY_ID);
    let (status, v) = client.control("/__fake/pay/platform", json!({"mode": "mixed"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["mode"], "mixed");
    let mut both = verifier();
    let (serial2, spki2) = serial_and_key(PLATFORM2_CERT_PEM);
    both.add(&serial2, VerifyingKey::from_pem(&spki2).expect("pem"));
    let serials: Vec<String> = (0..4)
        .map(|_| {
            let resp = client.query("T20261202999999");
            resp.assert_signed_by(&both);
            resp.header("Wechatpay-Serial").to_string()
        })
        .collect();
    assert_eq!(serials, [PLATFORM2_CERT_SERIAL, PLATFORM_PUBLIC_KEY_ID, PLATFORM2_CERT_SERIAL, PLATFORM_PUBLIC_KEY_ID]);
    // The certificate side is another key: the public key does not verify it.
    let resp = client.query("T20261202999999");
    assert_eq!(resp.header("Wechatpay-Serial"), PLATFORM2_CERT_SERIAL);
    let mut public_only =
        PayVerifier::new(PLATFORM2_CERT_SERIAL, VerifyingKey::from_pem(PLATFORM_PUBLIC_KEY_PEM).expect("pem"));
    public_only.add(PLATFORM_PUBLIC_KEY_ID, VerifyingKey::from_pem(PLATFORM_PUBLIC_KEY_PEM).expect("pem"));
    let signed = Signed {
        timestamp: resp.header("Wechatpay-Timestamp"),
        nonce: resp.header("Wechatpay-Nonce"),
        signature: resp.header("Wechatpay-Signature"),
        serial: resp.header("Wechatpay-Serial"),
        body: resp.body.as_bytes(),
    };
    assert!(public_only.verify(&signed, crate::pay::unix_now()).is_err());

    let (status, _) = client.control("/__fake/pay/platform", json!({"mode": "certificate"}));
    assert_eq!(status, 200);
    assert_eq!(client.query("T20261202999999").header("Wechatpay-Serial"), PLATFORM_CERT_SERIAL);
    let (status, _) = client.control("/__fake/pay/platform", json!({"mode": "v2"}));
    assert_eq!(status, 400);
}

#[test]
fn refund_notifications_take_the_delivery_options() {
    let (_fake, client) = start();
    let (url, rx) = receiver(204);
    client.paid_order("T20261202000171", 900, NOTIFY);
    // Never: the refund succeeds, nothing is sent.
    let (status, _) =
        client.control("/__fake/pay/refunds/next", json!({"outcome": "success", "notify": {"mode": "never"}}));
    assert_eq!(status, 200);
    let body = refund_body(("out_trade_no", "T20261202000171"), "R20261202000171", 100, 900, Some(&url));
    assert_eq!(client.refund(&body).status, 200);
    assert_eq!(client.query_refund("R20261202000171").json["status"], "SUCCESS");
    // Late and twice, to a receiver named by the control request.
    let (late, late_rx) = receiver(204);
    let (status, _) = client.control(
        "/__fake/pay/refunds/next",
        json!({"outcome": "success", "notify": {"mode": "twice", "delay_ms": 3000, "to": late}}),
    );
    assert_eq!(status, 200);
    let body = refund_body(("out_trade_no", "T20261202000171"), "R20261202000172", 100, 900, Some(&url));
    assert_eq!(client.refund(&body).status, 200);
    assert!(client.deliveries_where("out_refund_no=R20261202000172").is_empty(), "nothing before the delay");
    assert_eq!(open_refund(&next(&late_rx)).1["out_refund_no"], "R20261202000172");
    assert_eq!(open_refund(&next(&late_rx)).1["out_refund_no"], "R20261202000172");
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err(), "neither refund went to its notify_url");
    // Retried when refused, every attempt recorded.
    let (refusing, refusing_rx) = receiver(500);
    let body = refund_body(("out_trade_no", "T20261202000171"), "R20261202000173", 100, 900, Some(&refusing));
    let (status, _) = client.control("/__fake/pay/refunds/next", json!({"outcome": "processing"}));
    assert_eq!(status, 200);
    assert_eq!(client.refund(&body).status, 200);
    let (status, _) = client.control(
        "/__fake/pay/refund",
        json!({"out_refund_no": "R20261202000173", "outcome": "success",
               "notify": {"retries": 2, "retry_interval_ms": 10, "wait": true}}),
    );
    assert_eq!(status, 200);
    let list = client.deliveries_where("out_refund_no=R20261202000173");
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(list.iter().all(|d| d["ok"] == false && d["event_type"] == "REFUND.SUCCESS"));
    for _ in 0..3 {
        open_refund(&next(&refusing_rx));
    }
}
