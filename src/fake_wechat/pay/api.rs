//! `/v3/pay/transactions/...`: each request checked in the order WeChat Pay checks it
//! (who signed, then what was asked), each answer signed.
//!
//! Status codes and error codes: `PARAM_ERROR` 400, `SIGN_ERROR` 401, `NO_AUTH` 403,
//! `ORDER_NOT_EXIST` 404, `RATELIMIT_EXCEEDED` 429, `SYSTEM_ERROR` 500 and the
//! `{"code","message"}` shape are research §2.4 (pay.weixin.qq.com/docs/merchant/development/
//! interface-rules/basic-rules.html); `APPID_MCHID_NOT_MATCH` research §3. NOT verified
//! against the docs' per-API error tables (research "Open points": the duplicate-order code
//! was not collected): `OUT_TRADE_NO_USED` 403 for a reused out_trade_no, `ORDERPAID` and
//! `ORDER_CLOSED` 400, `MCH_NOT_EXISTS` 400 for an unknown signer, and an old timestamp or
//! wrong `serial_no` as 401 `SIGN_ERROR` are the fake's best reading; clients must treat
//! any of them as a refusal by code, not by status.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::pay::sign::request_message;
use crate::pay::verify::WINDOW_SECONDS;

use super::super::behaviour::HANG;
use super::super::reply::Reply;
use super::orders::{new_prepay_id, Order, OrderRequest, TradeState, DEFAULT_EXPIRY, PREPAY_TTL};
use super::platform::Signer;
use super::wire::{error_body, parse_authorization, parse_rfc3339, signed_reply};
use super::{refunds, PayFailure, PayFake};

/// The APIs, by the names `GET /__fake/pay/stats` counts them under.
pub(crate) const APIS: [&str; 7] =
    ["jsapi", "query_out_trade_no", "query_id", "close", "refund", "query_refund", "certificates"];

/// The request headers WeChat Pay looks at.
#[derive(Debug, Default)]
pub(crate) struct Headers {
    pub authorization: Option<String>,
    pub accept: Option<String>,
    pub user_agent: Option<String>,
    pub content_type: Option<String>,
}

