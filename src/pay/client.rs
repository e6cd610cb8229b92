//! The WeChat Pay HTTP client (APIv3): JSAPI orders, queries, closes and refunds.
//!
//! Each request is signed over the exact bytes then sent (`Merchant::authorization`), and
//! each answer, errors and 204s included, must carry a `Wechatpay-*` signature that
//! verifies with the configured WeChat Pay key before anything in it is read: an answer
//! that does not is [`PayError::Unverified`], whatever its status.
//!
//! Timeouts and retries follow the WeChat client (`wechat.timeout_ms` per attempt, up to
//! `wechat.retries` more attempts, backing off 100 ms, 200 ms ...). Retried: connection
//! failures, timeouts and HTTP 5xx, which may or may not have taken effect. That is safe
//! for all three calls: a query and a close change nothing the second time, and a JSAPI
//! order sent again with the same `out_trade_no` and the same parameters (the body is
//! built once, so every attempt sends the same bytes) is answered by WeChat Pay with the
//! order's existing `prepay_id` (research/wechat-pay.md §3). A 4xx is WeChat Pay's
//! decision and is never retried; neither is a 2xx that does not verify (someone else
//! is answering). A refund is retried with the same body, so the same `out_refund_no`:
//! WeChat Pay refunds once for it (research §7), where a new number would refund again.
//!
//! Bodies hold openids, so they are never logged. WeChat Pay's `Request-ID`, what its
//! support asks for, is in every log line about an answer.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::certificates::{parse_certificates, CertificatesError};
use super::refund::{parse_refund, WeChatRefund};
use super::transaction::{is_id, parse_transaction};
use super::{rfc3339, unix_now, ApiV3Key, Merchant, PayError, PayVerifier, PlatformCertificate, Signed, Transaction};
use crate::wechat::agent::new_agent;
use crate::wechat::client::backoff;

/// WeChat Pay's answers are small JSON objects; anything bigger is not WeChat Pay.
const MAX_ANSWER_BYTES: u64 = 256 * 1024;
/// Payments are rare next to logins: a few pooled connections are plenty.
const IDLE_CONNECTIONS: usize = 8;

#[derive(Clone)]
pub struct PayClient {
    agent: ureq::Agent,
    /// `scheme://host[:port][/prefix]`, no trailing `/`.
    base: String,
    /// The base's path (usually empty): WeChat Pay sees it, so it is part of what is signed.
    prefix: String,
    retries: u32,
    merchant: Arc<Merchant>,
    verifier: Arc<PayVerifier>,
}

/// A mini-program order (`POST /v3/pay/transactions/jsapi`, research/wechat-pay.md §3).
#[derive(Debug, Clone)]
pub struct JsapiOrder<'a> {
    pub appid: &'a str,
    pub mchid: &'a str,
    pub description: &'a str,
    pub out_trade_no: &'a str,
    /// Unix seconds; sent as RFC 3339 at +08:00.
    pub time_expire: i64,
    pub attach: Option<&'a str>,
    pub notify_url: &'a str,
    /// In fen, CNY.
    pub amount_total: i64,
    pub payer_openid: &'a str,
}

#[derive(Serialize)]
struct JsapiBody<'a> {
    appid: &'a str,
    mchid: &'a str,
    description: &'a str,
    out_trade_no: &'a str,
    time_expire: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    attach: Option<&'a str>,
    notify_url: &'a str,
    amount: Amount,
    payer: Payer<'a>,
}

#[derive(Serialize)]
struct Amount {
    total: i64,
    currency: &'static str,
}

#[derive(Serialize)]
struct Payer<'a> {
    openid: &'a str,
}

/// A refund (`POST /v3/refund/domestic/refunds`, research/wechat-pay.md §7).
#[derive(Debug, Clone)]
pub struct RefundRequest<'a> {
    pub out_trade_no: &'a str,
    pub out_refund_no: &'a str,
    pub reason: Option<&'a str>,
    pub notify_url: &'a str,
    /// In fen, CNY: what to refund, and the order's amount.
    pub refund: i64,
    pub total: i64,
}

