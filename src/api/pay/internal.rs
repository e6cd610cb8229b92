//! The team's service's endpoints (`Authorization: Bearer <internal API key>`): orders
//! with the service's own amounts, read, closed and refunded.

use serde::Deserialize;

use super::{
    create_and_pay, new_out_trade_no, order_view, out_trade_no_ok, read_order, refund_json, segment, wants_sync,
};
use crate::api::internal::require_key;
use crate::app::App;
use crate::config::pay::{description_problem, AMOUNT, ORDER_TTL_SECONDS};
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::store::{self, NewOrder, NewRefund, Order, User};

/// The longest `attach` accepted (WeChat Pay's limit).
const MAX_ATTACH_CHARS: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    user_id: Option<i64>,
    app: Option<String>,
    openid: Option<String>,
    amount: i64,
    description: String,
    out_trade_no: Option<String>,
    attach: Option<String>,
    ttl_seconds: Option<i64>,
}

/// POST /internal/v1/pay/orders: 201 {"order", "payment"}; the same out_trade_no with
/// the same parameters 200, with others 409 `order_conflict`.
pub fn create(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let p = app.payments()?;
    require_key(app, req)?;
    let b: CreateBody = Req::decode(req.object(false)?)?;
    let user = payer(app, &b)?;
    check(&b)?;
    let now = store::now();
    let out_trade_no = b.out_trade_no.clone().unwrap_or_else(|| new_out_trade_no(now));
    let new = NewOrder {
        out_trade_no: &out_trade_no,
        app: &user.app,
        user_id: user.id,
        openid: &user.openid,
        product: None,
        description: &b.description,
        amount: b.amount,
        attach: b.attach.as_deref(),
        created_at: now,
        expires_at: now + b.ttl_seconds.unwrap_or(p.config.order_ttl_seconds),
    };
    create_and_pay(app, &new)
}

/// The user who pays: by `user_id`, or by `app` and `openid`.
fn payer(app: &App, b: &CreateBody) -> Result<User, ApiError> {
    let unknown = || ApiError::InvalidField("No such user: they must have logged in once.".into());
    match (b.user_id, &b.openid) {
        (Some(id), None) if b.app.is_none() => app.store.user(id)?.ok_or_else(unknown),
        (None, Some(openid)) => {
            let cfg = app.resolve_app(b.app.as_deref())?;
            app.store.user_by_openid(openid)?.into_iter().find(|u| u.app == cfg.name).ok_or_else(unknown)
        }
        _ => Err(ApiError::InvalidRequest("Send `user_id`, or `app` and `openid`, not both.".into())),
    }
}

fn check(b: &CreateBody) -> Result<(), ApiError> {
    if !AMOUNT.contains(&b.amount) {
        return Err(ApiError::InvalidField("`amount` must be from 1 to 1000000000 fen.".into()));
    }
    if let Some(problem) = description_problem(&b.description) {
        return Err(ApiError::InvalidField(format!("`description` {problem}.")));
    }
    if b.out_trade_no.as_deref().is_some_and(|n| !out_trade_no_ok(n)) {
        return Err(ApiError::InvalidField(
            "`out_trade_no` must be 6 to 32 letters, digits, or `_` `-` `|` `*`.".into(),
        ));
    }
    if b.attach.as_deref().is_some_and(|a| a.chars().count() > MAX_ATTACH_CHARS) {
        return Err(ApiError::InvalidField(format!("`attach` must be at most {MAX_ATTACH_CHARS} characters.")));
    }
    if b.ttl_seconds.is_some_and(|t| !ORDER_TTL_SECONDS.contains(&t)) {
        return Err(ApiError::InvalidField("`ttl_seconds` must be from 300 to 604800.".into()));
    }
    Ok(())
}

/// GET /internal/v1/pay/orders/{out_trade_no}[?sync=true]
pub fn get(app: &App, req: &Req) -> Result<Resp, ApiError> {
    app.payments()?;
    require_key(app, req)?;
    let sync = wants_sync(req)?;
    read_order(app, order(app, req)?, sync)
}

/// POST /internal/v1/pay/orders/{out_trade_no}/close
pub fn close(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let p = app.payments()?;
    require_key(app, req)?;
    let order = p.close(&app.config, &app.store, order(app, req)?, store::now())?;
    Ok(Resp::ok(order_view(app, &order)?))
}

/// WeChat Pay's limit on a refund's `reason`.
const MAX_REASON_CHARS: usize = 80;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    amount: i64,
    reason: Option<String>,
    out_refund_no: Option<String>,
}

/// POST /internal/v1/pay/orders/{out_trade_no}/refunds: 201 Refund; the same
/// out_refund_no again 200 (WeChat Pay not asked again), for another order or amount 409
/// `refund_conflict`; more than is left 422; an unpaid order 409 `order_not_paid`.
pub fn refund(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let p = app.payments()?;
    require_key(app, req)?;
    let b: RefundBody = Req::decode(req.object(false)?)?;
    if !AMOUNT.contains(&b.amount) {
        return Err(ApiError::InvalidField("`amount` must be from 1 to 1000000000 fen.".into()));
    }
    if b.reason.as_deref().is_some_and(|r| r.is_empty() || r.chars().count() > MAX_REASON_CHARS) {
        return Err(ApiError::InvalidField(format!("`reason` must be 1 to {MAX_REASON_CHARS} characters.")));
    }
    if b.out_refund_no.as_deref().is_some_and(|n| !out_refund_no_ok(n)) {
        return Err(ApiError::InvalidField(
            "`out_refund_no` must be 1 to 64 letters, digits, or `_` `-` `|` `*` `@`.".into(),
        ));
    }
    let order = order(app, req)?;
    let now = store::now();
    let out_refund_no = b.out_refund_no.clone().unwrap_or_else(|| format!("R{now}{}", crate::secrets::random_id(6)));
    let new = NewRefund {
        out_refund_no: &out_refund_no,
        out_trade_no: &order.out_trade_no,
        amount: b.amount,
        reason: b.reason.as_deref(),
        created_at: now,
    };
    let (status, refund) = p.refund(&app.store, &new, now)?;
    Ok(Resp::json(status, refund_json(&refund)))
}

/// GET /internal/v1/pay/refunds/{out_refund_no}
pub fn get_refund(app: &App, req: &Req) -> Result<Resp, ApiError> {
    app.payments()?;
    require_key(app, req)?;
    let refund = app.store.refund(segment(req, 4))?.ok_or(ApiError::NotFound)?;
    Ok(Resp::ok(refund_json(&refund)))
}

/// WeChat Pay's form of `out_refund_no`: 1 to 64 letters, digits, `_ - | * @`.
fn out_refund_no_ok(no: &str) -> bool {
    (1..=64).contains(&no.len()) && no.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b))
}

fn order(app: &App, req: &Req) -> Result<Order, ApiError> {
    app.store.order(segment(req, 4))?.ok_or(ApiError::NotFound)
}
