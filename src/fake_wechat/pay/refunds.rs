//! `POST /v3/refund/domestic/refunds` and `GET /v3/refund/domestic/refunds/{out_refund_no}`,
//! and the refunds the fake holds, keyed by out_refund_no (unique per merchant).
//!
//! The request and the `Refund` answer are research §7 (wechatpay-go
//! `services/refunddomestic/api_refunds.go`, `models.go`: `CreateRequest`, `AmountReq`,
//! `Refund`, `Status` ∈ SUCCESS, CLOSED, PROCESSING, ABNORMAL). The rules: refunds only of
//! paid orders, within a year, at most 50 per order, partial refunds allowed, and a retry
//! with the same out_refund_no never refunds twice, while a new out_refund_no refunds
//! again (research §7, `CreateRefund.java` header comment). ABNORMAL is not final
//! (research §7, developers.weixin.qq.com/community/pay/doc/0002e8cd3fcb085fbe40dddae68400).
//!
//! NOT in the research (the fake's best reading, README says so): the refusal codes.
//! 404 `RESOURCE_NOT_EXISTS` for an unknown order or refund, and 400 `INVALID_REQUEST`
//! ("parameters well-formed but against a business rule", research §2.4's generic code)
//! for an unpaid order, a `total` that is not the order's, a refund over what is left,
//! the same out_refund_no with other parameters, a 51st refund and a year-old payment.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::secrets::random_id;

use super::api::{check_json_body, check_notify_url, param, parse_body, text, Answer, Headers, Refusal};
use super::notify::{self, Plan, Subject};
use super::orders::{Order, TradeState};
use super::wire::format_cst;
use super::PayFake;

/// research §7: "at most 50 per order".
const MAX_REFUNDS_PER_ORDER: usize = 50;
/// research §7: refunds "within 1 year" of the payment.
const REFUND_WINDOW: i64 = 365 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefundStatus {
    Processing,
    Success,
    Closed,
    Abnormal,
}

impl RefundStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Processing => "PROCESSING",
            RefundStatus::Success => "SUCCESS",
            RefundStatus::Closed => "CLOSED",
            RefundStatus::Abnormal => "ABNORMAL",
        }
    }

    /// The notification's event_type and summary (research §7); PROCESSING has none.
    pub(crate) fn event(self) -> Option<(&'static str, &'static str)> {
        match self {
            RefundStatus::Processing => None,
            RefundStatus::Success => Some(("REFUND.SUCCESS", "退款成功")),
            RefundStatus::Abnormal => Some(("REFUND.ABNORMAL", "退款异常")),
            RefundStatus::Closed => Some(("REFUND.CLOSED", "退款关闭")),
        }
    }
}

/// What the merchant asked for: the same out_refund_no with exactly this again is a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefundRequest {
    pub out_trade_no: String,
    pub refund: i64,
    pub total: i64,
    pub reason: Option<String>,
    pub notify_url: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Refund {
    pub request: RefundRequest,
    pub out_refund_no: String,
    pub refund_id: String,
    pub transaction_id: String,
    pub mchid: String,
    pub status: RefundStatus,
    pub create_time: i64,
    /// When it reached its current status (SUCCESS: the success_time).
    pub settled_at: Option<i64>,
}

impl Refund {
    /// The `Refund` the create and query APIs answer (wechatpay-go refunddomestic `Refund`).
    pub(crate) fn answer(&self) -> Value {
        let r = &self.request;
        let mut v = json!({
            "refund_id": self.refund_id,
            "out_refund_no": self.out_refund_no,
            "transaction_id": self.transaction_id,
            "out_trade_no": r.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": format_cst(self.create_time),
            "status": self.status.as_str(),
            "funds_account": "AVAILABLE",
            "amount": {
                "total": r.total, "refund": r.refund, "from": [],
                "payer_total": r.total, "payer_refund": r.refund,
                "settlement_total": r.total, "settlement_refund": r.refund,
                "discount_refund": 0, "currency": "CNY", "refund_fee": 0,
            },
            "promotion_detail": [],
        });
        if self.status == RefundStatus::Success {
            v["success_time"] = json!(self.settled_at.map(format_cst));
        }
        v
    }

