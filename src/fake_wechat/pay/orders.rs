//! The orders the fake WeChat Pay holds, keyed by out_trade_no (unique per mchid, research §3).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::secrets::random_id;

use super::wire::format_cst;

/// How long a prepay_id stays usable (research §3: "valid 2 hours").
pub(crate) const PREPAY_TTL: i64 = 2 * 3600;
/// An order without time_expire cannot be paid after 7 days (research §3).
pub(crate) const DEFAULT_EXPIRY: i64 = 7 * 86_400;

/// What the merchant asked for: an order placed again with exactly these gets the same
/// prepay_id; with anything else, OUT_TRADE_NO_USED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrderRequest {
    pub appid: String,
    pub mchid: String,
    pub description: String,
    pub out_trade_no: String,
    pub time_expire: Option<String>,
    pub attach: Option<String>,
    pub notify_url: String,
    pub total: i64,
    pub openid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TradeState {
    NotPay,
    Success,
    Closed,
    /// Paid, then (partly or wholly) refunded: research §7, "`SUCCESS` → `REFUND` after a
    /// refund" (订单状态流转.md).
    Refund,
}

impl TradeState {
    /// Whether the user paid (a refunded order was paid too).
    pub(crate) fn paid(self) -> bool {
        matches!(self, TradeState::Success | TradeState::Refund)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub request: OrderRequest,
    pub expires_at: i64,
    pub prepay_id: String,
    pub prepay_at: i64,
    pub state: TradeState,
    pub transaction_id: Option<String>,
    pub success_time: Option<i64>,
}

impl Order {
    /// The Transaction as the query APIs answer it and as a notification carries it
    /// (research §6.2: wechatpay-go `services/payments/models.go`).
    pub(crate) fn transaction(&self) -> Value {
        let r = &self.request;
        let mut t = json!({
            "appid": r.appid,
            "mchid": r.mchid,
            "out_trade_no": r.out_trade_no,
            "trade_state": match self.state {
                TradeState::NotPay => "NOTPAY",
                TradeState::Success => "SUCCESS",
                TradeState::Closed => "CLOSED",
                TradeState::Refund => "REFUND",
            },
            "trade_state_desc": match self.state {
                TradeState::NotPay => "订单未支付",
                TradeState::Success => "支付成功",
                TradeState::Closed => "订单已关闭",
                TradeState::Refund => "转入退款",
            },
            "amount": {"total": r.total, "currency": "CNY", "payer_currency": "CNY"},
        });
        if let Some(attach) = &r.attach {
            t["attach"] = json!(attach);
        }
        if self.state.paid() {
            t["transaction_id"] = json!(self.transaction_id);
            t["trade_type"] = json!("JSAPI");
            t["bank_type"] = json!("OTHERS");
            t["success_time"] = json!(self.success_time.map(format_cst));
            t["payer"] = json!({"openid": r.openid});
            t["amount"]["payer_total"] = json!(r.total);
        }
        t
    }
}

#[derive(Debug, Default)]
pub(crate) struct Orders {
    by_no: BTreeMap<String, Order>,
}

impl Orders {
    pub(crate) fn get(&self, out_trade_no: &str) -> Option<&Order> {
        self.by_no.get(out_trade_no)
    }

    pub(crate) fn get_mut(&mut self, out_trade_no: &str) -> Option<&mut Order> {
        self.by_no.get_mut(out_trade_no)
    }

    pub(crate) fn by_transaction_id(&self, id: &str) -> Option<&Order> {
        self.by_no.values().find(|o| o.transaction_id.as_deref() == Some(id))
    }

    pub(crate) fn by_prepay_id(&self, id: &str) -> Option<&Order> {
        self.by_no.values().find(|o| o.prepay_id == id)
    }

    pub(crate) fn insert(&mut self, order: Order) {
        self.by_no.insert(order.request.out_trade_no.clone(), order);
    }

    pub(crate) fn len(&self) -> usize {
        self.by_no.len()
    }
}

/// `wx` + the time + 20 hex characters: the 36-character shape of research §3's example
/// `wx201410272009395522657a690389285100`.
pub(crate) fn new_prepay_id(now: i64) -> String {
    let digits: String = format_cst(now).chars().filter(char::is_ascii_digit).take(14).collect();
    format!("wx{digits}{}", random_id(10))
}

/// 28 digits starting `4200`, like every JSAPI transaction_id seen in WeChat's samples.
pub(crate) fn new_transaction_id(now: i64) -> String {
    let date: String = format_cst(now).chars().filter(char::is_ascii_digit).take(8).collect();
    let random: String = random_id(4).bytes().map(|b| char::from(b'0' + b % 10)).collect();
    format!("420000{date}{random}{:06}", now.rem_euclid(1_000_000))
}