#[derive(Serialize)]
struct RefundBody<'a> {
    out_trade_no: &'a str,
    out_refund_no: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    notify_url: &'a str,
    amount: RefundAmount,
}

#[derive(Serialize)]
struct RefundAmount {
    refund: i64,
    total: i64,
    currency: &'static str,
}

#[derive(Deserialize)]
struct Prepay {
    prepay_id: String,
}

/// WeChat Pay's error body.
#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: String,
}

/// One request, built once and sent as it is on every attempt.
struct Request {
    api: &'static str,
    method: &'static str,
    /// Path and query, percent-encoded, without the base's prefix.
    path: String,
    body: Option<Vec<u8>>,
}

/// When an answer's signature is checked: before `send` returns it, or by the caller
/// (`/v3/certificates`, whose answer may be signed by a certificate it carries; the
/// headers come back in `Answer::signature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Now,
    Deferred,
}

/// A verified answer (or, `Verify::Deferred`, one to verify).
struct Answer {
    status: u16,
    body: Vec<u8>,
    request_id: String,
    /// Timestamp, nonce, signature and serial, kept for a deferred verification.
    signature: Option<[String; 4]>,
}

/// One attempt's result, and whether another attempt may help.
struct Attempt {
    result: Result<Answer, PayError>,
    retry: bool,
}

impl PayClient {
    pub fn new(
        api_base: &str,
        timeout: Duration,
        retries: u32,
        merchant: Arc<Merchant>,
        verifier: Arc<PayVerifier>,
    ) -> PayClient {
        let base = api_base.trim_end_matches('/').to_string();
        let after_scheme = base.find("://").map_or(0, |i| i + 3);
        let prefix = base[after_scheme..].find('/').map_or("", |i| &base[after_scheme + i..]).to_string();
        PayClient { agent: new_agent(timeout, IDLE_CONNECTIONS), base, prefix, retries, merchant, verifier }
    }

    /// Places a JSAPI order and returns its `prepay_id`.
    pub fn jsapi(&self, o: &JsapiOrder<'_>) -> Result<String, PayError> {
        let time_expire = rfc3339::format_cst(o.time_expire).ok_or(PayError::Invalid("time_expire is out of range"))?;
        let body = JsapiBody {
            appid: o.appid,
            mchid: o.mchid,
            description: o.description,
            out_trade_no: o.out_trade_no,
            time_expire,
            attach: o.attach,
            notify_url: o.notify_url,
            amount: Amount { total: o.amount_total, currency: "CNY" },
            payer: Payer { openid: o.payer_openid },
        };
        let body = serde_json::to_vec(&body).map_err(|_| PayError::Invalid("the order does not serialise"))?;
        let request =
            Request { api: "jsapi", method: "POST", path: "/v3/pay/transactions/jsapi".into(), body: Some(body) };
        let answer = self.call(&request, &[200])?;
        let prepay: Prepay = serde_json::from_slice(&answer).map_err(|_| PayError::Unreadable)?;
        let well_formed = (1..=64).contains(&prepay.prepay_id.len())
            && prepay.prepay_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !well_formed {
            return Err(PayError::Unreadable);
        }
        Ok(prepay.prepay_id)
    }

