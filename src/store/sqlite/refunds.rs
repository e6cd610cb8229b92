//! WeChat Pay refunds of paid orders.
//!
//! A refund is written `processing` before WeChat Pay is asked, in the transaction that
//! checks what is left to refund: two refunds of one order can never both pass that check
//! (one writer), and a retry with the same `out_refund_no` finds the refund instead of
//! refunding twice. Each change of a refund's state is one transaction with the event it
//! causes and, for a success, the order's `refunded_amount` (and `refunded` state once
//! the whole amount is back).

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::orders::{insert_event_data, order_by_no};
use super::{Order, OrderState, Result, Sqlite, StoreError};

pub const EVENT_REFUND_SUCCEEDED: &str = "refund.succeeded";
/// A refund that ended `closed`, or became `abnormal` (pay.md, "The webhook").
pub const EVENT_REFUND_FAILED: &str = "refund.failed";

/// The first query of a refund still processing comes this long after its creation;
/// each next one twice as long after the last, at most [`MAX_QUERY_INTERVAL`].
pub const FIRST_REFUND_QUERY_AFTER: i64 = 60;
pub const MAX_QUERY_INTERVAL: i64 = 1800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RefundState {
    Processing,
    Succeeded,
    /// WeChat Pay gave up on it: the money stays with the merchant.
    Closed,
    /// Not final (research §7): the refund needs the merchant's action at WeChat Pay.
    Abnormal,
}

impl RefundState {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Processing => "processing",
            RefundState::Succeeded => "succeeded",
            RefundState::Closed => "closed",
            RefundState::Abnormal => "abnormal",
        }
    }

    pub fn parse(s: &str) -> Option<RefundState> {
        [RefundState::Processing, RefundState::Succeeded, RefundState::Closed, RefundState::Abnormal]
            .into_iter()
            .find(|st| st.as_str() == s)
    }

    /// WeChat Pay's `status` / `refund_status` (research §7).
    pub fn from_wechatpay(s: &str) -> Option<RefundState> {
        match s {
            "PROCESSING" => Some(RefundState::Processing),
            "SUCCESS" => Some(RefundState::Succeeded),
            "CLOSED" => Some(RefundState::Closed),
            "ABNORMAL" => Some(RefundState::Abnormal),
            _ => None,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, RefundState::Succeeded | RefundState::Closed)
    }

    /// Whether a refund in state `self` may become `to`: processing to anything else,
    /// abnormal to a final state; a final state never changes.
    pub(in crate::store) fn may_become(self, to: RefundState) -> bool {
        matches!(
            (self, to),
            (RefundState::Processing, RefundState::Succeeded | RefundState::Closed | RefundState::Abnormal)
                | (RefundState::Abnormal, RefundState::Succeeded | RefundState::Closed)
        )
    }
}

/// The contract's Refund object, field for field (pay.md, "Objects").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    /// Fen.
    pub amount: i64,
    pub reason: Option<String>,
    pub state: RefundState,
    /// WeChat Pay's, once it has accepted the refund.
    pub refund_id: Option<String>,
    pub created_at: i64,
    pub succeeded_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewRefund<'a> {
    pub out_refund_no: &'a str,
    pub out_trade_no: &'a str,
    pub amount: i64,
    pub reason: Option<&'a str>,
    pub created_at: i64,
}

/// What [`Sqlite::create_refund`] found: creating is idempotent on `out_refund_no`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundCreated {
    New(Refund),
    /// The refund existed for the same order and amount (a retry): it, unchanged.
    Same(Refund),
    /// The refund existed for another order or amount: it, unchanged.
    Conflict(Refund),
    NoOrder,
    /// The order is not paid (created or closed): nothing to refund.
    NotPaid(Order),
    /// More than what is left: the order's amount less its succeeded, processing and
    /// abnormal refunds (an abnormal refund still holds its money at WeChat Pay).
    TooMuch {
        left: i64,
    },
}

/// A refund's state as WeChat Pay reported it (an answer, a query or a verified notification).
#[derive(Debug, Clone)]
pub struct RefundResult<'a> {
    pub out_refund_no: &'a str,
    pub refund_id: &'a str,
    pub state: RefundState,
    pub succeeded_at: Option<i64>,
}

/// What [`Sqlite::apply_refund`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundApplied {
    /// The state changed, with its event.
    Changed(Refund),
    /// Already in that state, or in a later one (a duplicate): no event.
    Unchanged(Refund),
    Unknown,
}

