//! WeChat Pay refunds, shared by every instance.
//!
//! Every write that depends on what an order has left, or on a refund's state, first
//! locks the order's row (then the refund's), always in that order: two instances
//! creating refunds of one order at once check what is left one after the other, and a
//! result applied by two instances at once counts once.

use postgres::Row;

use super::orders::{insert_event_data, lock_order};
use super::{Postgres, Tx};
use crate::store::sqlite::{refund_json, FIRST_REFUND_QUERY_AFTER};
use crate::store::{
    NewRefund, OrderState, Refund, RefundApplied, RefundCreated, RefundResult, RefundState, EVENT_REFUND_FAILED,
    EVENT_REFUND_SUCCEEDED, MAX_QUERY_INTERVAL,
};
use crate::store::{Result, StoreError};

macro_rules! refund_columns {
    () => {
        "out_refund_no, out_trade_no, amount, reason, state, refund_id, created_at, succeeded_at"
    };
}

fn from_row(r: &Row) -> Result<Refund> {
    let state: String = r.try_get(4)?;
    let state = RefundState::parse(&state)
        .ok_or_else(|| StoreError::Postgres(format!("a refund has an unknown state {state:?}")))?;
    Ok(Refund {
        out_refund_no: r.try_get(0)?,
        out_trade_no: r.try_get(1)?,
        amount: r.try_get(2)?,
        reason: r.try_get(3)?,
        state,
        refund_id: r.try_get(5)?,
        created_at: r.try_get(6)?,
        succeeded_at: r.try_get(7)?,
    })
}

fn refunds(rows: Vec<Row>) -> Result<Vec<Refund>> {
    rows.iter().map(from_row).collect()
}

fn refund_by_no(tx: &mut Tx, out_refund_no: &str) -> Result<Option<Refund>> {
    tx.query_opt(concat!("SELECT ", refund_columns!(), " FROM refunds WHERE out_refund_no = $1"), &[&out_refund_no])?
        .as_ref()
        .map(from_row)
        .transpose()
}

fn found(existing: Refund, n: &NewRefund) -> RefundCreated {
    if existing.out_trade_no == n.out_trade_no && existing.amount == n.amount {
        RefundCreated::Same(existing)
    } else {
        RefundCreated::Conflict(existing)
    }
}

impl Postgres {
    /// As SQLite's. The order's row is locked before what is left is summed, so two
    /// instances refunding one order at once never exceed its amount; `out_refund_no` is
    /// checked again under that lock, so a retry that raced its original finds it.
    pub fn create_refund(&self, n: &NewRefund) -> Result<RefundCreated> {
        self.tx(|tx| {
            if let Some(existing) = refund_by_no(tx, n.out_refund_no)? {
                return Ok(found(existing, n));
            }
            let Some(order) = lock_order(tx, n.out_trade_no)? else { return Ok(RefundCreated::NoOrder) };
            if let Some(existing) = refund_by_no(tx, n.out_refund_no)? {
                return Ok(found(existing, n));
            }
            if matches!(order.state, OrderState::Created | OrderState::Closed) {
                return Ok(RefundCreated::NotPaid(order));
            }
            let reserved: i64 = tx
                .query_one(
                    "SELECT coalesce(sum(amount), 0)::bigint FROM refunds WHERE out_trade_no = $1 AND state != 'closed'",
                    &[&n.out_trade_no],
                )?
                .try_get(0)?;
            let left = order.amount - reserved;
            if n.amount < 1 || n.amount > left {
                return Ok(RefundCreated::TooMuch { left: left.max(0) });
            }
            let inserted = tx.query_opt(
                concat!(
                    "INSERT INTO refunds (out_refund_no, out_trade_no, amount, reason, state, created_at, next_query_at)
                     VALUES ($1, $2, $3, $4, 'processing', $5, $6)
                     ON CONFLICT (out_refund_no) DO NOTHING
                     RETURNING ",
                    refund_columns!()
                ),
                &[
                    &n.out_refund_no,
                    &n.out_trade_no,
                    &n.amount,
                    &n.reason,
                    &n.created_at,
                    &(n.created_at + FIRST_REFUND_QUERY_AFTER),
                ],
            )?;
            if let Some(row) = inserted {
                return Ok(RefundCreated::New(from_row(&row)?));
            }
            // The same out_refund_no for another order, created since: committed (the
            // insert waited for it), so a new read finds it.
            let existing = refund_by_no(tx, n.out_refund_no)?
                .ok_or_else(|| StoreError::Refused(format!("refund {} vanished", n.out_refund_no)))?;
            Ok(found(existing, n))
        })
    }

