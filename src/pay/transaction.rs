//! A WeChat Pay `Transaction`, as the query API answers it and as a TRANSACTION.SUCCESS
//! notification carries it once decrypted (research/wechat-pay.md §6.2, §7).
//!
//! Only the fields wxlogin acts on are kept, and each is checked for its form, because
//! they go on to the database, to logs and to the merchant's webhook. Whether the
//! transaction matches an order (mchid, appid, amount) is the caller's check.

use serde::Deserialize;

use super::{rfc3339, PayError};

/// The longest identifier accepted (WeChat Pay's are 28 to 32 characters).
const MAX_ID: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    pub transaction_id: Option<String>,
    /// SUCCESS, NOTPAY, CLOSED, REFUND, USERPAYING, PAYERROR, REVOKED (upper-case letters
    /// and `_`; a state added later passes through).
    pub trade_state: String,
    /// In fen. Present, with `transaction_id`, `success_time` and the payer, once paid.
    pub amount_total: Option<i64>,
    pub payer_total: Option<i64>,
    /// Unix seconds.
    pub success_time: Option<i64>,
    pub payer_openid: Option<String>,
}

#[derive(Deserialize)]
struct Raw {
    appid: String,
    mchid: String,
    out_trade_no: String,
    transaction_id: Option<String>,
    trade_state: String,
    amount: Option<RawAmount>,
    success_time: Option<String>,
    payer: Option<RawPayer>,
}

#[derive(Deserialize)]
struct RawAmount {
    total: Option<i64>,
    payer_total: Option<i64>,
}

#[derive(Deserialize)]
struct RawPayer {
    openid: Option<String>,
}

/// Parses a decrypted notification `resource` (or a query's verified body). A paid
/// transaction (`SUCCESS`, and `REFUND` after it) must name its transaction id, amount,
/// time and payer; anything out of form is [`PayError::Unreadable`].
pub fn parse_transaction(json: &[u8]) -> Result<Transaction, PayError> {
    let raw: Raw = serde_json::from_slice(json).map_err(|_| PayError::Unreadable)?;
    let amount = raw.amount.unwrap_or(RawAmount { total: None, payer_total: None });
    let success_time = match raw.success_time.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => Some(rfc3339::parse(text).ok_or(PayError::Unreadable)?),
        None => None,
    };
    let t = Transaction {
        appid: raw.appid,
        mchid: raw.mchid,
        out_trade_no: raw.out_trade_no,
        transaction_id: raw.transaction_id.filter(|s| !s.is_empty()),
        trade_state: raw.trade_state,
        amount_total: amount.total,
        payer_total: amount.payer_total,
        success_time,
        payer_openid: raw.payer.and_then(|p| p.openid).filter(|s| !s.is_empty()),
    };
    if is_well_formed(&t) {
        Ok(t)
    } else {
        Err(PayError::Unreadable)
    }
}

fn is_well_formed(t: &Transaction) -> bool {
    let ids = [&t.appid, &t.mchid, &t.out_trade_no].into_iter().all(|s| is_id(s))
        && t.transaction_id.as_deref().is_none_or(is_id)
        && t.payer_openid.as_deref().is_none_or(is_id);
    let state =
        (1..=32).contains(&t.trade_state.len()) && t.trade_state.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    let amounts = [t.amount_total, t.payer_total].into_iter().flatten().all(|a| a >= 0);
    let paid = matches!(t.trade_state.as_str(), "SUCCESS" | "REFUND");
    let complete = t.transaction_id.is_some() && t.amount_total.is_some() && t.success_time.is_some();
    ids && state && amounts && (!paid || complete)
}

/// 1 to 64 visible ASCII characters other than quotes and backslashes: what WeChat Pay's
/// identifiers are (out_trade_no allows `|` and `*` besides letters, digits, `_` and `-`).
pub(crate) fn is_id(s: &str) -> bool {
    (1..=MAX_ID).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plaintext of a TRANSACTION.SUCCESS resource as WeChat Pay documents it
    /// (research/wechat-pay.md §6.2; values from the official sample).
    const PAID: &str = r#"{"mchid":"1900007291","appid":"wxd678efh567hg6787","out_trade_no":"1217752501201407033233368018","transaction_id":"1217752501201407033233368018","trade_type":"JSAPI","trade_state":"SUCCESS","trade_state_desc":"支付成功","bank_type":"CMC","attach":"","success_time":"2018-06-08T10:34:56+08:00","payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},"amount":{"total":100,"payer_total":100,"currency":"CNY","payer_currency":"CNY"},"promotion_detail":[]}"#;

    #[test]
    fn a_paid_transaction_parses_with_its_time() {
        let t = parse_transaction(PAID.as_bytes()).expect("parses");
        assert_eq!(t.trade_state, "SUCCESS");
        assert_eq!(t.amount_total, Some(100));
        assert_eq!(t.payer_total, Some(100));
        assert_eq!(t.success_time, Some(1_528_425_296));
        assert_eq!(t.payer_openid.as_deref(), Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"));
        assert_eq!(t.transaction_id.as_deref(), Some("1217752501201407033233368018"));
    }

    #[test]
    fn an_unpaid_order_needs_no_payment_fields() {
        let json = r#"{"appid":"wx1","mchid":"1900007291","out_trade_no":"T123456","trade_state":"NOTPAY","trade_state_desc":"订单未支付","amount":{"payer_currency":"CNY","total":100},"success_time":""}"#;
        let t = parse_transaction(json.as_bytes()).expect("parses");
        assert_eq!((t.transaction_id, t.success_time, t.payer_openid), (None, None, None));
        assert_eq!(t.amount_total, Some(100));
    }

    #[test]
    fn out_of_form_transactions_are_unreadable() {
        let paid: serde_json::Value = serde_json::from_str(PAID).expect("json");
        let with = |pointer: &str, value: serde_json::Value| {
            let mut v = paid.clone();
            *v.pointer_mut(pointer).expect(pointer) = value;
            serde_json::to_vec(&v).expect("serialises")
        };
        let without = |key: &str| {
            let mut v = paid.clone();
            v.as_object_mut().expect("object").remove(key);
            serde_json::to_vec(&v).expect("serialises")
        };
        for bad in [
            b"not json".to_vec(),
            b"[]".to_vec(),
            with("/success_time", "2018-06-08 10:34:56".into()),
            with("/amount/total", (-1).into()),
            with("/amount/total", "100".into()),
            with("/trade_state", "success".into()),
            with("/out_trade_no", "a\"b".into()),
            with("/out_trade_no", "".into()),
            with("/payer/openid", "o\r\nX".into()),
            without("transaction_id"),
            without("success_time"),
            without("amount"),
            without("appid"),
        ] {
            assert_eq!(parse_transaction(&bad), Err(PayError::Unreadable), "{}", String::from_utf8_lossy(&bad));
        }
    }
}
