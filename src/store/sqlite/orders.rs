//! WeChat Pay orders and their events (the webhook outbox).
//!
//! Every change of an order's state is one write transaction that also inserts the
//! event it causes, so an event is never lost to a crash and never written twice: the
//! writer is one connection, so two threads applying the same payment run one after the
//! other, and the second finds the order already paid.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::{Result, Sqlite, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderState {
    /// Waiting for payment.
    Created,
    Paid,
    /// Expired or closed unpaid.
    Closed,
    /// Paid, then refunded in full (its succeeded refunds add up to its amount).
    Refunded,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Created => "created",
            OrderState::Paid => "paid",
            OrderState::Closed => "closed",
            OrderState::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<OrderState> {
        [OrderState::Created, OrderState::Paid, OrderState::Closed, OrderState::Refunded]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub out_trade_no: String,
    pub app: String,
    pub user_id: i64,
    pub openid: String,
    pub product: Option<String>,
    pub description: String,
    /// Fen.
    pub amount: i64,
    pub currency: String,
    pub attach: Option<String>,
    pub state: OrderState,
    pub transaction_id: Option<String>,
    pub paid_at: Option<i64>,
    pub expires_at: i64,
    pub refunded_amount: i64,
    pub created_at: i64,
    pub prepay_id: Option<String>,
    pub prepay_at: Option<i64>,
}

/// An order to create. `app` and `openid` must be those of `user_id`.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub out_trade_no: &'a str,
    pub app: &'a str,
    pub user_id: i64,
    pub openid: &'a str,
    pub product: Option<&'a str>,
    pub description: &'a str,
    pub amount: i64,
    pub attach: Option<&'a str>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What [`Sqlite::create_order`] found: creating is idempotent on `out_trade_no`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New(Order),
    /// The order existed with the same parameters (a retry): it, unchanged.
    Same(Order),
    /// The order existed with other parameters: it, unchanged.
    Conflict(Order),
}

/// A payment WeChat Pay reported (a verified notification or a query), in fen.
#[derive(Debug, Clone)]
pub struct Payment<'a> {
    pub out_trade_no: &'a str,
    pub transaction_id: &'a str,
    pub amount_total: i64,
    pub paid_at: i64,
}

/// What [`Sqlite::apply_payment`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Created -> paid, with its `order.paid` event.
    Paid(Order),
    /// Already paid (a duplicate notification, or a query that raced one): nothing
    /// changed, no event. The caller may compare `transaction_id`.
    AlreadyPaid(Order),
    /// No such order here.
    Unknown,
    /// WeChat Pay's amount is not the order's: nothing recorded.
    AmountMismatch(Order),
    /// The order was closed here. Nothing recorded; see [`Sqlite::apply_payment`].
    NotPayable(Order),
}

pub const EVENT_ORDER_PAID: &str = "order.paid";
pub const EVENT_ORDER_CLOSED: &str = "order.closed";

/// The first query of an order still `created` comes this long after its creation; each
/// next one twice as long after the last, at most [`MAX_QUERY_INTERVAL`].
pub const FIRST_QUERY_AFTER: i64 = 60;
pub const MAX_QUERY_INTERVAL: i64 = 1800;

macro_rules! order_columns {
    () => {
        "out_trade_no, app, user_id, openid, product, description, amount, currency, attach, state, \
         transaction_id, paid_at, expires_at, refunded_amount, created_at, prepay_id, prepay_at"
    };
}

fn order_from_row(r: &Row) -> rusqlite::Result<Order> {
    let state: String = r.get(9)?;
    let state = OrderState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            9,
            rusqlite::types::Type::Text,
            format!("order state {state:?}").into(),
        )
    })?;
    Ok(Order {
        out_trade_no: r.get(0)?,
        app: r.get(1)?,
        user_id: r.get(2)?,
        openid: r.get(3)?,
        product: r.get(4)?,
        description: r.get(5)?,
        amount: r.get(6)?,
        currency: r.get(7)?,
        attach: r.get(8)?,
        state,
        transaction_id: r.get(10)?,
        paid_at: r.get(11)?,
        expires_at: r.get(12)?,
        refunded_amount: r.get(13)?,
        created_at: r.get(14)?,
        prepay_id: r.get(15)?,
        prepay_at: r.get(16)?,
    })
}

