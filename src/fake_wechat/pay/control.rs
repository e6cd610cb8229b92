//! `/__fake/pay/...`: tests and `demo` play the paying user and steer notifications.
//! Errors are the fake's own (`{"errcode": <status>, "errmsg"}`), as under `/__fake/`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::super::api::Method;
use super::super::reply::{Reply, CONTROL_JSON};
use super::notify::{self, Plan, Subject};
use super::orders::{new_transaction_id, TradeState};
use super::refunds::{self, RefundPlan, RefundStatus};
use super::PlatformMode;
use super::{
    PayFailure, PayFake, PLATFORM_PUBLIC_KEY_ID, PLATFORM_PUBLIC_KEY_PEM, TEST_APIV3_KEY, TEST_MERCHANT_KEY_PEM,
};

const MAX_DELAY_MS: u64 = 600_000;
const MAX_COPIES: u32 = 20;

type Outcome = Result<Value, Reply>;

pub(crate) fn handle(pay: &Arc<PayFake>, method: Method, path: &str, query: &str, body: &[u8]) -> Reply {
    let outcome = match (path, method) {
        ("/__fake/pay/pay", Method::Post) => parse(body).and_then(|r| pay_order(pay, r)),
        ("/__fake/pay/notify", Method::Post) => parse(body).and_then(|r| renotify(pay, r)),
        ("/__fake/pay/deliveries", Method::Get) => Ok(deliveries(pay, query)),
        ("/__fake/pay/stats", Method::Get) => Ok(stats(pay)),
        ("/__fake/pay/behaviour", Method::Post) => parse(body).and_then(|r| behaviour(pay, r)),
        ("/__fake/pay/refund", Method::Post) => parse(body).and_then(|r| settle_refund(pay, r)),
        ("/__fake/pay/refunds/next", Method::Post) => parse(body).and_then(|r| next_refunds(pay, r)),
        ("/__fake/pay/platform", Method::Post) => parse(body).and_then(|r| platform(pay, r)),
        ("/__fake/pay/deliveries" | "/__fake/pay/stats", _) => Err(Reply::fake_error(405, "use GET")),
        (
            "/__fake/pay/pay"
            | "/__fake/pay/notify"
            | "/__fake/pay/behaviour"
            | "/__fake/pay/refund"
            | "/__fake/pay/refunds/next"
            | "/__fake/pay/platform",
            _,
        ) => Err(Reply::fake_error(405, "use POST with a JSON body")),
        _ => Err(Reply::fake_error(404, &format!("no control endpoint {path}"))),
    };
    match outcome {
        Ok(value) => Reply::json(200, CONTROL_JSON, &value),
        Err(reply) => reply,
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Reply> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| bad_request(&format!("{}: {}", e.path(), e.inner())))?;
    json.end().map_err(|e| bad_request(&format!("invalid JSON body: {e}")))?;
    Ok(value)
}

fn bad_request(message: &str) -> Reply {
    Reply::fake_error(400, message)
}

/// How the notification goes out (`"notify"` of both control requests).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NotifyOptions {
    /// "once" (default), "twice", "concurrent" (twice at once), "never".
    mode: Option<String>,
    delay_ms: Option<u64>,
    /// Retries of a failed delivery (none by default).
    retries: Option<u32>,
    retry_interval_ms: Option<u64>,
    /// Answer only once every delivery is done.
    wait: Option<bool>,
    /// Deliver here instead of the order's notify_url (e.g. a wxlogin whose configured
    /// notify_url is its public https address, listening on loopback http in the test).
    to: Option<String>,
}