    /// The order's state at WeChat Pay. An order WeChat Pay does not know is
    /// `Refused { status: 404, code: "ORDER_NOT_EXIST" }`.
    pub fn query(&self, out_trade_no: &str) -> Result<Transaction, PayError> {
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}?mchid={}",
            path_segment(out_trade_no)?,
            path_segment(self.merchant.mchid())?
        );
        let answer = self.call(&Request { api: "query", method: "GET", path, body: None }, &[200])?;
        let transaction = parse_transaction(&answer)?;
        if transaction.out_trade_no != out_trade_no || transaction.mchid != self.merchant.mchid() {
            log::warn!("wechat pay query: the answer is about another order or merchant");
            return Err(PayError::Unreadable);
        }
        Ok(transaction)
    }

    /// Closes an unpaid order (204). Closing a closed order changes nothing.
    pub fn close(&self, out_trade_no: &str) -> Result<(), PayError> {
        let path = format!("/v3/pay/transactions/out-trade-no/{}/close", path_segment(out_trade_no)?);
        let body = serde_json::to_vec(&serde_json::json!({ "mchid": self.merchant.mchid() }))
            .map_err(|_| PayError::Invalid("the close request does not serialise"))?;
        self.call(&Request { api: "close", method: "POST", path, body: Some(body) }, &[204, 200]).map(|_| ())
    }

    /// The platform certificates WeChat Pay lists now (`GET /v3/certificates`), decrypted
    /// with the APIv3 key; the answer's signature is verified with a key already trusted
    /// or, on the first fetch, with a certificate the answer itself carries (see
    /// `certificates.rs` for why that is sound). A refusal is believed only if it verifies
    /// with a key already trusted.
    pub fn certificates(&self, apiv3_key: &ApiV3Key) -> Result<Vec<PlatformCertificate>, FetchError> {
        let request = Request { api: "certificates", method: "GET", path: "/v3/certificates".into(), body: None };
        let answer = self.send_as(&request, Verify::Deferred)?;
        let Some([timestamp, nonce, signature, serial]) = &answer.signature else {
            return Err(FetchError::Pay(PayError::Unverified));
        };
        let signed = Signed { timestamp, nonce, signature, serial, body: &answer.body };
        let now = unix_now();
        let fetched = if answer.status == 200 {
            match parse_certificates(&answer.body, apiv3_key, now) {
                Ok(certificates) => certificates,
                // Nothing is trusted either way; an answer that does not decrypt (signed by
                // a key we hold or not) most likely means another APIv3 key.
                Err(e) => return Err(FetchError::Certificates(e)),
            }
        } else {
            Vec::new()
        };
        if let Err(e) = self.verifier.verify_also_with(&signed, now, &fetched) {
            if answer.status != 200 && self.verifier.key_id().is_none() {
                // Nothing could verify a refusal yet (certificates only, first fetch): its
                // code is passed on as a hint for the operator, never acted upon.
                if let Ok(body) = serde_json::from_slice::<ErrorBody>(&answer.body) {
                    if is_code(&body.code) {
                        return Err(FetchError::UnverifiedRefusal { status: answer.status, code: body.code });
                    }
                }
            }
            log::warn!(
                "wechat pay certificates: HTTP {} not believed: {e} (Request-ID {})",
                answer.status,
                answer.request_id
            );
            return Err(FetchError::Pay(PayError::Unverified));
        }
        if answer.status != 200 {
            return Err(FetchError::Pay(refusal(request.api, &answer)));
        }
        Ok(fetched)
    }

    /// Asks WeChat Pay to refund (its answer is usually PROCESSING; the result comes by
    /// notification or query). The same `out_refund_no` with the same amounts again
    /// returns the same refund and refunds nothing more.
    pub fn refund(&self, r: &RefundRequest<'_>) -> Result<WeChatRefund, PayError> {
        let body = RefundBody {
            out_trade_no: r.out_trade_no,
            out_refund_no: r.out_refund_no,
            reason: r.reason,
            notify_url: r.notify_url,
            amount: RefundAmount { refund: r.refund, total: r.total, currency: "CNY" },
        };
        let body = serde_json::to_vec(&body).map_err(|_| PayError::Invalid("the refund does not serialise"))?;
        let request =
            Request { api: "refund", method: "POST", path: "/v3/refund/domestic/refunds".into(), body: Some(body) };
        let answer = self.call(&request, &[200])?;
        about(parse_refund(&answer)?, r.out_refund_no)
    }

    /// A refund's state at WeChat Pay (`GET /v3/refund/domestic/refunds/{out_refund_no}`).
    pub fn query_refund(&self, out_refund_no: &str) -> Result<WeChatRefund, PayError> {
        let path = format!("/v3/refund/domestic/refunds/{}", path_segment(out_refund_no)?);
        let answer = self.call(&Request { api: "query_refund", method: "GET", path, body: None }, &[200])?;
        about(parse_refund(&answer)?, out_refund_no)
    }

    /// Sends `request` and returns the verified body of an answer whose status is one of
    /// `success`; any other verified status is WeChat Pay's refusal.
    fn call(&self, request: &Request, success: &[u16]) -> Result<Vec<u8>, PayError> {
        if self.verifier.key_id().is_none() {
            // Certificates only, none fetched yet: no answer could be believed.
            log::warn!("wechat pay {}: not sent: no platform certificate fetched yet", request.api);
            return Err(PayError::Unverified);
        }
        let answer = self.send(request)?;
        if success.contains(&answer.status) {
            log::debug!("wechat pay {}: HTTP {} (Request-ID {})", request.api, answer.status, answer.request_id);
            return Ok(answer.body);
        }
        Err(refusal(request.api, &answer))
    }

    /// Up to `retries` more attempts while the failure is transient.
    fn send(&self, request: &Request) -> Result<Answer, PayError> {
        self.send_as(request, Verify::Now)
    }

    fn send_as(&self, request: &Request, verify: Verify) -> Result<Answer, PayError> {
        let mut attempt = 0;
        loop {
            let Attempt { result, retry } = self.attempt(request, verify);
            if !retry || attempt >= self.retries {
                if retry {
                    log::warn!("wechat pay {}: giving up after {} attempts", request.api, attempt + 1);
                }
                return result;
            }
            let why = match &result {
                Ok(answer) => format!("HTTP {} (Request-ID {})", answer.status, answer.request_id),
                Err(e) => e.to_string(),
            };
            log::info!("wechat pay {}: attempt {} failed ({why}); retrying", request.api, attempt + 1);
            std::thread::sleep(backoff(attempt));
            attempt += 1;
        }
    }

    fn attempt(&self, request: &Request, verify: Verify) -> Attempt {
        let body = request.body.as_deref().unwrap_or_default();
        let signed_path = format!("{}{}", self.prefix, request.path);
        let authorization = match self.merchant.authorization(request.method, &signed_path, body) {
            Ok(header) => header,
            Err(e) => {
                log::error!("wechat pay {}: the request cannot be signed: {e}", request.api);
                return Attempt { result: Err(PayError::Invalid("the request cannot be signed")), retry: false };
            }
        };
        let url = format!("{}{}", self.base, request.path);
        let response = match &request.body {
            Some(body) => self
                .with_headers(self.agent.post(&url), &authorization)
                .header("Content-Type", "application/json")
                .send(&body[..]),
            None => self.with_headers(self.agent.get(&url), &authorization).call(),
        };
        match response {
            Ok(response) => self.verified(request.api, verify, response),
            Err(e) => Attempt { result: Err(classify(e)), retry: true },
        }
    }

    /// Reads an answer and checks its signature before anything else looks at it.
    fn verified(&self, api: &str, verify: Verify, mut response: ureq::http::Response<ureq::Body>) -> Attempt {
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let request_id = clean(header("Request-ID").as_deref().unwrap_or("none"), 64);
        let (timestamp, nonce, signature, serial) = (
            header("Wechatpay-Timestamp"),
            header("Wechatpay-Nonce"),
            header("Wechatpay-Signature"),
            header("Wechatpay-Serial"),
        );
        let body = match response.body_mut().with_config().limit(MAX_ANSWER_BYTES).read_to_vec() {
            Ok(body) => body,
            Err(ureq::Error::BodyExceedsLimit(_)) => {
                log::warn!("wechat pay {api}: HTTP {status} with an oversized body (Request-ID {request_id})");
                return Attempt { result: Err(PayError::Unreadable), retry: false };
            }
            Err(e) => return Attempt { result: Err(classify(e)), retry: true },
        };
        // A 5xx is retried whether it verifies or not: the request may not have reached
        // WeChat Pay (a gateway answering), and every request here is safe to repeat.
        let retry = status >= 500;
        let (Some(timestamp), Some(nonce), Some(signature), Some(serial)) = (timestamp, nonce, signature, serial)
        else {
            log::warn!("wechat pay {api}: HTTP {status} without a signature (Request-ID {request_id})");
            return Attempt { result: Err(PayError::Unverified), retry };
        };
        if verify == Verify::Deferred {
            let signature = Some([timestamp, nonce, signature, serial]);
            return Attempt { result: Ok(Answer { status, body, request_id, signature }), retry };
        }
        let signed =
            Signed { timestamp: &timestamp, nonce: &nonce, signature: &signature, serial: &serial, body: &body };
        if let Err(e) = self.verifier.verify(&signed, unix_now()) {
            log::warn!("wechat pay {api}: HTTP {status} not believed: {e} (Request-ID {request_id})");
            return Attempt { result: Err(PayError::Unverified), retry };
        }
        Attempt { result: Ok(Answer { status, body, request_id, signature: None }), retry }
    }

    fn with_headers<B>(&self, request: ureq::RequestBuilder<B>, authorization: &str) -> ureq::RequestBuilder<B> {
        let request = request.header("Authorization", authorization).header("Accept", "application/json");
        // Asks WeChat Pay to sign with the public key we hold (research/wechat-pay.md §2.4).
        match self.verifier.key_id() {
            Some(id) => request.header("Wechatpay-Serial", &id),
            None => request,
        }
    }
}