macro_rules! refund_columns {
    () => {
        "out_refund_no, out_trade_no, amount, reason, state, refund_id, created_at, succeeded_at"
    };
}

fn refund_from_row(r: &Row) -> rusqlite::Result<Refund> {
    let state: String = r.get(4)?;
    let state = RefundState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            4,
            rusqlite::types::Type::Text,
            format!("refund state {state:?}").into(),
        )
    })?;
    Ok(Refund {
        out_refund_no: r.get(0)?,
        out_trade_no: r.get(1)?,
        amount: r.get(2)?,
        reason: r.get(3)?,
        state,
        refund_id: r.get(5)?,
        created_at: r.get(6)?,
        succeeded_at: r.get(7)?,
    })
}

fn refund_by_no(c: &Connection, out_refund_no: &str) -> Result<Option<Refund>> {
    let mut st = c.prepare_cached(concat!("SELECT ", refund_columns!(), " FROM refunds WHERE out_refund_no = ?1"))?;
    Ok(st.query_row([out_refund_no], refund_from_row).optional()?)
}

fn collect(st: &mut rusqlite::CachedStatement, params: impl rusqlite::Params) -> Result<Vec<Refund>> {
    Ok(st.query_map(params, refund_from_row)?.collect::<rusqlite::Result<_>>()?)
}

/// What is refunded or being refunded of an order: every refund but a closed one.
fn reserved(c: &Connection, out_trade_no: &str) -> Result<i64> {
    Ok(c.prepare_cached("SELECT coalesce(sum(amount), 0) FROM refunds WHERE out_trade_no = ?1 AND state != 'closed'")?
        .query_row([out_trade_no], |r| r.get(0))?)
}

pub(in crate::store) fn refund_json(r: &Refund) -> String {
    serde_json::to_string(r).unwrap_or_else(|_| "{}".into())
}

impl Sqlite {
    /// Records a refund of a paid order, `processing`, before WeChat Pay is asked; or,
    /// when `out_refund_no` exists, says whether it is the same refund. The checks and
    /// the insert are one transaction, so concurrent refunds never exceed the amount.
    pub fn create_refund(&self, n: &NewRefund) -> Result<RefundCreated> {
        self.write(|tx| {
            if let Some(existing) = refund_by_no(tx, n.out_refund_no)? {
                let same = existing.out_trade_no == n.out_trade_no && existing.amount == n.amount;
                return Ok(if same { RefundCreated::Same(existing) } else { RefundCreated::Conflict(existing) });
            }
            let Some(order) = order_by_no(tx, n.out_trade_no)? else { return Ok(RefundCreated::NoOrder) };
            if matches!(order.state, OrderState::Created | OrderState::Closed) {
                return Ok(RefundCreated::NotPaid(order));
            }
            let left = order.amount - reserved(tx, n.out_trade_no)?;
            if n.amount < 1 || n.amount > left {
                return Ok(RefundCreated::TooMuch { left: left.max(0) });
            }
            tx.prepare_cached(
                "INSERT INTO refunds (out_refund_no, out_trade_no, amount, reason, state, created_at, next_query_at)
                 VALUES (?1, ?2, ?3, ?4, 'processing', ?5, ?6)",
            )?
            .execute(params![
                n.out_refund_no,
                n.out_trade_no,
                n.amount,
                n.reason,
                n.created_at,
                n.created_at + FIRST_REFUND_QUERY_AFTER
            ])?;
            let refund = refund_by_no(tx, n.out_refund_no)?
                .ok_or_else(|| StoreError::Refused(format!("refund {} vanished", n.out_refund_no)))?;
            Ok(RefundCreated::New(refund))
        })
    }

    /// Removes a refund WeChat Pay refused outright (it never accepted it: no refund_id,
    /// still processing), so the money it held is free again. `false` if there was none
    /// such (WeChat Pay accepted it after all, through a concurrent retry).
    pub fn forget_refund(&self, out_refund_no: &str) -> Result<bool> {
        self.write(|tx| {
            Ok(tx
                .prepare_cached(
                    "DELETE FROM refunds WHERE out_refund_no = ?1 AND refund_id IS NULL AND state = 'processing'",
                )?
                .execute([out_refund_no])?
                > 0)
        })
    }

