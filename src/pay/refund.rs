//! A WeChat Pay `Refund`, as the refund and refund query APIs answer it and as a
//! `REFUND.*` notification carries it once decrypted (research/wechat-pay.md §7:
//! wechatpay-go `refunddomestic.Refund`; the notification's plaintext has `refund_status`
//! for `status`, adds `mchid` and has no appid).
//!
//! Only the fields wxlogin acts on are kept, each checked for its form. Whether the
//! refund is ours (mchid, the refund and its order known here, the amount) is the
//! caller's check.

use serde::Deserialize;

use super::transaction::is_id;
use super::{rfc3339, PayError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeChatRefund {
    /// Present in notifications only.
    pub mchid: Option<String>,
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub refund_id: String,
    /// SUCCESS, CLOSED, PROCESSING, ABNORMAL.
    pub status: String,
    /// In fen.
    pub amount_refund: i64,
    pub amount_total: i64,
    /// Unix seconds; with SUCCESS.
    pub success_time: Option<i64>,
}

#[derive(Deserialize)]
struct Raw {
    mchid: Option<String>,
    out_refund_no: String,
    out_trade_no: String,
    refund_id: String,
    status: Option<String>,
    refund_status: Option<String>,
    amount: RawAmount,
    success_time: Option<String>,
}

#[derive(Deserialize)]
struct RawAmount {
    total: i64,
    refund: i64,
}

/// Parses a verified refund answer, or a decrypted refund notification `resource`;
/// anything out of form is [`PayError::Unreadable`].
pub fn parse_refund(json: &[u8]) -> Result<WeChatRefund, PayError> {
    let raw: Raw = serde_json::from_slice(json).map_err(|_| PayError::Unreadable)?;
    let success_time = match raw.success_time.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => Some(rfc3339::parse(text).ok_or(PayError::Unreadable)?),
        None => None,
    };
    let r = WeChatRefund {
        mchid: raw.mchid,
        out_refund_no: raw.out_refund_no,
        out_trade_no: raw.out_trade_no,
        refund_id: raw.refund_id,
        status: raw.status.or(raw.refund_status).ok_or(PayError::Unreadable)?,
        amount_refund: raw.amount.refund,
        amount_total: raw.amount.total,
        success_time,
    };
    let ids = [&r.out_refund_no, &r.out_trade_no, &r.refund_id].into_iter().all(|s| is_id(s))
        && r.mchid.as_deref().is_none_or(is_id);
    let status = matches!(r.status.as_str(), "SUCCESS" | "CLOSED" | "PROCESSING" | "ABNORMAL");
    if ids && status && r.amount_refund > 0 && r.amount_total > 0 {
        Ok(r)
    } else {
        Err(PayError::Unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A REFUND.SUCCESS plaintext with research §7's fields (the official page's sample values).
    const NOTIFIED: &str = r#"{"mchid":"1900000100","transaction_id":"1008450740201411110005820873","out_trade_no":"20150806125346","refund_id":"50200207182018070300011301001","out_refund_no":"7752501201407033233368018","refund_status":"SUCCESS","success_time":"2018-06-08T10:34:56+08:00","user_received_account":"招商银行信用卡0403","amount":{"total":999,"refund":999,"payer_total":999,"payer_refund":999}}"#;

    #[test]
    fn a_refund_notification_parses_with_its_time() {
        let r = parse_refund(NOTIFIED.as_bytes()).unwrap();
        assert_eq!(r.mchid.as_deref(), Some("1900000100"));
        assert_eq!((r.status.as_str(), r.amount_refund, r.amount_total), ("SUCCESS", 999, 999));
        assert_eq!(r.success_time, Some(1_528_425_296));
    }

    #[test]
    fn a_refund_out_of_form_is_unreadable() {
        for bad in [
            NOTIFIED.replace("\"SUCCESS\"", "\"DONE\""),
            NOTIFIED.replace("\"refund\":999", "\"refund\":0"),
            NOTIFIED.replace("\"refund_status\":\"SUCCESS\",", ""),
            NOTIFIED.replace("2018-06-08T10:34:56+08:00", "yesterday"),
            "not json".into(),
        ] {
            assert_eq!(parse_refund(bad.as_bytes()), Err(PayError::Unreadable), "{bad}");
        }
    }
}
