//! `PayClient` against a small WeChat Pay stand-in on loopback (std `TcpListener`): it
//! checks each request's `Authorization` with the merchant's public key, as WeChat Pay
//! does, and signs its answers with the fake platform key, or deliberately fails to.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use super::*;
use crate::pay::{sign, verify, SigningKey, VerifyingKey};

/// WeChat's documented test merchant (research/wechat-pay.md Appendix A).
const MERCHANT_KEY: &str = include_str!("../testdata/wechat_docs_merchant_key.pem");
const MERCHANT_PUBLIC_KEY: &str = include_str!("../testdata/wechat_docs_merchant_public_key.pem");
const MCHID: &str = "1900007291";
const MERCHANT_SERIAL: &str = "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB";
/// The fake WeChat Pay's platform key pair and the id the client trusts it under.
const PLATFORM_KEY: &str = include_str!("../testdata/fake_wechatpay_platform_key.pem");
const PLATFORM_PUBLIC_KEY: &str = include_str!("../testdata/fake_wechatpay_platform_public_key.pem");
const PLATFORM_KEY_ID: &str = "PUB_KEY_ID_fake";

/// Generous: CI is a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A request as the stand-in received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Whether its Authorization verified with the merchant's public key over the
    /// method, path, and body bytes received.
    signed_ok: bool,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// How the stand-in signs an answer.
#[derive(Clone, Copy, PartialEq)]
enum Sig {
    Good,
    Unsigned,
    /// A valid signature, by another key (the merchant's).
    OtherKey,
    /// Signed, then one byte of the body changed.
    Tampered,
    /// Signed by the platform key but naming a key id the client does not hold.
    WrongSerial,
}

enum Reply {
    Answer {
        status: u16,
        body: Vec<u8>,
        sig: Sig,
    },
    /// Read the request, answer nothing for a long while.
    Hang,
}

fn answer(status: u16, body: &str) -> Reply {
    Reply::Answer { status, body: body.as_bytes().to_vec(), sig: Sig::Good }
}

fn signed_as(sig: Sig, status: u16, body: &str) -> Reply {
    Reply::Answer { status, body: body.as_bytes().to_vec(), sig }
}