    /// Applies a refund state WeChat Pay reported, exactly once: a change allowed by
    /// [`RefundState`]'s rules is made with its event (`refund.succeeded`, or
    /// `refund.failed` for closed and abnormal) and, for a success, the order's
    /// `refunded_amount` (the order becomes `refunded` when it reaches its amount), all
    /// in one transaction. Anything else changes nothing but a missing refund_id.
    pub fn apply_refund(&self, r: &RefundResult, now: i64) -> Result<RefundApplied> {
        let applied = self.write(|tx| {
            let Some(refund) = refund_by_no(tx, r.out_refund_no)? else { return Ok(RefundApplied::Unknown) };
            tx.prepare_cached("UPDATE refunds SET refund_id = ?2 WHERE out_refund_no = ?1 AND refund_id IS NULL")?
                .execute(params![r.out_refund_no, r.refund_id])?;
            if !refund.state.may_become(r.state) {
                let refund = refund_by_no(tx, r.out_refund_no)?.unwrap_or(refund);
                return Ok(RefundApplied::Unchanged(refund));
            }
            let succeeded_at = (r.state == RefundState::Succeeded).then(|| r.succeeded_at.unwrap_or(now));
            tx.prepare_cached(
                "UPDATE refunds SET state = ?2, succeeded_at = ?3,
                        next_query_at = CASE WHEN ?4 THEN NULL ELSE next_query_at END
                 WHERE out_refund_no = ?1",
            )?
            .execute(params![r.out_refund_no, r.state.as_str(), succeeded_at, r.state.is_final()])?;
            if r.state == RefundState::Succeeded {
                tx.prepare_cached(
                    "UPDATE orders SET refunded_amount = refunded_amount + ?2,
                            state = CASE WHEN refunded_amount + ?2 >= amount THEN 'refunded' ELSE state END
                     WHERE out_trade_no = ?1",
                )?
                .execute(params![refund.out_trade_no, refund.amount])?;
            }
            let refund = refund_by_no(tx, r.out_refund_no)?
                .ok_or_else(|| StoreError::Refused(format!("refund {} vanished", r.out_refund_no)))?;
            let kind = if r.state == RefundState::Succeeded { EVENT_REFUND_SUCCEEDED } else { EVENT_REFUND_FAILED };
            insert_event_data(tx, kind, &refund.out_trade_no, &refund_json(&refund), now)?;
            Ok(RefundApplied::Changed(refund))
        })?;
        if matches!(applied, RefundApplied::Changed(_)) {
            // After the commit: the webhook's delivery thread need not wait for its next poll.
            self.outbox_bell().ring();
        }
        Ok(applied)
    }

    pub fn refund(&self, out_refund_no: &str) -> Result<Option<Refund>> {
        self.read(|c| refund_by_no(c, out_refund_no))
    }

    /// The order's refunds, oldest first.
    pub fn refunds_of_order(&self, out_trade_no: &str) -> Result<Vec<Refund>> {
        self.read(|c| {
            collect(
                &mut c.prepare_cached(concat!(
                    "SELECT ",
                    refund_columns!(),
                    " FROM refunds WHERE out_trade_no = ?1 ORDER BY id"
                ))?,
                [out_trade_no],
            )
        })
    }

    /// Refunds not final (processing, abnormal) whose next query is due, most overdue
    /// first: the maintenance task follows them, as notifications are not guaranteed.
    pub fn refunds_due_for_query(&self, now: i64, limit: usize) -> Result<Vec<Refund>> {
        self.read(|c| {
            collect(
                &mut c.prepare_cached(concat!(
                    "SELECT ",
                    refund_columns!(),
                    " FROM refunds WHERE next_query_at <= ?1 ORDER BY next_query_at LIMIT ?2"
                ))?,
                params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
            )
        })
    }

    /// WeChat Pay was asked about the refund at `now` and it is not final: the next
    /// query waits twice as long as the last interval, at most [`MAX_QUERY_INTERVAL`].
    pub fn note_refund_queried(&self, out_refund_no: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached(
                "UPDATE refunds SET queries = queries + 1, next_query_at = ?2 + min(?3 << min(queries + 1, 20), ?4)
                 WHERE out_refund_no = ?1 AND next_query_at IS NOT NULL",
            )?
            .execute(params![out_refund_no, now, FIRST_REFUND_QUERY_AFTER, MAX_QUERY_INTERVAL])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