    /// The plaintext of a refund notification: research §7's field list
    /// (`退款结果回调通知说明.md`), `refund_status` rather than `status`, and no appid.
    pub(crate) fn notification(&self) -> Value {
        let r = &self.request;
        let mut v = json!({
            "mchid": self.mchid,
            "transaction_id": self.transaction_id,
            "out_trade_no": r.out_trade_no,
            "refund_id": self.refund_id,
            "out_refund_no": self.out_refund_no,
            "refund_status": self.status.as_str(),
            "user_received_account": "支付用户零钱",
            "amount": {"total": r.total, "refund": r.refund, "payer_total": r.total, "payer_refund": r.refund},
        });
        if self.status == RefundStatus::Success {
            v["success_time"] = json!(self.settled_at.map(format_cst));
        }
        v
    }
}

/// What happens to the next refunds created (`POST /__fake/pay/refunds/next`).
#[derive(Debug, Clone)]
pub(crate) struct RefundPlan {
    pub outcome: RefundStatus,
    /// `None`: no notification.
    pub notify: Option<Plan>,
    pub to: Option<String>,
    pub times: u32,
}

impl RefundPlan {
    /// Without a queued plan a refund succeeds at once and is notified once.
    fn default_plan() -> RefundPlan {
        RefundPlan { outcome: RefundStatus::Success, notify: Some(Plan::once()), to: None, times: 1 }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Refunds {
    by_no: BTreeMap<String, Refund>,
    pub plans: Vec<RefundPlan>,
}

impl Refunds {
    pub(crate) fn get(&self, out_refund_no: &str) -> Option<&Refund> {
        self.by_no.get(out_refund_no)
    }

    fn of_order<'a>(&'a self, out_trade_no: &'a str) -> impl Iterator<Item = &'a Refund> + 'a {
        self.by_no.values().filter(move |r| r.request.out_trade_no == out_trade_no)
    }

    /// What is refunded or being refunded: every refund but a CLOSED one (an ABNORMAL
    /// refund still holds its money, research §7: not final).
    fn reserved(&self, out_trade_no: &str) -> i64 {
        self.of_order(out_trade_no).filter(|r| r.status != RefundStatus::Closed).map(|r| r.request.refund).sum()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_no.len()
    }

    fn next_plan(&mut self) -> RefundPlan {
        let Some(plan) = self.plans.first_mut() else {
            return RefundPlan::default_plan();
        };
        plan.times -= 1;
        let taken = plan.clone();
        if plan.times == 0 {
            self.plans.remove(0);
        }
        taken
    }
}

fn invalid(message: &str) -> Refusal {
    Refusal(400, "INVALID_REQUEST", message.into())
}

fn not_exists(message: &str) -> Refusal {
    Refusal(404, "RESOURCE_NOT_EXISTS", message.into())
}

/// An amount field: an integer number of fen, at least 1.
fn fen(v: &Value, field: &str) -> Result<i64, Refusal> {
    match v.get("amount").and_then(|a| a.get(field)) {
        None | Some(Value::Null) => Err(param(format!("amount.{field} is required"))),
        Some(n) => {
            n.as_i64().filter(|n| *n >= 1).ok_or_else(|| param(format!("amount.{field} must be an integer >= 1 (fen)")))
        }
    }
}

/// The fields of wechatpay-go `CreateRequest`, each checked.
struct Parsed {
    transaction_id: Option<String>,
    out_trade_no: Option<String>,
    out_refund_no: String,
    refund: i64,
    total: i64,
    reason: Option<String>,
    notify_url: Option<String>,
}

fn parse_request(pay: &PayFake, v: &Value) -> Result<Parsed, Refusal> {
    let transaction_id = text(v, "transaction_id", 32, false)?;
    let out_trade_no = text(v, "out_trade_no", 32, false)?;
    if transaction_id.is_none() && out_trade_no.is_none() {
        // research §7: "one of transaction_id / out_trade_no".
        return Err(param("one of transaction_id and out_trade_no is required"));
    }
    let out_refund_no = text(v, "out_refund_no", 64, true)?.unwrap_or_default();
    // The refund page's rule for out_refund_no: up to 64 of [0-9A-Za-z_-|*@] (not in
    // the research: the fake's best reading, the same alphabet as out_trade_no plus @).
    if !out_refund_no.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@')) {
        return Err(param("out_refund_no must be up to 64 characters of 0-9 A-Z a-z _ - | * @"));
    }
    let reason = text(v, "reason", 80, false)?;
    let notify_url = text(v, "notify_url", 256, false)?;
    if let Some(url) = &notify_url {
        check_notify_url(url, pay.opts.allow_http_notify)?;
    }
    let (refund, total) = (fen(v, "refund")?, fen(v, "total")?);
    // research §7: `currency: "CNY"` is part of the required amount.
    match text(v, "amount.currency", 16, true)?.as_deref() {
        Some("CNY") => {}
        _ => return Err(param("amount.currency must be CNY")),
    }
    Ok(Parsed { transaction_id, out_trade_no, out_refund_no, refund, total, reason, notify_url })
}