/// Why a certificate fetch failed: the call, or what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    Pay(PayError),
    Certificates(CertificatesError),
    /// A refusal that no key held could verify (nothing is trusted yet): a hint only.
    UnverifiedRefusal {
        status: u16,
        code: String,
    },
}

impl From<PayError> for FetchError {
    fn from(e: PayError) -> FetchError {
        FetchError::Pay(e)
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Pay(e) => write!(f, "{e}"),
            FetchError::Certificates(CertificatesError::Decrypt) => {
                f.write_str("the certificates do not decrypt with the APIv3 key")
            }
            FetchError::Certificates(CertificatesError::Invalid(m)) => f.write_str(m),
            FetchError::UnverifiedRefusal { status, code } => {
                write!(f, "an unverifiable answer (HTTP {status}, {code}): no key to verify it with yet")
            }
        }
    }
}

/// The error a verified non-success answer stands for. WeChat Pay's `message` goes to the
/// log only: it can name the merchant's configuration, and it is free text.
fn refusal(api: &str, answer: &Answer) -> PayError {
    let status = answer.status;
    let request_id = &answer.request_id;
    let error = serde_json::from_slice::<ErrorBody>(&answer.body).ok().filter(|e| is_code(&e.code));
    match error {
        Some(e) if status >= 400 => {
            log::warn!(
                "wechat pay {api}: HTTP {status} {}: {} (Request-ID {request_id})",
                e.code,
                clean(&e.message, 200)
            );
            PayError::Refused { status, code: e.code }
        }
        _ => {
            log::warn!("wechat pay {api}: unexpected HTTP {status} without an error code (Request-ID {request_id})");
            PayError::Unreadable
        }
    }
}

