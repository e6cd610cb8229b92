//! WeChat Pay orders, shared by every instance.
//!
//! Every change of an order's state locks the order's row (`SELECT ... FOR UPDATE`)
//! before deciding, and inserts the event it causes in the same transaction: two
//! instances applying the same payment at once run one after the other on that lock, and
//! the second finds the order paid. Every event of an order is inserted under that lock
//! (refunds' included), so its `seq` is the next one, computed once.

use postgres::Row;

use super::{Postgres, Tx};
use crate::store::sqlite::order_json;
use crate::store::{
    Applied, Created, NewOrder, Order, OrderState, Payment, EVENT_ORDER_CLOSED, EVENT_ORDER_PAID, FIRST_QUERY_AFTER,
    MAX_QUERY_INTERVAL,
};
use crate::store::{Result, StoreError};

macro_rules! order_columns {
    () => {
        "out_trade_no, app, user_id, openid, product, description, amount, currency, attach, state, \
         transaction_id, paid_at, expires_at, refunded_amount, created_at, prepay_id, prepay_at"
    };
}

pub(super) fn order_from_row(r: &Row) -> Result<Order> {
    let state: String = r.try_get(9)?;
    let state = OrderState::parse(&state)
        .ok_or_else(|| StoreError::Postgres(format!("an order has an unknown state {state:?}")))?;
    Ok(Order {
        out_trade_no: r.try_get(0)?,
        app: r.try_get(1)?,
        user_id: r.try_get(2)?,
        openid: r.try_get(3)?,
        product: r.try_get(4)?,
        description: r.try_get(5)?,
        amount: r.try_get(6)?,
        currency: r.try_get(7)?,
        attach: r.try_get(8)?,
        state,
        transaction_id: r.try_get(10)?,
        paid_at: r.try_get(11)?,
        expires_at: r.try_get(12)?,
        refunded_amount: r.try_get(13)?,
        created_at: r.try_get(14)?,
        prepay_id: r.try_get(15)?,
        prepay_at: r.try_get(16)?,
    })
}

fn orders(rows: Vec<Row>) -> Result<Vec<Order>> {
    rows.iter().map(order_from_row).collect()
}

/// The order, its row locked until the transaction ends.
pub(super) fn lock_order(tx: &mut Tx, out_trade_no: &str) -> Result<Option<Order>> {
    tx.query_opt(
        concat!("SELECT ", order_columns!(), " FROM orders WHERE out_trade_no = $1 FOR UPDATE"),
        &[&out_trade_no],
    )?
    .as_ref()
    .map(order_from_row)
    .transpose()
}

/// Inserts an event of the order `out_trade_no`, next in its `seq`: the caller holds the
/// order's row lock, so no other transaction computes the same `seq`.
pub(super) fn insert_event_data(tx: &mut Tx, kind: &str, out_trade_no: &str, data: &str, now: i64) -> Result<()> {
    let id = format!("evt_{}", crate::secrets::random_id(16));
    tx.execute(
        "INSERT INTO pay_events (id, out_trade_no, seq, type, created_at, data, next_attempt_at)
         VALUES ($1, $2, (SELECT coalesce(max(seq), 0) + 1 FROM pay_events WHERE out_trade_no = $2), $3, $4, $5, $4)",
        &[&id, &out_trade_no, &kind, &now, &data],
    )?;
    Ok(())
}

fn insert_event(tx: &mut Tx, kind: &str, order: &Order, now: i64) -> Result<()> {
    insert_event_data(tx, kind, &order.out_trade_no, &order_json(order), now)
}

/// Whether an existing order has what `o` asks for (as SQLite's `same_params`).
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

fn found(existing: Order, o: &NewOrder) -> Created {
    if same_params(&existing, o) {
        Created::Same(existing)
    } else {
        Created::Conflict(existing)
    }
}