/// `POST /v3/refund/domestic/refunds`: 200 with the Refund as created (PROCESSING); what
/// becomes of it next is the queued plan (success, notified once, by default).
pub(crate) fn create(pay: &Arc<PayFake>, mchid: &str, h: &Headers, body: &[u8], now: i64) -> Answer {
    check_json_body(h)?;
    let v = parse_body(body)?;
    let p = parse_request(pay, &v)?;
    let (answer, plan) = {
        let mut inner = pay.lock();
        let inner = &mut *inner;
        let order = match (&p.transaction_id, &p.out_trade_no) {
            (Some(id), _) => inner.orders.by_transaction_id(id),
            (None, Some(no)) => inner.orders.get(no),
            (None, None) => None,
        }
        .ok_or_else(|| not_exists("订单不存在"))?;
        if p.out_trade_no.as_ref().is_some_and(|no| *no != order.request.out_trade_no) {
            return Err(param("transaction_id and out_trade_no name different orders"));
        }
        let request = RefundRequest {
            out_trade_no: order.request.out_trade_no.clone(),
            refund: p.refund,
            total: p.total,
            reason: p.reason,
            notify_url: p.notify_url,
        };
        if let Some(existing) = inner.refunds.get(&p.out_refund_no) {
            // research §7: a retry must reuse out_refund_no, and then refunds once.
            if existing.request != request {
                return Err(invalid("out_refund_no is used by a refund with other parameters"));
            }
            return Ok((200, Some(existing.answer())));
        }
        let transaction_id = check_refundable(order, &inner.refunds, &request, now)?;
        let refund = Refund {
            request,
            out_refund_no: p.out_refund_no.clone(),
            refund_id: new_refund_id(now),
            transaction_id,
            mchid: mchid.to_string(),
            status: RefundStatus::Processing,
            create_time: now,
            settled_at: None,
        };
        let answer = refund.answer();
        inner.refunds.by_no.insert(p.out_refund_no.clone(), refund);
        (answer, inner.refunds.next_plan())
    };
    if plan.outcome != RefundStatus::Processing {
        // The answer is already made; a notification that cannot go is the receiver's loss,
        // as with WeChat Pay.
        let _ = settle(pay, &p.out_refund_no, plan.outcome, plan.notify, plan.to.as_deref(), false);
    }
    Ok((200, Some(answer)))
}

