//! The webhook outbox's delivery side, drained by every instance at once.
//!
//! An event is handed out by one statement that picks it `FOR UPDATE SKIP LOCKED` and
//! leases it (its attempt counted, its next attempt moved past the lease): an instance
//! never waits on another's pick, and a row another instance has just leased no longer
//! passes the "due" test when PostgreSQL re-checks it after the lock, so no event is
//! handed out twice for one attempt. The per-order check looks at every undelivered,
//! not-given-up earlier event whatever its lease, so an order's events go in `seq` order
//! even while another instance holds an earlier one.

use postgres::Row;

use super::Postgres;
use crate::store::Result;
use crate::store::{backoff, Backlog, OutboxEvent, Retry, GIVE_UP_AFTER};

macro_rules! columns {
    () => {
        "id, out_trade_no, seq, type, created_at, data, delivered_at, failed_at, attempts, next_attempt_at, last_error"
    };
}

fn from_row(r: &Row) -> Result<OutboxEvent> {
    Ok(OutboxEvent {
        id: r.try_get(0)?,
        out_trade_no: r.try_get(1)?,
        seq: r.try_get(2)?,
        kind: r.try_get(3)?,
        created_at: r.try_get(4)?,
        data: r.try_get(5)?,
        delivered_at: r.try_get(6)?,
        failed_at: r.try_get(7)?,
        attempts: r.try_get(8)?,
        next_attempt_at: r.try_get(9)?,
        last_error: r.try_get(10)?,
    })
}

fn events(rows: Vec<Row>) -> Result<Vec<OutboxEvent>> {
    rows.iter().map(from_row).collect()
}

impl Postgres {
    /// As SQLite's: the next event due at `now`, oldest due first, leased until
    /// `now + lease` as a new attempt; never one whose order has an earlier event not yet
    /// delivered (nor given up on).
    pub fn claim_event(&self, now: i64, lease: i64) -> Result<Option<OutboxEvent>> {
        self.tx(|tx| {
            tx.query_opt(
                concat!(
                    "UPDATE pay_events SET attempts = attempts + 1, next_attempt_at = $2
                     WHERE id = (SELECT e.id FROM pay_events e
                                 WHERE e.delivered_at IS NULL AND e.failed_at IS NULL AND e.next_attempt_at <= $1
                                   AND NOT EXISTS (SELECT 1 FROM pay_events p
                                                   WHERE p.out_trade_no = e.out_trade_no AND p.seq < e.seq
                                                     AND p.delivered_at IS NULL AND p.failed_at IS NULL)
                                 ORDER BY e.next_attempt_at, e.created_at, e.seq
                                 LIMIT 1
                                 FOR UPDATE OF e SKIP LOCKED)
                     RETURNING ",
                    columns!()
                ),
                &[&now, &(now + lease)],
            )?
            .as_ref()
            .map(from_row)
            .transpose()
        })
    }

    pub fn mark_delivered(&self, id: &str, now: i64) -> Result<bool> {
        Ok(self.conn()?.execute(
            "UPDATE pay_events SET delivered_at = $2, failed_at = NULL, last_error = NULL
             WHERE id = $1 AND delivered_at IS NULL",
            &[&id, &now],
        )? == 1)
    }

    /// As SQLite's, in one conditional statement: only while `attempt` is still the
    /// event's latest and it is neither delivered nor given up on.
    pub fn record_failed_attempt(&self, id: &str, attempt: i64, now: i64, error: &str) -> Result<Retry> {
        let at = now + backoff(attempt);
        let row = self.conn()?.query_opt(
            "UPDATE pay_events
             SET failed_at = CASE WHEN $3 >= coalesce(give_up_at, created_at + $5) THEN $3 END,
                 next_attempt_at = CASE WHEN $3 >= coalesce(give_up_at, created_at + $5) THEN next_attempt_at
                                        ELSE $4 END,
                 last_error = $6
             WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL AND failed_at IS NULL
             RETURNING failed_at IS NOT NULL",
            &[&id, &attempt, &now, &at, &GIVE_UP_AFTER, &error],
        )?;
        Ok(match row {
            None => Retry::Stale,
            Some(r) if r.try_get::<_, bool>(0)? => Retry::GaveUp,
            Some(_) => Retry::At(at),
        })
    }

    /// As SQLite's: returns the event as it was before.
    pub fn retry_event(&self, id: &str, now: i64) -> Result<Option<OutboxEvent>> {
        let before = self.tx(|tx| {
            let Some(row) =
                tx.query_opt(concat!("SELECT ", columns!(), " FROM pay_events WHERE id = $1 FOR UPDATE"), &[&id])?
            else {
                return Ok(None);
            };
            let before = from_row(&row)?;
            tx.execute(
                "UPDATE pay_events SET delivered_at = NULL, failed_at = NULL, next_attempt_at = $2, give_up_at = $3
                 WHERE id = $1",
                &[&id, &now, &(now + GIVE_UP_AFTER)],
            )?;
            Ok(Some(before))
        })?;
        if before.is_some() {
            self.outbox_bell().ring();
        }
        Ok(before)
    }

    pub fn pay_event(&self, id: &str) -> Result<Option<OutboxEvent>> {
        self.conn()?
            .query_opt(concat!("SELECT ", columns!(), " FROM pay_events WHERE id = $1"), &[&id])?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    pub fn order_events(&self, out_trade_no: &str) -> Result<Vec<OutboxEvent>> {
        events(self.conn()?.query(
            concat!("SELECT ", columns!(), " FROM pay_events WHERE out_trade_no = $1 ORDER BY seq"),
            &[&out_trade_no],
        )?)
    }

    /// Newest first. PostgreSQL has no rowid: written order is `created_at`, then `seq`
    /// within an order (events of different orders written in the same second come by
    /// `out_trade_no`).
    pub fn list_pay_events(&self, pending_only: bool, limit: usize) -> Result<Vec<OutboxEvent>> {
        events(self.conn()?.query(
            concat!(
                "SELECT ",
                columns!(),
                " FROM pay_events WHERE (NOT $1 OR delivered_at IS NULL)
                 ORDER BY created_at DESC, out_trade_no DESC, seq DESC LIMIT $2"
            ),
            &[&pending_only, &super::limit(limit)],
        )?)
    }

    pub fn outbox_backlog(&self) -> Result<Backlog> {
        let row = self.conn()?.query_one(
            "SELECT count(*) FILTER (WHERE failed_at IS NULL),
                    min(created_at) FILTER (WHERE failed_at IS NULL),
                    count(*) FILTER (WHERE failed_at IS NOT NULL)
             FROM pay_events WHERE delivered_at IS NULL",
            &[],
        )?;
        Ok(Backlog { pending: row.try_get(0)?, oldest_created_at: row.try_get(1)?, failed: row.try_get(2)? })
    }
}
