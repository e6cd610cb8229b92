//! The mini-program's endpoints (Bearer session token). A price never comes from the
//! mini-program: it orders a configured product by id, and any other field is refused.

use serde::Deserialize;
use serde_json::json;

use super::{create_and_pay, new_out_trade_no, order_view, payment_json, read_order, segment, wants_sync};
use crate::api::session::authenticate;
use crate::app::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::store::{self, NewOrder, Order, SessionInfo};

/// How many orders a list answers by default, and at most.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    product: String,
}

/// POST /v1/pay/orders {"product"}: 201 {"order", "payment"}, after WeChat Pay gave
/// the prepay id.
pub fn create(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let p = app.payments()?;
    let s = authenticate(app, req)?;
    let body: CreateBody = Req::decode(req.object(false)?)?;
    let product = p
        .config
        .product(&body.product)
        .ok_or_else(|| ApiError::UnknownProduct(body.product.chars().take(32).collect()))?;
    let now = store::now();
    let out_trade_no = new_out_trade_no(now);
    let new = NewOrder {
        out_trade_no: &out_trade_no,
        app: &s.user.app,
        user_id: s.user.id,
        openid: &s.user.openid,
        product: Some(&product.id),
        description: &product.description,
        amount: product.amount,
        attach: None,
        created_at: now,
        expires_at: now + p.config.order_ttl_seconds,
    };
    create_and_pay(app, &new)
}

/// GET /v1/pay/orders?limit=&before=: this user's orders, newest first.
pub fn list(app: &App, req: &Req) -> Result<Resp, ApiError> {
    app.payments()?;
    let s = authenticate(app, req)?;
    let limit = match req.query_param("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "must be a whole number from 1 to 100"))?,
    };
    let before = req.query_param("before");
    let orders = app.store.orders_of_user(s.user.id, before.as_deref(), limit)?;
    let orders = orders.iter().map(|o| order_view(app, o)).collect::<Result<Vec<_>, _>>()?;
    Ok(Resp::ok(json!({"orders": orders})))
}

/// GET /v1/pay/orders/{out_trade_no}[?sync=true]
pub fn get(app: &App, req: &Req) -> Result<Resp, ApiError> {
    app.payments()?;
    let s = authenticate(app, req)?;
    let sync = wants_sync(req)?;
    read_order(app, own_order(app, &s, req)?, sync)
}

/// POST /v1/pay/orders/{out_trade_no}/payment: fresh `wx.requestPayment` parameters.
pub fn payment(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let p = app.payments()?;
    let s = authenticate(app, req)?;
    let order = own_order(app, &s, req)?;
    let params = p.payment(&app.config, &app.store, &order, store::now())?;
    Ok(Resp::ok(json!({"payment": payment_json(&params)})))
}

/// The order the path names, if it is this user's: another user's order is as absent
/// as one that does not exist.
fn own_order(app: &App, s: &SessionInfo, req: &Req) -> Result<Order, ApiError> {
    match app.store.order(segment(req, 3))? {
        Some(o) if o.user_id == s.user.id => Ok(o),
        _ => Err(ApiError::NotFound),
    }
}