/// The business rules of a new refund (research §7); the order's transaction_id if it
/// may be refunded.
fn check_refundable(order: &Order, refunds: &Refunds, request: &RefundRequest, now: i64) -> Result<String, Refusal> {
    let (paid_at, transaction_id) = match (order.state.paid(), order.success_time, &order.transaction_id) {
        (true, Some(at), Some(id)) => (at, id.clone()),
        _ => return Err(invalid("订单未支付,不能退款")),
    };
    if request.total != order.request.total {
        return Err(invalid("amount.total is not the order's amount"));
    }
    if now - paid_at > REFUND_WINDOW {
        return Err(invalid("the order was paid more than a year ago"));
    }
    if refunds.of_order(&request.out_trade_no).count() >= MAX_REFUNDS_PER_ORDER {
        return Err(invalid("the order has 50 refunds already"));
    }
    if request.refund > request.total - refunds.reserved(&request.out_trade_no) {
        return Err(invalid("amount.refund is more than what is left to refund"));
    }
    Ok(transaction_id)
}

/// `GET /v3/refund/domestic/refunds/{out_refund_no}` (research §7).
pub(crate) fn query(pay: &PayFake, out_refund_no: &str) -> Answer {
    let inner = pay.lock();
    let refund = inner.refunds.get(out_refund_no).ok_or_else(|| not_exists("退款单不存在"))?;
    Ok((200, Some(refund.answer())))
}

/// Moves a refund on: PROCESSING → SUCCESS | CLOSED | ABNORMAL, ABNORMAL → SUCCESS |
/// CLOSED (research §7: ABNORMAL is not final); then its notification, as `notify` says.
/// A SUCCESS turns the order's trade_state to REFUND (research §7).
pub(crate) fn settle(
    pay: &Arc<PayFake>,
    out_refund_no: &str,
    to_status: RefundStatus,
    notify: Option<Plan>,
    to: Option<&str>,
    wait: bool,
) -> Result<(), String> {
    {
        let now = pay.clock.now();
        let mut inner = pay.lock();
        let refund = inner.refunds.by_no.get_mut(out_refund_no).ok_or("RESOURCE_NOT_EXISTS: no such refund")?;
        let allowed = matches!(
            (refund.status, to_status),
            (RefundStatus::Processing, RefundStatus::Success | RefundStatus::Closed | RefundStatus::Abnormal)
                | (RefundStatus::Abnormal, RefundStatus::Success | RefundStatus::Closed)
        );
        if !allowed {
            return Err(format!("the refund is {}, it cannot become {}", refund.status.as_str(), to_status.as_str()));
        }
        refund.status = to_status;
        refund.settled_at = Some(now);
        let out_trade_no = refund.request.out_trade_no.clone();
        if to_status == RefundStatus::Success {
            if let Some(order) = inner.orders.get_mut(&out_trade_no) {
                order.state = TradeState::Refund;
            }
        }
    }
    let Some(plan) = notify else { return Ok(()) };
    let has_url = {
        let inner = pay.lock();
        inner.refunds.get(out_refund_no).is_some_and(|r| r.request.notify_url.is_some())
    };
    // No notify_url: real WeChat Pay uses the one set in the merchant platform, which the
    // fake has none of, so only a `to` or the fake's override gets it.
    if has_url || to.is_some() || pay.opts.notify_override.is_some() {
        notify::deliver(pay, &Subject::Refund(out_refund_no.to_string()), to, plan, wait)?;
    }
    Ok(())
}

/// 29 digits starting `50`, like the refund_id of WeChat Pay's samples
/// (`50000000382019052709732678859`).
fn new_refund_id(now: i64) -> String {
    let date: String = format_cst(now).chars().filter(char::is_ascii_digit).take(8).collect();
    let random: String = random_id(4).bytes().map(|b| char::from(b'0' + b % 10)).collect();
    format!("50000000{date}{random}{:05}", now.rem_euclid(100_000))
}
