//! POST /v1/pay/notify: WeChat Pay's notifications, answered by WeChat Pay's rules
//! (204, or 401/400/500 with `{"code": "FAIL", "message"}`; the mapping is in
//! `error.rs`). The order of work is pay.md's, none skipped: the signature over the raw
//! body bytes as received (`Req::body`, never re-serialised), its timestamp window and
//! serial; then the `resource` decrypted with the APIv3 key; then mchid, appid and
//! amount against the stored order (a refund: mchid, the refund and its order ours, the
//! amounts; refund notifications carry no appid); then one store transaction. A
//! duplicate, a concurrent duplicate or a probe changes nothing.

use serde::Deserialize;

use crate::app::App;
use crate::error::{ApiError, Notify};
use crate::http::{Req, Resp};
use crate::pay::{parse_refund, parse_transaction, Resource, Signed};
use crate::payments::Payments;
use crate::store::{self, Applied, RefundApplied};

#[derive(Deserialize)]
struct Envelope {
    event_type: String,
    resource: Resource,
}

pub fn notify(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let p = app.payments()?;
    let result = handle(app, p, req);
    app.metrics.notification(match &result {
        Ok(true) => "applied",
        Ok(false) => "duplicate",
        Err(Notify::Untrusted(_)) => "untrusted",
        Err(Notify::Refused(_)) => "refused",
        Err(Notify::Failed) => "failed",
    });
    match result {
        Ok(_) => Ok(Resp::empty(204)),
        Err(n) => {
            if !matches!(n, Notify::Untrusted(_)) {
                log::warn!("wechat pay notification refused: {}", ApiError::Notify(n.clone()).message());
            }
            Err(ApiError::Notify(n))
        }
    }
}

/// `Ok(true)` when the payment or refund result was applied now, `Ok(false)` when it
/// already was.
fn handle(app: &App, p: &Payments, req: &Req) -> Result<bool, Notify> {
    let header = |name: &'static str| {
        req.header(name).ok_or_else(|| Notify::Untrusted(format!("The {name} header is missing.")))
    };
    let signed = Signed {
        timestamp: header("wechatpay-timestamp")?,
        nonce: header("wechatpay-nonce")?,
        signature: header("wechatpay-signature")?,
        serial: header("wechatpay-serial")?,
        body: &req.body,
    };
    p.config.verifier.verify(&signed, store::now())?;
    let envelope: Envelope = serde_json::from_slice(&req.body)
        .map_err(|_| Notify::Refused("The body is not a WeChat Pay notification.".into()))?;
    if matches!(envelope.event_type.as_str(), "REFUND.SUCCESS" | "REFUND.ABNORMAL" | "REFUND.CLOSED") {
        return refund(app, p, &envelope.resource);
    }
    if envelope.event_type != "TRANSACTION.SUCCESS" {
        return Err(Notify::Refused(format!(
            "Notifications of type {} are not handled here.",
            envelope.event_type.chars().filter(char::is_ascii_graphic).take(40).collect::<String>()
        )));
    }
    let plaintext = envelope.resource.decrypt(&p.config.apiv3_key)?;
    let t = parse_transaction(&plaintext)
        .map_err(|_| Notify::Refused("The decrypted transaction is not in WeChat Pay's form.".into()))?;
    if t.trade_state != "SUCCESS" {
        return Err(Notify::Refused("The transaction is not a successful payment.".into()));
    }
    let order = app
        .store
        .order(&t.out_trade_no)
        .map_err(database)?
        .ok_or_else(|| Notify::Refused(format!("No order {} is known here (restored away?).", t.out_trade_no)))?;
    p.check_transaction(&app.config, &order, &t)
        .map_err(|why| Notify::Refused(format!("The payment of order {} is refused: {why}.", t.out_trade_no)))?;
    match p.apply(&app.store, &t.out_trade_no, &t, store::now()) {
        Ok(Applied::Paid(_)) => Ok(true),
        Ok(Applied::AlreadyPaid(_) | Applied::NotPayable(_)) => Ok(false),
        Ok(Applied::Unknown) => Err(Notify::Refused(format!("No order {} is known here.", t.out_trade_no))),
        Ok(Applied::AmountMismatch(_)) => Err(Notify::Refused("The amount is not the order's amount.".into())),
        Err(ApiError::PayError { message, .. }) => Err(Notify::Refused(message)),
        Err(e) => {
            log::error!("wechat pay notification: the payment could not be recorded: {e}");
            Err(Notify::Failed)
        }
    }
}

/// A verified refund notification: decrypted, checked against the refund we hold (and
/// its order), applied once.
fn refund(app: &App, p: &Payments, resource: &Resource) -> Result<bool, Notify> {
    let plaintext = resource.decrypt(&p.config.apiv3_key)?;
    let w = parse_refund(&plaintext)
        .map_err(|_| Notify::Refused("The decrypted refund is not in WeChat Pay's form.".into()))?;
    if w.mchid.as_deref() != Some(p.config.mchid.as_str()) {
        return Err(Notify::Refused(format!("The refund {} is not this merchant's.", w.out_refund_no)));
    }
    let refund = app
        .store
        .refund(&w.out_refund_no)
        .map_err(database)?
        .ok_or_else(|| Notify::Refused(format!("No refund {} is known here (restored away?).", w.out_refund_no)))?;
    p.check_refund(&app.store, &refund, &w)
        .map_err(|why| Notify::Refused(format!("The refund {} is refused: {why}.", w.out_refund_no)))?;
    match p.apply_refund(&app.store, &refund, &w, store::now()) {
        Ok(RefundApplied::Changed(_)) => Ok(true),
        Ok(RefundApplied::Unchanged(_)) => Ok(false),
        Ok(RefundApplied::Unknown) => Err(Notify::Refused(format!("No refund {} is known here.", w.out_refund_no))),
        Err(ApiError::PayError { message, .. }) => Err(Notify::Refused(message)),
        Err(e) => {
            log::error!("wechat pay notification: the refund could not be recorded: {e}");
            Err(Notify::Failed)
        }
    }
}

fn database(e: store::StoreError) -> Notify {
    log::error!("wechat pay notification: the database failed: {e}");
    Notify::Failed
}
