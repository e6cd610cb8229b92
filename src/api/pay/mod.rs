//! WeChat Pay's HTTP side (pay.md): the mini-program's endpoints (`orders.rs`), WeChat
//! Pay's notifications (`notify.rs`) and the team's service's endpoints (`internal.rs`).
//! Every route answers 404 when `[pay]` is absent (`App::payments`).

pub mod internal;
pub mod notify;
pub mod orders;

use serde_json::{json, Value};

use crate::app::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::pay::PaymentParams;
use crate::store::{self, Created, NewOrder, Order, Refund};

/// The contract's Order object with its refunds, oldest first.
pub fn order_view(app: &App, o: &Order) -> Result<Value, ApiError> {
    Ok(order_json(o, &app.store.refunds_of_order(&o.out_trade_no)?))
}

/// The contract's Refund object.
pub fn refund_json(r: &Refund) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

/// The contract's Order object. No openid and no prepay id: they are not part of it.
pub fn order_json(o: &Order, refunds: &[Refund]) -> Value {
    json!({
        "out_trade_no": o.out_trade_no, "app": o.app, "user_id": o.user_id, "product": o.product,
        "description": o.description, "amount": o.amount, "currency": o.currency, "attach": o.attach,
        "state": o.state, "transaction_id": o.transaction_id, "paid_at": o.paid_at,
        "expires_at": o.expires_at, "refunded_amount": o.refunded_amount, "created_at": o.created_at,
        "refunds": refunds.iter().map(refund_json).collect::<Vec<_>>(),
    })
}

/// The parameters handed as they are to `wx.requestPayment`.
pub fn payment_json(p: &PaymentParams) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

/// The `{name}` segment of the path at `index` (0 = the first after the leading `/`).
/// The router only routes paths whose segment there is non-empty.
pub fn segment(req: &Req, index: usize) -> &str {
    req.path.split('/').nth(index + 1).unwrap_or("")
}

/// Whether `?sync=true` was asked for; any other value of `sync` is refused.
pub fn wants_sync(req: &Req) -> Result<bool, ApiError> {
    match req.query_param("sync").as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::invalid("sync", "must be true or false")),
    }
}

/// Whether `out_trade_no` has WeChat Pay's form: 6 to 32 letters, digits, `_ - | *`.
pub fn out_trade_no_ok(no: &str) -> bool {
    (6..=32).contains(&no.len()) && no.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b))
}

/// A new out_trade_no: `W`, the creation time and 12 random hex digits (23 characters).
pub fn new_out_trade_no(now: i64) -> String {
    format!("W{now}{}", crate::secrets::random_id(6))
}

/// An order as its owner (or the service) may read it, synced with WeChat Pay first
/// when asked to (and at most every 2 s per order).
pub fn read_order(app: &App, order: Order, sync: bool) -> Result<Resp, ApiError> {
    let p = app.payments()?;
    let order = if sync && order.state == store::OrderState::Created && p.may_sync(&order.out_trade_no) {
        p.sync(&app.config, &app.store, order, store::now())?
    } else {
        order
    };
    Ok(Resp::ok(order_view(app, &order)?))
}

/// Creates the order (idempotent on out_trade_no) and gets its payment parameters:
/// 201 for a new order, 200 for the same one again (its payment `null` when it is no
/// longer payable), 409 `order_conflict` for other parameters. A failure to get a prepay
/// id leaves the order `created` (the maintenance pass closes it when it expires).
pub fn create_and_pay(app: &App, new: &NewOrder) -> Result<Resp, ApiError> {
    let p = app.payments()?;
    let (status, order) = match app.store.create_order(new).map_err(refused_as_invalid)? {
        Created::New(o) => (201, o),
        Created::Same(o) => (200, o),
        Created::Conflict(_) => return Err(ApiError::OrderConflict),
    };
    let now = store::now();
    let payment = match p.payment(&app.config, &app.store, &order, now) {
        Ok(params) => payment_json(&params),
        Err(ApiError::OrderNotPayable(_)) if status == 200 => Value::Null,
        Err(e) => return Err(e),
    };
    Ok(Resp::json(status, json!({"order": order_view(app, &order)?, "payment": payment})))
}

/// The store refuses an order whose user does not match its app and openid.
fn refused_as_invalid(e: store::StoreError) -> ApiError {
    match e {
        store::StoreError::Refused(why) => ApiError::InvalidField(format!("The order cannot be made: {why}.")),
        other => other.into(),
    }
}