/// The refund if the answer is about the one asked for.
fn about(refund: WeChatRefund, out_refund_no: &str) -> Result<WeChatRefund, PayError> {
    if refund.out_refund_no != out_refund_no {
        log::warn!("wechat pay refund: the answer is about another refund");
        return Err(PayError::Unreadable);
    }
    Ok(refund)
}

/// WeChat Pay's codes are upper-case words: `PARAM_ERROR`, `ORDER_NOT_EXIST`.
fn is_code(code: &str) -> bool {
    (1..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// One path segment (or query value), percent-encoded: everything but unreserved
/// characters and `*` (out_trade_no may hold `|` and `*`).
fn path_segment(value: &str) -> Result<String, PayError> {
    if !is_id(value) {
        return Err(PayError::Invalid("an out_trade_no or mchid is not 1 to 64 visible ASCII characters"));
    }
    Ok(value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect())
}

/// Text from the other side, fit for one log line: control characters dropped, at most
/// `max` characters.
fn clean(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// ureq's errors as ours; ureq's messages are not used (they can carry the URL).
fn classify(e: ureq::Error) -> PayError {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Timeout(_) => PayError::Timeout,
        ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => PayError::Timeout,
        _ => PayError::Unreachable,
    }
}

#[cfg(test)]
mod tests;