impl Postgres {
    /// As SQLite's. Two instances creating the same `out_trade_no` at once: the insert is
    /// `ON CONFLICT DO NOTHING`, and the loser reads the winner's order.
    pub fn create_order(&self, o: &NewOrder) -> Result<Created> {
        self.tx(|tx| {
            let select = concat!("SELECT ", order_columns!(), " FROM orders WHERE out_trade_no = $1");
            if let Some(row) = tx.query_opt(select, &[&o.out_trade_no])? {
                return Ok(found(order_from_row(&row)?, o));
            }
            let owner = tx.query_opt("SELECT app, openid FROM users WHERE id = $1", &[&o.user_id])?;
            match owner {
                Some(r) if r.try_get::<_, &str>(0)? == o.app && r.try_get::<_, &str>(1)? == o.openid => {}
                Some(_) => return Err(StoreError::Refused(format!("user {} is not {}'s payer", o.user_id, o.app))),
                None => return Err(StoreError::Refused(format!("no user {}", o.user_id))),
            }
            let inserted = tx.query_opt(
                concat!(
                    "INSERT INTO orders (out_trade_no, app, user_id, openid, product, description, amount, attach,
                                         state, expires_at, created_at, next_query_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'created', $9, $10, $11)
                     ON CONFLICT (out_trade_no) DO NOTHING
                     RETURNING ",
                    order_columns!()
                ),
                &[
                    &o.out_trade_no,
                    &o.app,
                    &o.user_id,
                    &o.openid,
                    &o.product,
                    &o.description,
                    &o.amount,
                    &o.attach,
                    &o.expires_at,
                    &o.created_at,
                    &(o.created_at + FIRST_QUERY_AFTER),
                ],
            )?;
            if let Some(row) = inserted {
                return Ok(Created::New(order_from_row(&row)?));
            }
            // Another instance created it since the first read (committed: the insert waited).
            let row = tx
                .query_opt(select, &[&o.out_trade_no])?
                .ok_or_else(|| StoreError::Refused(format!("order {} vanished", o.out_trade_no)))?;
            Ok(found(order_from_row(&row)?, o))
        })
    }

    pub fn set_prepay(&self, out_trade_no: &str, prepay_id: &str, at: i64) -> Result<()> {
        let n = self.conn()?.execute(
            "UPDATE orders SET prepay_id = $2, prepay_at = $3 WHERE out_trade_no = $1",
            &[&out_trade_no, &prepay_id, &at],
        )?;
        if n == 0 {
            return Err(StoreError::Refused(format!("no order {out_trade_no}")));
        }
        Ok(())
    }

    pub fn order(&self, out_trade_no: &str) -> Result<Option<Order>> {
        self.conn()?
            .query_opt(concat!("SELECT ", order_columns!(), " FROM orders WHERE out_trade_no = $1"), &[&out_trade_no])?
            .as_ref()
            .map(order_from_row)
            .transpose()
    }

    pub fn orders_of_user(&self, user_id: i64, before: Option<&str>, limit: usize) -> Result<Vec<Order>> {
        let mut conn = self.conn()?;
        let rows = match before {
            None => conn.query(
                concat!("SELECT ", order_columns!(), " FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT $2"),
                &[&user_id, &super::limit(limit)],
            )?,
            Some(before) => conn.query(
                concat!(
                    "SELECT ",
                    order_columns!(),
                    " FROM orders WHERE user_id = $1
                       AND id < (SELECT id FROM orders WHERE out_trade_no = $2 AND user_id = $1)
                     ORDER BY id DESC LIMIT $3"
                ),
                &[&user_id, &before, &super::limit(limit)],
            )?,
        };
        orders(rows)
    }

    /// As SQLite's, exactly once across instances: the order's row is locked before the
    /// decision, so a second instance waits, then finds it paid.
    pub fn apply_payment(&self, p: &Payment, now: i64) -> Result<Applied> {
        let applied = self.tx(|tx| {
            let Some(order) = lock_order(tx, p.out_trade_no)? else { return Ok(Applied::Unknown) };
            if order.amount != p.amount_total {
                return Ok(Applied::AmountMismatch(order));
            }
            match order.state {
                OrderState::Paid | OrderState::Refunded => return Ok(Applied::AlreadyPaid(order)),
                OrderState::Closed => return Ok(Applied::NotPayable(order)),
                OrderState::Created => {}
            }
            let row = tx.query_one(
                concat!(
                    "UPDATE orders SET state = 'paid', transaction_id = $2, paid_at = $3, next_query_at = NULL
                     WHERE out_trade_no = $1 RETURNING ",
                    order_columns!()
                ),
                &[&p.out_trade_no, &p.transaction_id, &p.paid_at],
            )?;
            let order = order_from_row(&row)?;
            insert_event(tx, EVENT_ORDER_PAID, &order, now)?;
            Ok(Applied::Paid(order))
        })?;
        if matches!(applied, Applied::Paid(_)) {
            self.outbox_bell().ring();
        }
        Ok(applied)
    }

    /// As SQLite's; the order's row is locked before the decision.
    pub fn close_order(&self, out_trade_no: &str, now: i64) -> Result<Option<Order>> {
        let closed = self.tx(|tx| {
            let Some(order) = lock_order(tx, out_trade_no)? else { return Ok(None) };
            if order.state != OrderState::Created {
                return Ok(Some((order, false)));
            }
            let row = tx.query_one(
                concat!(
                    "UPDATE orders SET state = 'closed', closed_at = $2, next_query_at = NULL
                     WHERE out_trade_no = $1 RETURNING ",
                    order_columns!()
                ),
                &[&out_trade_no, &now],
            )?;
            let order = order_from_row(&row)?;
            insert_event(tx, EVENT_ORDER_CLOSED, &order, now)?;
            Ok(Some((order, true)))
        })?;
        if matches!(closed, Some((_, true))) {
            self.outbox_bell().ring();
        }
        Ok(closed.map(|(order, _)| order))
    }

    pub fn orders_due_for_query(&self, now: i64, limit: usize) -> Result<Vec<Order>> {
        orders(self.conn()?.query(
            concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE state = 'created' AND next_query_at <= $1 AND expires_at > $1
                 ORDER BY next_query_at LIMIT $2"
            ),
            &[&now, &super::limit(limit)],
        )?)
    }

    pub fn note_queried(&self, out_trade_no: &str, now: i64) -> Result<()> {
        self.conn()?.execute(
            "UPDATE orders SET queries = queries + 1,
                    next_query_at = $2 + least($3::bigint << least(queries + 1, 20)::integer, $4::bigint)
             WHERE out_trade_no = $1 AND state = 'created'",
            &[&out_trade_no, &now, &FIRST_QUERY_AFTER, &MAX_QUERY_INTERVAL],
        )?;
        Ok(())
    }

    pub fn expired_orders(&self, now: i64, limit: usize) -> Result<Vec<Order>> {
        orders(self.conn()?.query(
            concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE state = 'created' AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
            ),
            &[&now, &super::limit(limit)],
        )?)
    }

    pub fn list_orders(&self, state: Option<OrderState>, user_id: Option<i64>, limit: usize) -> Result<Vec<Order>> {
        orders(self.conn()?.query(
            concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE ($1::text IS NULL OR state = $1::text) AND ($2::bigint IS NULL OR user_id = $2::bigint)
                 ORDER BY id DESC LIMIT $3"
            ),
            &[&state.map(OrderState::as_str), &user_id, &super::limit(limit)],
        )?)
    }

    pub fn order_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = self.conn()?.query("SELECT state, count(*) FROM orders GROUP BY state", &[])?;
        let found: Vec<(String, i64)> =
            rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_>>()?;
        Ok([OrderState::Created, OrderState::Paid, OrderState::Closed, OrderState::Refunded]
            .iter()
            .map(|s| {
                let n = found.iter().find(|(name, _)| name == s.as_str()).map_or(0, |(_, n)| *n);
                (s.as_str().to_string(), n)
            })
            .collect())
    }
}