pub(super) fn order_by_no(c: &Connection, out_trade_no: &str) -> Result<Option<Order>> {
    let mut st = c.prepare_cached(concat!("SELECT ", order_columns!(), " FROM orders WHERE out_trade_no = ?1"))?;
    Ok(st.query_row([out_trade_no], order_from_row).optional()?)
}

fn collect(st: &mut rusqlite::CachedStatement, params: impl rusqlite::Params) -> Result<Vec<Order>> {
    Ok(st.query_map(params, order_from_row)?.collect::<rusqlite::Result<_>>()?)
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The event's `data`: the contract's Order object (pay.md, "Objects"). No openid and no
/// prepay id: they are not part of it. `refunds` is empty: an order has none when it is
/// paid or closed (the refund events carry the Refund).
pub(in crate::store) fn order_json(o: &Order) -> String {
    serde_json::json!({
        "out_trade_no": o.out_trade_no, "app": o.app, "user_id": o.user_id, "product": o.product,
        "description": o.description, "amount": o.amount, "currency": o.currency, "attach": o.attach,
        "state": o.state, "transaction_id": o.transaction_id, "paid_at": o.paid_at,
        "expires_at": o.expires_at, "refunded_amount": o.refunded_amount, "created_at": o.created_at,
        "refunds": [],
    })
    .to_string()
}

/// Inserts `kind` for `order` (as it is now), due for delivery at once. The caller rings
/// `outbox_bell` after the commit, so the delivery thread need not wait for its next poll.
fn insert_event(tx: &Connection, kind: &str, order: &Order, now: i64) -> Result<()> {
    insert_event_data(tx, kind, &order.out_trade_no, &order_json(order), now)
}

/// Inserts an event of the order `out_trade_no` (next in its `seq`) with `data` as it is.
pub(super) fn insert_event_data(tx: &Connection, kind: &str, out_trade_no: &str, data: &str, now: i64) -> Result<()> {
    let id = format!("evt_{}", crate::secrets::random_id(16));
    tx.prepare_cached(
        "INSERT INTO pay_events (id, out_trade_no, seq, type, created_at, data, next_attempt_at)
         VALUES (?1, ?2, (SELECT coalesce(max(seq), 0) + 1 FROM pay_events WHERE out_trade_no = ?2), ?3, ?4, ?5, ?4)",
    )?
    .execute(params![id, out_trade_no, kind, now, data])?;
    Ok(())
}

/// The order after a change made in `tx`; it was just read there, so it exists.
pub(super) fn reread(tx: &Connection, out_trade_no: &str) -> Result<Order> {
    order_by_no(tx, out_trade_no)?.ok_or_else(|| StoreError::Refused(format!("order {out_trade_no} vanished")))
}

/// Whether an existing order has what `o` asks for. The times differ between a request
/// and its retry; what was asked is the lifetime.
fn same_params(existing: &Order, o: &NewOrder) -> bool {
    existing.app == o.app
        && existing.user_id == o.user_id
        && existing.openid == o.openid
        && existing.product.as_deref() == o.product
        && existing.description == o.description
        && existing.amount == o.amount
        && existing.attach.as_deref() == o.attach
        && existing.expires_at - existing.created_at == o.expires_at - o.created_at
}

impl Sqlite {
    /// Creates the order in state `created`, first query due [`FIRST_QUERY_AFTER`] later;
    /// or, when `out_trade_no` exists, says whether it has the same parameters. The user
    /// must exist and own `app` and `openid` (refused otherwise: the order would name a
    /// payer that is not its user).
    pub fn create_order(&self, o: &NewOrder) -> Result<Created> {
        self.write(|tx| {
            if let Some(existing) = order_by_no(tx, o.out_trade_no)? {
                return Ok(if same_params(&existing, o) {
                    Created::Same(existing)
                } else {
                    Created::Conflict(existing)
                });
            }
            let owner: Option<(String, String)> = tx
                .prepare_cached("SELECT app, openid FROM users WHERE id = ?1")?
                .query_row([o.user_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            match owner {
                Some((app, openid)) if app == o.app && openid == o.openid => {}
                Some(_) => return Err(StoreError::Refused(format!("user {} is not {}'s payer", o.user_id, o.app))),
                None => return Err(StoreError::Refused(format!("no user {}", o.user_id))),
            }
            tx.prepare_cached(
                "INSERT INTO orders (out_trade_no, app, user_id, openid, product, description, amount, attach,
                                     state, expires_at, created_at, next_query_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'created', ?9, ?10, ?11)",
            )?
            .execute(params![
                o.out_trade_no,
                o.app,
                o.user_id,
                o.openid,
                o.product,
                o.description,
                o.amount,
                o.attach,
                o.expires_at,
                o.created_at,
                o.created_at + FIRST_QUERY_AFTER
            ])?;
            Ok(Created::New(reread(tx, o.out_trade_no)?))
        })
    }

    /// Records the prepay id WeChat Pay gave the order (it lives 2 hours: `at` says when
    /// it was obtained). An unknown order is refused.
    pub fn set_prepay(&self, out_trade_no: &str, prepay_id: &str, at: i64) -> Result<()> {
        let n = self.write(|tx| {
            Ok(tx
                .prepare_cached("UPDATE orders SET prepay_id = ?2, prepay_at = ?3 WHERE out_trade_no = ?1")?
                .execute(params![out_trade_no, prepay_id, at])?)
        })?;
        if n == 0 {
            return Err(StoreError::Refused(format!("no order {out_trade_no}")));
        }
        Ok(())
    }

    pub fn order(&self, out_trade_no: &str) -> Result<Option<Order>> {
        self.read(|c| order_by_no(c, out_trade_no))
    }

    /// The user's orders, newest first; with `before`, those older than that order of
    /// theirs (an order of another user, or none, gives nothing).
    pub fn orders_of_user(&self, user_id: i64, before: Option<&str>, limit: usize) -> Result<Vec<Order>> {
        self.read(|c| match before {
            None => collect(
                &mut c.prepare_cached(concat!(
                    "SELECT ",
                    order_columns!(),
                    " FROM orders WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2"
                ))?,
                params![user_id, sql_limit(limit)],
            ),
            Some(before) => collect(
                &mut c.prepare_cached(concat!(
                    "SELECT ",
                    order_columns!(),
                    " FROM orders WHERE user_id = ?1
                       AND id < (SELECT id FROM orders WHERE out_trade_no = ?2 AND user_id = ?1)
                     ORDER BY id DESC LIMIT ?3"
                ))?,
                params![user_id, before, sql_limit(limit)],
            ),
        })
    }

    /// Applies a payment WeChat Pay reported, exactly once: created -> paid with its
    /// `order.paid` event in one transaction. Checked first: the order is ours and the
    /// amount is its amount (else nothing is recorded).
    ///
    /// A `closed` order is [`Applied::NotPayable`] and nothing is recorded. WeChat Pay
    /// can still report SUCCESS for one: the user paid just before we closed it locally
    /// (expiry, or a close whose call to WeChat Pay failed). The money was taken, so the
    /// caller logs a warning, and part 2 should record it (a `paid` state with its
    /// transaction_id and an event, or an automatic full refund) rather than leave it only
    /// in the log; the notification handler answers 204 meanwhile so WeChat stops retrying.
    pub fn apply_payment(&self, p: &Payment, now: i64) -> Result<Applied> {
        let applied = self.write(|tx| {
            let Some(order) = order_by_no(tx, p.out_trade_no)? else { return Ok(Applied::Unknown) };
            if order.amount != p.amount_total {
                return Ok(Applied::AmountMismatch(order));
            }
            match order.state {
                OrderState::Paid | OrderState::Refunded => return Ok(Applied::AlreadyPaid(order)),
                OrderState::Closed => return Ok(Applied::NotPayable(order)),
                OrderState::Created => {}
            }
            let changed = tx
                .prepare_cached(
                    "UPDATE orders SET state = 'paid', transaction_id = ?2, paid_at = ?3, next_query_at = NULL
                     WHERE out_trade_no = ?1 AND state = 'created'",
                )?
                .execute(params![p.out_trade_no, p.transaction_id, p.paid_at])?;
            let order = reread(tx, p.out_trade_no)?;
            if changed == 0 {
                // Not reachable with one writer; kept so that a second writer could never
                // make a payment count twice.
                return Ok(Applied::AlreadyPaid(order));
            }
            insert_event(tx, EVENT_ORDER_PAID, &order, now)?;
            Ok(Applied::Paid(order))
        })?;
        self.outbox_bell().ring();
        Ok(applied)
    }

    /// Closes an unpaid order: created -> closed with its `order.closed` event. A closed
    /// order is returned unchanged (no second event), a paid or refunded one as it is;
    /// `None` when there is no such order.
    pub fn close_order(&self, out_trade_no: &str, now: i64) -> Result<Option<Order>> {
        let closed = self.write(|tx| {
            let Some(order) = order_by_no(tx, out_trade_no)? else { return Ok(None) };
            if order.state != OrderState::Created {
                return Ok(Some(order));
            }
            tx.prepare_cached(
                "UPDATE orders SET state = 'closed', closed_at = ?2, next_query_at = NULL
                 WHERE out_trade_no = ?1 AND state = 'created'",
            )?
            .execute(params![out_trade_no, now])?;
            let order = reread(tx, out_trade_no)?;
            insert_event(tx, EVENT_ORDER_CLOSED, &order, now)?;
            Ok(Some(order))
        })?;
        self.outbox_bell().ring();
        Ok(closed)
    }

    /// Orders still `created` and not expired whose next query is due, most overdue
    /// first: a missed notification is found by asking WeChat Pay.
    pub fn orders_due_for_query(&self, now: i64, limit: usize) -> Result<Vec<Order>> {
        self.read(|c| {
            collect(
                &mut c.prepare_cached(concat!(
                    "SELECT ",
                    order_columns!(),
                    " FROM orders WHERE state = 'created' AND next_query_at <= ?1 AND expires_at > ?1
                     ORDER BY next_query_at LIMIT ?2"
                ))?,
                params![now, sql_limit(limit)],
            )
        })
    }

    /// WeChat Pay was asked about the order at `now` (and it is still unpaid): the next
    /// query waits twice as long as the last interval (120 s, 240 s, ...), at most
    /// [`MAX_QUERY_INTERVAL`]. Orders no longer `created` are left alone.
    pub fn note_queried(&self, out_trade_no: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE orders SET queries = queries + 1, next_query_at = ?2 + min(?3 << min(queries + 1, 20), ?4)
                 WHERE out_trade_no = ?1 AND state = 'created'",
            )?
            .execute(params![out_trade_no, now, FIRST_QUERY_AFTER, MAX_QUERY_INTERVAL])?;
            Ok(())
        })
    }

    /// Orders still `created` at or past `expires_at`, oldest expiry first: to be closed
    /// at WeChat Pay, then here.
    pub fn expired_orders(&self, now: i64, limit: usize) -> Result<Vec<Order>> {
        self.read(|c| {
            collect(
                &mut c.prepare_cached(concat!(
                    "SELECT ",
                    order_columns!(),
                    " FROM orders WHERE state = 'created' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2"
                ))?,
                params![now, sql_limit(limit)],
            )
        })
    }

    /// Orders newest first, optionally of one state and one user (`wxlogin orders list`).
    pub fn list_orders(&self, state: Option<OrderState>, user_id: Option<i64>, limit: usize) -> Result<Vec<Order>> {
        self.read(|c| {
            collect(
                &mut c.prepare_cached(concat!(
                    "SELECT ",
                    order_columns!(),
                    " FROM orders WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR user_id = ?2)
                     ORDER BY id DESC LIMIT ?3"
                ))?,
                params![state.map(OrderState::as_str), user_id, sql_limit(limit)],
            )
        })
    }

    /// How many orders are in each state (for `/metrics`), every state listed.
    pub fn order_counts(&self) -> Result<Vec<(String, i64)>> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT state, count(*) FROM orders GROUP BY state")?;
            let found: Vec<(String, i64)> =
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            Ok([OrderState::Created, OrderState::Paid, OrderState::Closed, OrderState::Refunded]
                .iter()
                .map(|s| {
                    let n = found.iter().find(|(name, _)| name == s.as_str()).map_or(0, |(_, n)| *n);
                    (s.as_str().to_string(), n)
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests;