/// A refusal: status, WeChat Pay's code, and a message (the real messages are Chinese
/// and vary; clients must key off `code`).
pub(crate) struct Refusal(pub u16, pub &'static str, pub String);

pub(crate) type Answer = Result<(u16, Option<Value>), Refusal>;

pub(crate) fn param(message: impl Into<String>) -> Refusal {
    Refusal(400, "PARAM_ERROR", message.into())
}

/// Answers a request under `/v3/`, or fails as `POST /__fake/pay/behaviour` asked.
pub(crate) fn handle(pay: &Arc<PayFake>, method: &str, url: &str, headers: &Headers, body: &[u8]) -> Reply {
    let now = pay.clock.now();
    let path = url.split_once('?').map_or(url, |(p, _)| p);
    let failure = api_of(path).and_then(|(api, _)| pay.lock().take_failure(api));
    // One signer per answer: in mixed mode every signature alternates keys.
    let signer = pay.platform.signer();
    let early = match failure {
        Some(PayFailure::Code(status, code)) => Some(Err(Refusal(status, code, "injected by the fake".into()))),
        Some(PayFailure::Http500) => {
            // A gateway's page: unsigned and not JSON.
            let body = "<html><body>502 Bad Gateway</body></html>".to_string();
            return Reply { status: 500, content_type: "text/html", body, delay: None, headers: Vec::new() };
        }
        Some(PayFailure::Hang) => {
            let reply = signed_reply(signer, now, 500, Some(&error_body("SYSTEM_ERROR", "系统错误")));
            return Reply { delay: Some(HANG), ..reply };
        }
        _ => None,
    };
    let answer = early.unwrap_or_else(|| route(pay, method, url, headers, body, now));
    let (status, value) = match answer {
        Ok(ok) => ok,
        Err(Refusal(status, code, message)) => (status, Some(error_body(code, &message))),
    };
    let mut reply = signed_reply(signer, now, status, value.as_ref());
    match failure {
        Some(PayFailure::Unsigned) => reply.headers.retain(|(name, _)| !name.starts_with("Wechatpay-")),
        Some(PayFailure::BadSignature) => {
            // The signature of another body: what a tampered answer looks like.
            let other = signed_reply(signer, now, status, Some(&serde_json::json!({"tampered": true})));
            reply.headers = other.headers;
        }
        Some(PayFailure::Garbage) => reply = signed_text(signer, now, "<xml>not json</xml>"),
        _ => {}
    }
    reply
}

fn signed_text(signer: Signer<'_>, now: i64, text: &str) -> Reply {
    let mut reply = signed_reply(signer, now, 200, None);
    let sig = signer.key.sign_base64(&crate::pay::verify::response_message(
        &now.to_string(),
        reply.headers.iter().find(|(n, _)| *n == "Wechatpay-Nonce").map_or("", |(_, v)| v.as_str()),
        text.as_bytes(),
    ));
    reply.headers.retain(|(n, _)| *n != "Wechatpay-Signature");
    if let Ok(sig) = sig {
        reply.headers.push(("Wechatpay-Signature", sig));
    }
    reply.body = text.to_string();
    reply
}

/// The API a path names, and whether it takes POST.
pub(crate) fn api_of(path: &str) -> Option<(&'static str, bool)> {
    // research §7 (refunds) and §5 (certificates).
    match path {
        "/v3/refund/domestic/refunds" => return Some(("refund", true)),
        "/v3/certificates" => return Some(("certificates", false)),
        p if p.starts_with("/v3/refund/domestic/refunds/") => return Some(("query_refund", false)),
        _ => {}
    }
    match path.strip_prefix("/v3/pay/transactions/")? {
        "jsapi" => Some(("jsapi", true)),
        rest if rest.starts_with("out-trade-no/") && rest.ends_with("/close") => Some(("close", true)),
        rest if rest.starts_with("out-trade-no/") => Some(("query_out_trade_no", false)),
        rest if rest.starts_with("id/") => Some(("query_id", false)),
        _ => None,
    }
}

fn route(pay: &Arc<PayFake>, method: &str, url: &str, headers: &Headers, body: &[u8], now: i64) -> Answer {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    // WeChat Pay answers an unknown path 404 NOT_FOUND (research §2.4's error shape).
    let (api, post) = api_of(path).ok_or_else(|| Refusal(404, "NOT_FOUND", format!("no such API: {path}")))?;
    *pay.lock().calls.entry(api).or_insert(0) += 1;
    let wanted = if post { "POST" } else { "GET" };
    if method != wanted {
        return Err(Refusal(405, "METHOD_NOT_ALLOWED", format!("{path} takes {wanted}")));
    }
    let mchid = authenticate(pay, method, url, headers, body, now)?;
    let query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    match api {
        "jsapi" => jsapi(pay, &mchid, headers, body, now),
        "close" => {
            let no = path_segment(path, "/v3/pay/transactions/out-trade-no/", "/close")?;
            close(pay, &mchid, headers, body, &no)
        }
        "refund" => refunds::create(pay, &mchid, headers, body, now),
        "query_refund" => {
            let no = path_segment(path, "/v3/refund/domestic/refunds/", "")?;
            refunds::query(pay, &no)
        }
        "certificates" => {
            let body = pay
                .platform
                .certificates_body(&pay.opts.apiv3_key)
                .map_err(|e| Refusal(500, "SYSTEM_ERROR", format!("cannot encrypt the certificates: {e}")))?;
            Ok((200, Some(body)))
        }
        "query_out_trade_no" => {
            let no = path_segment(path, "/v3/pay/transactions/out-trade-no/", "")?;
            check_query_mchid(&query, &mchid)?;
            let inner = pay.lock();
            let order = inner.orders.get(&no).ok_or_else(not_exist)?;
            Ok((200, Some(order.transaction())))
        }
        _ => {
            let id = path_segment(path, "/v3/pay/transactions/id/", "")?;
            check_query_mchid(&query, &mchid)?;
            let inner = pay.lock();
            // research §7 (query page): an unpaid order has no transaction_id to ask by.
            let order = inner.orders.by_transaction_id(&id).ok_or_else(not_exist)?;
            Ok((200, Some(order.transaction())))
        }
    }
}

pub(crate) fn not_exist() -> Refusal {
    Refusal(404, "ORDER_NOT_EXIST", "订单不存在".into())
}

pub(crate) fn path_segment(path: &str, prefix: &str, suffix: &str) -> Result<String, Refusal> {
    let raw = path.strip_prefix(prefix).and_then(|r| r.strip_suffix(suffix)).unwrap_or("");
    let decoded: String = percent_decode(raw);
    if decoded.is_empty() || decoded.contains('/') {
        return Err(param("the path must name one order"));
    }
    Ok(decoded)
}

fn percent_decode(raw: &str) -> String {
    form_urlencoded::parse(format!("x={}", raw.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The query APIs take `?mchid=`, which must be the signer's (research §7).
fn check_query_mchid(query: &[(String, String)], mchid: &str) -> Result<(), Refusal> {
    match query.iter().find(|(k, _)| k == "mchid") {
        None => Err(param("mchid is required in the query string")),
        Some((_, m)) if m != mchid => Err(param("mchid in the query is not the Authorization's mchid")),
        Some(_) => Ok(()),
    }
}

/// Who is asking, checked as WeChat Pay does: the headers every call needs, then the
/// Authorization header (research §2), the merchant, the certificate serial, the time
/// window and the signature over the bytes received. Returns the signer's mchid.
fn authenticate(pay: &PayFake, method: &str, url: &str, h: &Headers, body: &[u8], now: i64) -> Result<String, Refusal> {
    // research §2.4: "Http头缺少Accept或User-Agent" is refused before anything else.
    if h.accept.as_deref().is_none_or(str::is_empty) || h.user_agent.as_deref().is_none_or(str::is_empty) {
        return Err(Refusal(400, "INVALID_REQUEST", "Http头缺少Accept或User-Agent".into()));
    }
    let header = h.authorization.as_deref().ok_or_else(|| sign_error("the Authorization header is missing"))?;
    let auth = parse_authorization(header).map_err(|m| sign_error(&m))?;
    if auth.mchid != pay.opts.mchid {
        return Err(Refusal(400, "MCH_NOT_EXISTS", format!("商户号不存在: {}", auth.mchid)));
    }
    if let Some(serial) = &pay.opts.merchant_serial {
        if &auth.serial_no != serial {
            return Err(sign_error("serial_no is not the merchant's API certificate serial"));
        }
    }
    // research §2.1: Unix seconds; the SDKs' window is 5 minutes (research §5, rule 2).
    let timestamp: i64 = auth
        .timestamp
        .parse()
        .ok()
        .filter(|_| auth.timestamp.bytes().all(|b| b.is_ascii_digit()) && auth.timestamp.len() <= 10)
        .ok_or_else(|| sign_error("timestamp is not Unix seconds"))?;
    if (now - timestamp).abs() > WINDOW_SECONDS {
        return Err(sign_error("timestamp is more than 5 minutes off"));
    }
    let signature = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &auth.signature)
        .map_err(|_| sign_error("signature is not base64"))?;
    let message = request_message(method, url, timestamp, &auth.nonce_str, body);
    if auth.timestamp != timestamp.to_string() || !pay.opts.merchant_public_key.verify(&message, &signature) {
        return Err(sign_error("the signature does not verify with the merchant's public key"));
    }
    Ok(auth.mchid)
}

fn sign_error(message: &str) -> Refusal {
    Refusal(401, "SIGN_ERROR", format!("签名错误: {message}"))
}

/// research §2.4: bodies are `application/json`.
pub(crate) fn check_json_body(h: &Headers) -> Result<(), Refusal> {
    let ok =
        h.content_type.as_deref().is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("application/json"));
    if ok {
        Ok(())
    } else {
        Err(Refusal(400, "INVALID_REQUEST", "Content-Type must be application/json".into()))
    }
}

pub(crate) fn parse_body(body: &[u8]) -> Result<Value, Refusal> {
    let value: Value = serde_json::from_slice(body).map_err(|e| param(format!("the body is not JSON: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(param("the body must be a JSON object"))
    }
}

/// A string field: required or not, at most `max` characters (research §3 gives each
/// field's `string(n)`), and never 4-byte UTF-8 (research §2.4: "1-3 bytes" only).
pub(crate) fn text(v: &Value, field: &str, max: usize, required: bool) -> Result<Option<String>, Refusal> {
    let found = field.split('.').try_fold(v, |v, k| v.get(k));
    match found {
        None | Some(Value::Null) if required => Err(param(format!("{field} is required"))),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if s.is_empty() && required {
                return Err(param(format!("{field} is empty")));
            }
            if s.chars().count() > max {
                return Err(param(format!("{field} is longer than {max} characters")));
            }
            if s.chars().any(|c| c.len_utf8() > 3) {
                return Err(param(format!("{field} holds a 4-byte UTF-8 character")));
            }
            Ok(Some(s.clone()))
        }
        Some(_) => Err(param(format!("{field} must be a string"))),
    }
}

/// `POST /v3/pay/transactions/jsapi` (research §3).
fn jsapi(pay: &PayFake, mchid: &str, h: &Headers, body: &[u8], now: i64) -> Answer {
    check_json_body(h)?;
    let v = parse_body(body)?;
    let request = order_request(pay, &v)?;
    if request.mchid != mchid {
        return Err(param("mchid is not the Authorization's mchid"));
    }
    if !pay.appid_bound(&request.appid) {
        // research §3: "appid and mchid not match" (binding missing).
        return Err(Refusal(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配".into()));
    }
    let time_expire = match &request.time_expire {
        None => None,
        Some(text) => {
            Some(parse_rfc3339(text).ok_or_else(|| param("time_expire is not RFC 3339 (2015-05-20T13:29:35+08:00)"))?)
        }
    };
    let mut inner = pay.lock();
    if let Some(order) = inner.orders.get_mut(&request.out_trade_no) {
        match order.state {
            TradeState::Success | TradeState::Refund => return Err(Refusal(400, "ORDERPAID", "该订单已支付".into())),
            TradeState::Closed => return Err(Refusal(400, "ORDER_CLOSED", "订单已关闭".into())),
            TradeState::NotPay => {}
        }
        if order.request != request {
            // The same out_trade_no with other parameters (research §3: unique per mchid).
            return Err(Refusal(403, "OUT_TRADE_NO_USED", "商户订单号重复".into()));
        }
        if now >= order.expires_at {
            return Err(Refusal(400, "ORDER_CLOSED", "订单已过期,请使用新的商户订单号".into()));
        }
        // research §3: the same parameters again give the order's current prepay_id,
        // which lives 2 hours.
        if now - order.prepay_at >= PREPAY_TTL {
            order.prepay_id = new_prepay_id(now);
            order.prepay_at = now;
        }
        return Ok((200, Some(json!({"prepay_id": order.prepay_id}))));
    }
    // research §3: time_expire at least 1 minute after the order (checked for new orders:
    // an existing order is refused for what it is, above).
    let expires_at = match time_expire {
        None => now + DEFAULT_EXPIRY,
        Some(at) if at < now + 60 => return Err(param("time_expire must be at least 1 minute from now")),
        Some(at) => at,
    };
    let prepay_id = new_prepay_id(now);
    inner.orders.insert(Order {
        request,
        expires_at,
        prepay_id: prepay_id.clone(),
        prepay_at: now,
        state: TradeState::NotPay,
        transaction_id: None,
        success_time: None,
    });
    Ok((200, Some(json!({"prepay_id": prepay_id}))))
}

/// The fields of research §3's table, each checked against its rule.
fn order_request(pay: &PayFake, v: &Value) -> Result<OrderRequest, Refusal> {
    let req = |f: &str, max: usize| text(v, f, max, true).map(Option::unwrap_or_default);
    let appid = req("appid", 32)?;
    let mchid = req("mchid", 32)?;
    let description = req("description", 127)?;
    let out_trade_no = req("out_trade_no", 32)?;
    // research §3: 6-32 characters of [0-9A-Za-z_-|*].
    let good_no = out_trade_no.len() >= 6
        && out_trade_no.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'));
    if !good_no {
        return Err(param("out_trade_no must be 6 to 32 characters of 0-9 A-Z a-z _ - | *"));
    }
    let time_expire = text(v, "time_expire", 64, false)?;
    let attach = text(v, "attach", 128, false)?;
    let notify_url = req("notify_url", 255)?;
    check_notify_url(&notify_url, pay.opts.allow_http_notify)?;
    let total = match v.get("amount").and_then(|a| a.get("total")) {
        None | Some(Value::Null) => return Err(param("amount.total is required")),
        Some(t) => t.as_i64().ok_or_else(|| param("amount.total must be an integer (fen)"))?,
    };
    if !(1..=1_000_000_000).contains(&total) {
        return Err(param("amount.total must be 1 to 1000000000 fen"));
    }
    // research §3: CNY is the only currency of a domestic merchant.
    if let Some(currency) = text(v, "amount.currency", 16, false)? {
        if currency != "CNY" {
            return Err(param("amount.currency must be CNY"));
        }
    }
    let openid = req("payer.openid", 128)?;
    Ok(OrderRequest { appid, mchid, description, out_trade_no, time_expire, attach, notify_url, total, openid })
}

/// research §3: "HTTPS, no query parameters". Plain http only when the fake was started
/// to allow it (tests and `demo` receive on loopback); real WeChat Pay never allows it.
pub(crate) fn check_notify_url(url: &str, allow_http: bool) -> Result<(), Refusal> {
    let rest = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => rest,
        (None, Some(rest)) if allow_http => rest,
        _ => return Err(param("notify_url must be an https:// URL")),
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || url.contains('?') || url.contains('#') || url.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(param("notify_url must be an absolute URL with a host and no query string"));
    }
    Ok(())
}

/// `POST /v3/pay/transactions/out-trade-no/{no}/close` `{"mchid"}` → 204 (research §7).
fn close(pay: &PayFake, mchid: &str, h: &Headers, body: &[u8], no: &str) -> Answer {
    check_json_body(h)?;
    let v = parse_body(body)?;
    let body_mchid = text(&v, "mchid", 32, true)?.unwrap_or_default();
    if body_mchid != mchid {
        return Err(param("mchid is not the Authorization's mchid"));
    }
    let mut inner = pay.lock();
    let order = inner.orders.get_mut(no).ok_or_else(not_exist)?;
    match order.state {
        TradeState::Success | TradeState::Refund => Err(Refusal(400, "ORDERPAID", "订单已支付,不能关单".into())),
        // Closing a closed order again changes nothing and succeeds.
        TradeState::Closed | TradeState::NotPay => {
            order.state = TradeState::Closed;
            Ok((204, None))
        }
    }
}