struct StandIn {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StandIn {
    fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        StandIn { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn client(&self, retries: u32) -> PayClient {
        client(&self.base, TIMEOUT, retries)
    }
}

fn client(base: &str, timeout: Duration, retries: u32) -> PayClient {
    let merchant = Merchant::new(MCHID, MERCHANT_SERIAL, SigningKey::from_pem(MERCHANT_KEY).expect("merchant key"))
        .expect("merchant");
    let platform = VerifyingKey::from_pem(PLATFORM_PUBLIC_KEY).expect("platform public key");
    PayClient::new(base, timeout, retries, Arc::new(merchant), Arc::new(PayVerifier::new(PLATFORM_KEY_ID, platform)))
}

/// One request per connection (the answer says `Connection: close`).
fn serve(stream: TcpStream, handler: &(dyn Fn(&Seen, usize) -> Reply + Send + Sync), log: &Mutex<Vec<Seen>>) {
    let Some(seen) = read_request(&stream) else { return };
    let index = {
        let mut log = log.lock().expect("lock");
        log.push(seen.clone());
        log.len() - 1
    };
    let reply = if seen.signed_ok {
        handler(&seen, index)
    } else {
        answer(401, r#"{"code":"SIGN_ERROR","message":"签名错误"}"#)
    };
    match reply {
        Reply::Hang => std::thread::sleep(Duration::from_secs(20)),
        Reply::Answer { status, body, sig } => write_answer(stream, status, body, sig),
    }
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse::<usize>().expect("content-length"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut seen = Seen { method, path, headers, body, signed_ok: false };
    seen.signed_ok = authorization_verifies(&seen);
    Some(seen)
}

/// What WeChat Pay checks of `Authorization`: the scheme, the merchant, and the signature
/// over the request as received.
fn authorization_verifies(seen: &Seen) -> bool {
    let Some(fields) = seen.header("Authorization").and_then(|h| h.strip_prefix("WECHATPAY2-SHA256-RSA2048 ")) else {
        return false;
    };
    let field =
        |name: &str| fields.split(',').find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"'));
    let (Some(mchid), Some(nonce), Some(signature), Some(timestamp), Some(serial)) =
        (field("mchid"), field("nonce_str"), field("signature"), field("timestamp"), field("serial_no"))
    else {
        return false;
    };
    let Ok(timestamp) = timestamp.parse::<i64>() else { return false };
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature) else { return false };
    let key = VerifyingKey::from_pem(MERCHANT_PUBLIC_KEY).expect("merchant public key");
    let message = sign::request_message(&seen.method, &seen.path, timestamp, nonce, &seen.body);
    mchid == MCHID
        && serial == MERCHANT_SERIAL
        && (unix_now() - timestamp).abs() < 300
        && key.verify(&message, &signature)
}

fn write_answer(mut stream: TcpStream, status: u16, mut body: Vec<u8>, sig: Sig) {
    let timestamp = unix_now().to_string();
    let nonce = crate::secrets::random_id(16);
    let signer = match sig {
        Sig::OtherKey => SigningKey::from_pem(MERCHANT_KEY),
        _ => SigningKey::from_pem(PLATFORM_KEY),
    }
    .expect("key");
    let signature = signer.sign_base64(&verify::response_message(&timestamp, &nonce, &body)).expect("signs");
    if sig == Sig::Tampered {
        // Still valid JSON: a digit or a capital letter becomes another one.
        let last = body.iter().rposition(u8::is_ascii_digit).or_else(|| body.iter().rposition(u8::is_ascii_uppercase));
        if let Some(i) = last {
            body[i] = match body[i] {
                b'9' => b'0',
                b'Z' => b'A',
                b => b + 1,
            };
        }
    }
    let serial = if sig == Sig::WrongSerial { "PUB_KEY_ID_other" } else { PLATFORM_KEY_ID };
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    head.push_str("Content-Type: application/json\r\nRequest-ID: 08F78BB5AF0610D9\r\n");
    if sig != Sig::Unsigned {
        head.push_str(&format!(
            "Wechatpay-Timestamp: {timestamp}\r\nWechatpay-Nonce: {nonce}\r\n\
             Wechatpay-Signature: {signature}\r\nWechatpay-Serial: {serial}\r\n"
        ));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
}

fn order() -> JsapiOrder<'static> {
    JsapiOrder {
        appid: "wxd678efh567hg6787",
        mchid: MCHID,
        description: "Image形象店-深圳腾大-QQ公仔",
        out_trade_no: "1217752501201407033233368018",
        time_expire: 1_528_425_296,
        attach: None,
        notify_url: "https://example.com/pay/notify",
        amount_total: 100,
        payer_openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    }
}

const PREPAY: &str = r#"{"prepay_id":"wx201410272009395522657a690389285100"}"#;

const PAID: &str = r#"{"mchid":"1900007291","appid":"wxd678efh567hg6787","out_trade_no":"T123456","transaction_id":"4200000001201407033233368018","trade_type":"JSAPI","trade_state":"SUCCESS","trade_state_desc":"支付成功","success_time":"2018-06-08T10:34:56+08:00","payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},"amount":{"total":100,"payer_total":90,"currency":"CNY","payer_currency":"CNY"}}"#;

// --- success -----------------------------------------------------------------------

#[test]
fn jsapi_returns_the_prepay_id_and_sends_exactly_what_it_signed() {
    let server = StandIn::start(|_, _| answer(200, PREPAY));
    let prepay_id = server.client(2).jsapi(&order()).expect("prepay id");
    assert_eq!(prepay_id, "wx201410272009395522657a690389285100");

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert!(request.signed_ok, "the Authorization verifies over the bytes received");
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/v3/pay/transactions/jsapi"));
    assert_eq!(request.header("Accept"), Some("application/json"));
    assert_eq!(request.header("Content-Type"), Some("application/json"));
    assert_eq!(request.header("Wechatpay-Serial"), Some(PLATFORM_KEY_ID));
    assert!(request.header("User-Agent").is_some_and(|ua| ua.starts_with("wxlogin/")));
    let body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({
            "appid": "wxd678efh567hg6787", "mchid": MCHID, "description": "Image形象店-深圳腾大-QQ公仔",
            "out_trade_no": "1217752501201407033233368018", "time_expire": "2018-06-08T10:34:56+08:00",
            "notify_url": "https://example.com/pay/notify",
            "amount": {"total": 100, "currency": "CNY"}, "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
        })
    );
}

#[test]
fn a_signature_over_other_bytes_is_refused_by_the_stand_in() {
    // The stand-in's check can fail: a request signed over another body is SIGN_ERROR.
    let mut seen = Seen {
        method: "POST".into(),
        path: "/v3/pay/transactions/jsapi".into(),
        headers: Vec::new(),
        body: br#"{"a":1}"#.to_vec(),
        signed_ok: false,
    };
    let merchant = Merchant::new(MCHID, MERCHANT_SERIAL, SigningKey::from_pem(MERCHANT_KEY).expect("key")).expect("m");
    let header = merchant.authorization("POST", "/v3/pay/transactions/jsapi", br#"{"a": 1}"#).expect("signs");
    seen.headers.push(("Authorization".into(), header));
    assert!(!authorization_verifies(&seen));
    let header = merchant.authorization("POST", "/v3/pay/transactions/jsapi", br#"{"a":1}"#).expect("signs");
    seen.headers[0].1 = header;
    assert!(authorization_verifies(&seen));
}

#[test]
fn attach_is_sent_when_given() {
    let server = StandIn::start(|_, _| answer(200, PREPAY));
    server.client(0).jsapi(&JsapiOrder { attach: Some("vip30"), ..order() }).expect("prepay id");
    let body: serde_json::Value = serde_json::from_slice(&server.seen()[0].body).expect("JSON body");
    assert_eq!(body["attach"], "vip30");
}

#[test]
fn query_signs_its_query_string_and_parses_the_transaction() {
    let server = StandIn::start(|_, _| answer(200, PAID));
    let t = server.client(0).query("T123456").expect("transaction");
    assert_eq!(t.trade_state, "SUCCESS");
    assert_eq!((t.amount_total, t.payer_total, t.success_time), (Some(100), Some(90), Some(1_528_425_296)));
    assert_eq!(t.transaction_id.as_deref(), Some("4200000001201407033233368018"));
    let seen = server.seen();
    assert!(seen[0].signed_ok);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/v3/pay/transactions/out-trade-no/T123456?mchid=1900007291")
    );
    assert!(seen[0].body.is_empty());
}

#[test]
fn a_base_with_a_path_is_part_of_what_is_signed() {
    let server = StandIn::start(|_, _| answer(200, PAID));
    let client = client(&format!("{}/wechatpay/", server.base), TIMEOUT, 0);
    client.query("T123456").expect("transaction");
    let seen = server.seen();
    assert!(seen[0].signed_ok);
    assert!(seen[0].path.starts_with("/wechatpay/v3/pay/transactions/out-trade-no/T123456?"));
}

#[test]
fn out_trade_nos_are_percent_encoded_and_signed_as_sent() {
    let server = StandIn::start(|_, _| answer(204, ""));
    server.client(0).close("A|B*c-1_2").expect("closed");
    let seen = server.seen();
    assert!(seen[0].signed_ok);
    assert_eq!(seen[0].path, "/v3/pay/transactions/out-trade-no/A%7CB*c-1_2/close");
}

#[test]
fn a_query_answered_about_another_order_is_not_believed() {
    let server = StandIn::start(|_, _| answer(200, PAID));
    assert_eq!(server.client(0).query("T999999"), Err(PayError::Unreadable));
}

#[test]
fn close_accepts_a_signed_204() {
    let server = StandIn::start(|_, _| answer(204, ""));
    assert_eq!(server.client(2).close("T123456"), Ok(()));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].signed_ok);
    assert_eq!(seen[0].path, "/v3/pay/transactions/out-trade-no/T123456/close");
    assert_eq!(seen[0].body, br#"{"mchid":"1900007291"}"#);
}

#[test]
fn values_that_cannot_go_into_a_url_are_refused_before_sending() {
    let server = StandIn::start(|_, _| answer(204, ""));
    for bad in ["", "a/../b\"", "订单", "a b", &"x".repeat(65)] {
        assert!(matches!(server.client(0).close(bad), Err(PayError::Invalid(_))), "{bad:?}");
    }
    assert!(matches!(
        server.client(0).jsapi(&JsapiOrder { time_expire: i64::MAX, ..order() }),
        Err(PayError::Invalid(_))
    ));
    assert!(server.seen().is_empty());
}

// --- refusals ------------------------------------------------------------------------

#[test]
fn refusals_keep_wechat_pays_status_and_code_and_are_not_retried() {
    for (status, code) in [(400, "PARAM_ERROR"), (401, "SIGN_ERROR"), (404, "ORDER_NOT_EXIST")] {
        let body = format!(r#"{{"code":"{code}","message":"商户号mchid 1900007291 与 appid 不匹配\r\nX-Evil: 1"}}"#);
        let server = StandIn::start(move |_, _| answer(status, &body));
        let err = server.client(2).query("T123456").expect_err("refused");
        assert_eq!(err, PayError::Refused { status, code: code.to_string() });
        assert_eq!(err.code(), Some(code));
        let shown = err.to_string();
        assert!(!shown.contains("商户号") && !shown.contains("appid") && !shown.contains("X-Evil"), "{shown}");
        assert_eq!(server.seen().len(), 1, "{code} is not retried");
    }
}

#[test]
fn an_error_body_without_a_code_in_form_is_unreadable() {
    for body in [r#"{"code":"bad code\r\n","message":"m"}"#, r#"{"message":"m"}"#, "<html>502</html>"] {
        let server = StandIn::start(move |_, _| answer(400, body));
        assert_eq!(server.client(0).jsapi(&order()), Err(PayError::Unreadable), "{body}");
    }
}

// --- answers not believed -----------------------------------------------------------

#[test]
fn answers_that_do_not_verify_are_unverified_and_not_retried() {
    for sig in [Sig::Unsigned, Sig::OtherKey, Sig::Tampered, Sig::WrongSerial] {
        let server = StandIn::start(move |_, _| signed_as(sig, 200, PREPAY));
        assert_eq!(server.client(2).jsapi(&order()), Err(PayError::Unverified));
        assert_eq!(server.seen().len(), 1);
        // Errors must verify too: an unsigned ORDER_NOT_EXIST is not believed either.
        let server = StandIn::start(move |_, _| signed_as(sig, 404, r#"{"code":"ORDER_NOT_EXIST","message":"m"}"#));
        assert_eq!(server.client(2).query("T123456"), Err(PayError::Unverified));
        // And so must an empty 204.
        let server = StandIn::start(move |_, _| signed_as(sig, 204, ""));
        let expected = if sig == Sig::Tampered { Ok(()) } else { Err(PayError::Unverified) };
        assert_eq!(server.client(2).close("T123456"), expected, "an empty body has no byte to tamper with");
    }
}

#[test]
fn a_signed_answer_that_is_not_json_is_unreadable() {
    let server = StandIn::start(|_, _| answer(200, "<html>ok</html>"));
    assert_eq!(server.client(2).jsapi(&order()), Err(PayError::Unreadable));
    let server = StandIn::start(|_, _| answer(200, r#"{"prepay_id":"wx1\"><script>"}"#));
    assert_eq!(server.client(2).jsapi(&order()), Err(PayError::Unreadable));
    let server = StandIn::start(|_, _| answer(200, "{}"));
    assert_eq!(server.client(2).query("T123456"), Err(PayError::Unreadable));
    assert_eq!(server.seen().len(), 1, "not retried");
}

// --- transient failures ---------------------------------------------------------------

#[test]
fn server_errors_are_retried_then_given_up() {
    let server = StandIn::start(|_, _| answer(500, r#"{"code":"SYSTEM_ERROR","message":"系统错误"}"#));
    let err = server.client(2).jsapi(&order()).expect_err("given up");
    assert_eq!(err, PayError::Refused { status: 500, code: "SYSTEM_ERROR".into() });
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "the first attempt and two retries");
    assert!(seen.iter().all(|s| s.body == seen[0].body && s.signed_ok), "every attempt sends the same bytes");

    let server = StandIn::start(|_, _| signed_as(Sig::Unsigned, 502, "<html>Bad Gateway</html>"));
    assert_eq!(server.client(1).jsapi(&order()), Err(PayError::Unverified));
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn a_server_error_then_an_answer_succeeds() {
    let server = StandIn::start(|_, index| {
        if index == 0 {
            answer(503, r#"{"code":"SYSTEM_ERROR","message":"busy"}"#)
        } else {
            answer(200, PREPAY)
        }
    });
    assert_eq!(server.client(2).jsapi(&order()).as_deref(), Ok("wx201410272009395522657a690389285100"));
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn a_hang_times_out_and_retries_are_bounded() {
    let server = StandIn::start(|_, _| Reply::Hang);
    let client = client(&server.base, Duration::from_millis(500), 1);
    let started = Instant::now();
    assert_eq!(client.query("T123456"), Err(PayError::Timeout));
    // Two attempts of 0.5 s and a backoff; the stand-in would hang 20 s per attempt.
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(server.seen().len(), 2, "one retry, no more");
}

#[test]
fn a_refused_connection_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    assert_eq!(client(&base, TIMEOUT, 1).close("T123456"), Err(PayError::Unreachable));
}

#[test]
fn log_text_from_the_other_side_is_one_line() {
    assert_eq!(clean("a\r\nb\u{7}c\u{1b}[31m", 200), "abc[31m");
    assert_eq!(clean(&"é".repeat(300), 200).chars().count(), 200);
}

// --- refunds ----------------------------------------------------------------------------

/// A refund answer as wechatpay-go `refunddomestic.Refund` has it (research §7).
const REFUND: &str = r#"{"refund_id":"50000000382019052709732678859","out_refund_no":"RF-0001","transaction_id":"4200000001201407033233368018","out_trade_no":"T123456","channel":"ORIGINAL","user_received_account":"支付用户零钱","create_time":"2018-06-08T10:34:56+08:00","status":"PROCESSING","funds_account":"AVAILABLE","amount":{"total":100,"refund":40,"from":[],"payer_total":100,"payer_refund":40,"settlement_total":100,"settlement_refund":40,"discount_refund":0,"currency":"CNY","refund_fee":0},"promotion_detail":[]}"#;

fn refund_request() -> RefundRequest<'static> {
    RefundRequest {
        out_trade_no: "T123456",
        out_refund_no: "RF-0001",
        reason: Some("partial"),
        notify_url: "https://example.com/pay/notify",
        refund: 40,
        total: 100,
    }
}

#[test]
fn refund_sends_the_signed_request_and_retries_the_same_bytes() {
    let server = StandIn::start(|_, index| {
        if index == 0 {
            answer(500, r#"{"code":"SYSTEM_ERROR","message":"busy"}"#)
        } else {
            answer(200, REFUND)
        }
    });
    let r = server.client(2).refund(&refund_request()).expect("refund");
    assert_eq!((r.status.as_str(), r.amount_refund, r.amount_total), ("PROCESSING", 40, 100));
    assert_eq!(r.refund_id, "50000000382019052709732678859");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.signed_ok && s.body == seen[0].body), "a retry is the same out_refund_no");
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("POST", "/v3/refund/domestic/refunds"));
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({
            "out_trade_no": "T123456", "out_refund_no": "RF-0001", "reason": "partial",
            "notify_url": "https://example.com/pay/notify",
            "amount": {"refund": 40, "total": 100, "currency": "CNY"}
        })
    );
}

#[test]
fn query_refund_reads_the_refund_and_believes_only_signed_answers_about_it() {
    let server = StandIn::start(|_, _| answer(200, REFUND));
    let r = server.client(0).query_refund("RF-0001").expect("refund");
    assert_eq!(r.out_trade_no, "T123456");
    assert_eq!(server.seen()[0].path, "/v3/refund/domestic/refunds/RF-0001");
    assert_eq!(server.client(0).query_refund("RF-0002"), Err(PayError::Unreadable), "another refund");
    let server = StandIn::start(|_, _| signed_as(Sig::OtherKey, 200, REFUND));
    assert_eq!(server.client(0).query_refund("RF-0001"), Err(PayError::Unverified));
    let server = StandIn::start(|_, _| answer(404, r#"{"code":"RESOURCE_NOT_EXISTS","message":"退款单不存在"}"#));
    assert_eq!(
        server.client(0).query_refund("RF-0001"),
        Err(PayError::Refused { status: 404, code: "RESOURCE_NOT_EXISTS".into() })
    );
}