impl NotifyOptions {
    /// The plan, or `None` for "never".
    fn plan(&self, probe: bool) -> Result<Option<Plan>, Reply> {
        let (copies, concurrent) = match self.mode.as_deref().unwrap_or("once") {
            "once" => (1, false),
            "twice" => (2, false),
            "concurrent" => (2, true),
            "never" => return Ok(None),
            other => {
                return Err(bad_request(&format!(
                    "notify.mode: {other:?} is not one of \"once\", \"twice\", \"concurrent\", \"never\""
                )))
            }
        };
        let delay = self.delay_ms.unwrap_or(0);
        let interval = self.retry_interval_ms.unwrap_or(100);
        if delay > MAX_DELAY_MS || interval > MAX_DELAY_MS {
            return Err(bad_request(&format!("notify: delays are at most {MAX_DELAY_MS} ms")));
        }
        let retries = self.retries.unwrap_or(0);
        if retries > MAX_COPIES {
            return Err(bad_request(&format!("notify.retries: at most {MAX_COPIES}")));
        }
        if let Some(to) = &self.to {
            if !(to.starts_with("http://") || to.starts_with("https://")) || to.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(bad_request("notify.to: must be an http:// or https:// URL"));
            }
        }
        Ok(Some(Plan {
            copies,
            concurrent,
            delay: Duration::from_millis(delay),
            probe,
            retries,
            retry_interval: Duration::from_millis(interval),
        }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayRequest {
    /// The order, by what the mini-program holds (`package` = `prepay_id=...`) or by number.
    prepay_id: Option<String>,
    out_trade_no: Option<String>,
    #[serde(default)]
    notify: NotifyOptions,
}

/// The user pays: NOTPAY → SUCCESS with a transaction_id and success_time, then the
/// notification. Refused (409) as WeChat would refuse the payment: the order closed,
/// paid already, past time_expire, or its prepay_id older than 2 hours.
fn pay_order(pay: &Arc<PayFake>, req: PayRequest) -> Outcome {
    let plan = req.notify.plan(false)?;
    let now = pay.clock.now();
    let (out_trade_no, transaction_id, success_time) = {
        let mut inner = pay.lock();
        let no = match (&req.prepay_id, &req.out_trade_no) {
            (Some(id), None) => inner.orders.by_prepay_id(id).map(|o| o.request.out_trade_no.clone()),
            (None, Some(no)) => Some(no.clone()),
            _ => return Err(bad_request("give exactly one of prepay_id and out_trade_no")),
        };
        let order = no
            .as_deref()
            .and_then(|no| inner.orders.get_mut(no))
            .ok_or_else(|| Reply::fake_error(404, "ORDER_NOT_EXIST: no such order"))?;
        match order.state {
            TradeState::Closed => return Err(Reply::fake_error(409, "ORDER_CLOSED: the order is closed")),
            TradeState::Success | TradeState::Refund => {
                return Err(Reply::fake_error(409, "ORDERPAID: the order is paid already"))
            }
            TradeState::NotPay => {}
        }
        if now >= order.expires_at {
            return Err(Reply::fake_error(409, "ORDER_CLOSED: the order is past its time_expire"));
        }
        if req.prepay_id.is_some() && now - order.prepay_at >= super::orders::PREPAY_TTL {
            return Err(Reply::fake_error(409, "the prepay_id is more than 2 hours old"));
        }
        let id = new_transaction_id(now);
        order.state = TradeState::Success;
        order.transaction_id = Some(id.clone());
        order.success_time = Some(now);
        (order.request.out_trade_no.clone(), id, now)
    };
    if let Some(plan) = plan {
        let subject = Subject::Payment(out_trade_no.clone());
        notify::deliver(pay, &subject, req.notify.to.as_deref(), plan, req.notify.wait.unwrap_or(false))
            .map_err(|e| Reply::fake_error(500, &format!("cannot deliver: {e}")))?;
    }
    Ok(json!({
        "out_trade_no": out_trade_no,
        "transaction_id": transaction_id,
        "success_time": super::wire::format_cst(success_time),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyRequest {
    /// A paid order's notification, or a settled refund's: exactly one of the two.
    out_trade_no: Option<String>,
    out_refund_no: Option<String>,
    /// A signature probe (`WECHATPAY/SIGNTEST/...`) instead of a genuine notification.
    #[serde(default)]
    probe: bool,
    #[serde(flatten)]
    notify: NotifyOptions,
}

/// Delivers a paid order's or a settled refund's notification again (or a probe of it).
fn renotify(pay: &Arc<PayFake>, req: NotifyRequest) -> Outcome {
    let subject = match (req.out_trade_no, req.out_refund_no) {
        (Some(no), None) => Subject::Payment(no),
        (None, Some(no)) => Subject::Refund(no),
        _ => return Err(bad_request("give exactly one of out_trade_no and out_refund_no")),
    };
    let Some(plan) = req.notify.plan(req.probe)? else {
        return Ok(json!({"ok": true}));
    };
    notify::deliver(pay, &subject, req.notify.to.as_deref(), plan, req.notify.wait.unwrap_or(false))
        .map_err(|e| Reply::fake_error(409, &format!("{subject:?}: {e}")))?;
    Ok(json!({"ok": true}))
}

/// `GET /__fake/pay/deliveries[?out_trade_no=][&out_refund_no=]`: every delivery's
/// outcome, oldest first.
fn deliveries(pay: &PayFake, query: &str) -> Value {
    let param =
        |name: &str| form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let (trade, refund) = (param("out_trade_no"), param("out_refund_no"));
    let inner = pay.lock();
    let list: Vec<&notify::Delivery> = inner
        .deliveries
        .iter()
        .filter(|d| trade.as_deref().is_none_or(|w| d.out_trade_no == w))
        .filter(|d| refund.as_deref().is_none_or(|w| d.out_refund_no.as_deref() == Some(w)))
        .collect();
    json!({"deliveries": list})
}

/// Calls per API, the order count, and what a wxlogin under test must configure to talk
/// to this fake (the merchant private key only for the fixed, public test keys).
fn stats(pay: &PayFake) -> Value {
    let inner = pay.lock();
    let test = pay.opts.is_test_setup();
    json!({
        "calls": inner.calls,
        "orders": inner.orders.len(),
        "refunds": inner.refunds.len(),
        "deliveries": inner.deliveries.len(),
        "config": {
            "mchid": pay.opts.mchid,
            "merchant_serial": pay.opts.merchant_serial,
            "merchant_key_pem": if test { Some(TEST_MERCHANT_KEY_PEM) } else { None },
            "apiv3_key": if test { Some(TEST_APIV3_KEY) } else { None },
            "public_key_id": PLATFORM_PUBLIC_KEY_ID,
            "public_key_pem": PLATFORM_PUBLIC_KEY_PEM,
            "allow_http_notify": pay.opts.allow_http_notify,
            "platform": pay.platform.describe(),
        },
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailRequest {
    api: String,
    error: String,
    times: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BehaviourRequest {
    fail: Option<FailRequest>,
    clear_failures: Option<bool>,
}

/// Queues failures for the WeChat Pay APIs (latency is the WeChat fake's `latency_ms`).
fn behaviour(pay: &PayFake, req: BehaviourRequest) -> Outcome {
    let injected = match &req.fail {
        None => None,
        Some(f) => {
            if f.api != "*" && !super::api::APIS.contains(&f.api.as_str()) {
                return Err(bad_request(&format!("fail.api: must be \"*\" or one of {}", super::api::APIS.join(", "))));
            }
            // research §2.4: SYSTEM_ERROR 500 and RATELIMIT_EXCEEDED 429 are the errors a
            // client must survive without a change of request.
            let failure = match f.error.as_str() {
                "SYSTEM_ERROR" => PayFailure::Code(500, "SYSTEM_ERROR"),
                "RATELIMIT_EXCEEDED" => PayFailure::Code(429, "RATELIMIT_EXCEEDED"),
                "FREQUENCY_LIMITED" => PayFailure::Code(403, "FREQUENCY_LIMITED"),
                "NO_AUTH" => PayFailure::Code(403, "NO_AUTH"),
                "http_500" => PayFailure::Http500,
                "unsigned" => PayFailure::Unsigned,
                "bad_signature" => PayFailure::BadSignature,
                "garbage" => PayFailure::Garbage,
                "hang" => PayFailure::Hang,
                other => {
                    return Err(bad_request(&format!(
                        "fail.error: {other:?} is not one of SYSTEM_ERROR, RATELIMIT_EXCEEDED, FREQUENCY_LIMITED, \
                         NO_AUTH, http_500, unsigned, bad_signature, garbage, hang"
                    )))
                }
            };
            Some((f.api.clone(), failure, f.times.unwrap_or(1)))
        }
    };
    let mut inner = pay.lock();
    if req.clear_failures == Some(true) {
        inner.failures.clear();
    }
    if let Some(entry) = injected.filter(|e| e.2 > 0) {
        inner.failures.push(entry);
    }
    Ok(json!({"ok": true}))
}

/// A refund's outcome, by name.
fn outcome(name: &str, processing: bool) -> Result<RefundStatus, Reply> {
    match name {
        "success" => Ok(RefundStatus::Success),
        "abnormal" => Ok(RefundStatus::Abnormal),
        "closed" => Ok(RefundStatus::Closed),
        "processing" if processing => Ok(RefundStatus::Processing),
        other => Err(bad_request(&format!(
            "outcome: {other:?} is not one of \"success\", \"abnormal\", \"closed\"{}",
            if processing { ", \"processing\"" } else { "" }
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettleRequest {
    out_refund_no: String,
    outcome: String,
    #[serde(default)]
    notify: NotifyOptions,
}

/// WeChat Pay finishes a refund: PROCESSING → SUCCESS | ABNORMAL | CLOSED, or ABNORMAL →
/// SUCCESS | CLOSED, then its notification. 404 unknown refund, 409 a final one.
fn settle_refund(pay: &Arc<PayFake>, req: SettleRequest) -> Outcome {
    let status = outcome(&req.outcome, false)?;
    let plan = req.notify.plan(false)?;
    refunds::settle(pay, &req.out_refund_no, status, plan, req.notify.to.as_deref(), req.notify.wait.unwrap_or(false))
        .map_err(|e| {
            let code = if e.starts_with("RESOURCE_NOT_EXISTS") { 404 } else { 409 };
            Reply::fake_error(code, &format!("{}: {e}", req.out_refund_no))
        })?;
    Ok(json!({"out_refund_no": req.out_refund_no, "status": status.as_str()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NextRefunds {
    outcome: String,
    times: Option<u32>,
    #[serde(default)]
    notify: NotifyOptions,
}

/// What the next `times` refunds created become: at once success (the default without
/// one), abnormal or closed with their notification, or "processing" until
/// `POST /__fake/pay/refund`.
fn next_refunds(pay: &PayFake, req: NextRefunds) -> Outcome {
    let status = outcome(&req.outcome, true)?;
    let notify = req.notify.plan(false)?;
    if req.notify.wait.is_some() {
        return Err(bad_request("notify.wait: not for refunds yet to come"));
    }
    let times = req.times.unwrap_or(1);
    if times > 0 {
        let plan = RefundPlan { outcome: status, notify, to: req.notify.to.clone(), times };
        pay.lock().refunds.plans.push(plan);
    }
    Ok(json!({"ok": true}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformRequest {
    mode: String,
}

/// Switches the signing key mid-run, as WeChat Pay does during a migration.
fn platform(pay: &PayFake, req: PlatformRequest) -> Outcome {
    let mode: PlatformMode = req.mode.parse().map_err(|e: String| bad_request(&format!("mode: {e}")))?;
    pay.platform.set_mode(mode);
    Ok(pay.platform.describe())
}