    pub fn forget_refund(&self, out_refund_no: &str) -> Result<bool> {
        Ok(self.conn()?.execute(
            "DELETE FROM refunds WHERE out_refund_no = $1 AND refund_id IS NULL AND state = 'processing'",
            &[&out_refund_no],
        )? > 0)
    }

    /// As SQLite's, exactly once across instances: the order's row, then the refund's,
    /// are locked before the decision.
    pub fn apply_refund(&self, r: &RefundResult, now: i64) -> Result<RefundApplied> {
        let applied = self.tx(|tx| {
            // A refund's order never changes: read unlocked, to lock the order first.
            let Some(unlocked) = refund_by_no(tx, r.out_refund_no)? else { return Ok(RefundApplied::Unknown) };
            lock_order(tx, &unlocked.out_trade_no)?;
            let Some(refund) = tx
                .query_opt(
                    concat!("SELECT ", refund_columns!(), " FROM refunds WHERE out_refund_no = $1 FOR UPDATE"),
                    &[&r.out_refund_no],
                )?
                .as_ref()
                .map(from_row)
                .transpose()?
            else {
                // Forgotten meanwhile (WeChat Pay refused it).
                return Ok(RefundApplied::Unknown);
            };
            tx.execute(
                "UPDATE refunds SET refund_id = $2 WHERE out_refund_no = $1 AND refund_id IS NULL",
                &[&r.out_refund_no, &r.refund_id],
            )?;
            if !refund.state.may_become(r.state) {
                let refund = refund_by_no(tx, r.out_refund_no)?.unwrap_or(refund);
                return Ok(RefundApplied::Unchanged(refund));
            }
            let succeeded_at = (r.state == RefundState::Succeeded).then(|| r.succeeded_at.unwrap_or(now));
            let row = tx.query_one(
                concat!(
                    "UPDATE refunds SET state = $2, succeeded_at = $3,
                            next_query_at = CASE WHEN $4 THEN NULL ELSE next_query_at END
                     WHERE out_refund_no = $1 RETURNING ",
                    refund_columns!()
                ),
                &[&r.out_refund_no, &r.state.as_str(), &succeeded_at, &r.state.is_final()],
            )?;
            let refund = from_row(&row)?;
            if r.state == RefundState::Succeeded {
                tx.execute(
                    "UPDATE orders SET refunded_amount = refunded_amount + $2,
                            state = CASE WHEN refunded_amount + $2 >= amount THEN 'refunded' ELSE state END
                     WHERE out_trade_no = $1",
                    &[&refund.out_trade_no, &refund.amount],
                )?;
            }
            let kind = if r.state == RefundState::Succeeded { EVENT_REFUND_SUCCEEDED } else { EVENT_REFUND_FAILED };
            insert_event_data(tx, kind, &refund.out_trade_no, &refund_json(&refund), now)?;
            Ok(RefundApplied::Changed(refund))
        })?;
        if matches!(applied, RefundApplied::Changed(_)) {
            self.outbox_bell().ring();
        }
        Ok(applied)
    }

    pub fn refund(&self, out_refund_no: &str) -> Result<Option<Refund>> {
        self.conn()?
            .query_opt(
                concat!("SELECT ", refund_columns!(), " FROM refunds WHERE out_refund_no = $1"),
                &[&out_refund_no],
            )?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    pub fn refunds_of_order(&self, out_trade_no: &str) -> Result<Vec<Refund>> {
        refunds(self.conn()?.query(
            concat!("SELECT ", refund_columns!(), " FROM refunds WHERE out_trade_no = $1 ORDER BY id"),
            &[&out_trade_no],
        )?)
    }

    pub fn refunds_due_for_query(&self, now: i64, limit: usize) -> Result<Vec<Refund>> {
        refunds(self.conn()?.query(
            concat!(
                "SELECT ",
                refund_columns!(),
                " FROM refunds WHERE next_query_at <= $1 ORDER BY next_query_at LIMIT $2"
            ),
            &[&now, &super::limit(limit)],
        )?)
    }

    pub fn note_refund_queried(&self, out_refund_no: &str, now: i64) -> Result<()> {
        self.conn()?.execute(
            "UPDATE refunds SET queries = queries + 1,
                    next_query_at = $2 + least($3::bigint << least(queries + 1, 20)::integer, $4::bigint)
             WHERE out_refund_no = $1 AND next_query_at IS NOT NULL",
            &[&out_refund_no, &now, &FIRST_REFUND_QUERY_AFTER, &MAX_QUERY_INTERVAL],
        )?;
        Ok(())
    }
}
