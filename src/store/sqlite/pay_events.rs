//! The webhook outbox's delivery side: which event goes next, leases, attempts, backoff,
//! giving up, and the operator's list and retry. Events are written by `orders.rs`, in
//! the transaction of the change they report.
//!
//! Delivery is at least once and in `seq` order for each order: an event is handed out
//! only when every earlier event of its order is delivered (or given up on), and each
//! hand-out is an attempt, leased in the transaction that picks it. A delivery thread that
//! dies mid-attempt (SIGKILL) leaves the lease to run out, and the event is then sent
//! again as the next attempt: never twice for one attempt, never lost.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{lock, Result, Sqlite};

/// The wait after the first failed attempt; each next one is twice the last, at most
/// [`MAX_RETRY_INTERVAL`].
pub const FIRST_RETRY_AFTER: i64 = 10;
pub const MAX_RETRY_INTERVAL: i64 = 3600;
/// An event still failing this long after it was written (or retried by hand) is given up on.
pub const GIVE_UP_AFTER: i64 = 3 * 86_400;

/// Where an event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Not delivered yet: due at `next_attempt_at` (or leased until then).
    Pending,
    Delivered,
    /// Given up on after [`GIVE_UP_AFTER`] of failures; `wxlogin pay events retry` revives it.
    Failed,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Delivered => "delivered",
            EventStatus::Failed => "failed",
        }
    }
}

/// One event of the outbox (`pay_events`): what happened to an order or a refund, written
/// in the transaction of the change, with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub id: String,
    pub out_trade_no: String,
    pub seq: i64,
    pub kind: String,
    pub created_at: i64,
    /// JSON, as written with the change.
    pub data: String,
    pub delivered_at: Option<i64>,
    pub failed_at: Option<i64>,
    /// Attempts started (a claimed event counts its attempt at once).
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

impl OutboxEvent {
    pub fn status(&self) -> EventStatus {
        match (self.delivered_at, self.failed_at) {
            (Some(_), _) => EventStatus::Delivered,
            (None, Some(_)) => EventStatus::Failed,
            (None, None) => EventStatus::Pending,
        }
    }
}

/// What recording a failed attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Due again at this time.
    At(i64),
    /// Past its give-up time: now `failed`.
    GaveUp,
    /// The attempt was no longer the event's latest (its lease ran out and another took
    /// it over, or it was delivered or retried meanwhile): nothing changed.
    Stale,
}

/// The undelivered events (failed ones apart) and when the oldest was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub pending: i64,
    pub oldest_created_at: Option<i64>,
    pub failed: i64,
}

/// The wait before the attempt after `attempts` failed ones: 10 s, 20 s, 40 s, ... 1 h.
pub fn backoff(attempts: i64) -> i64 {
    let doublings = attempts.saturating_sub(1).clamp(0, 20) as u32;
    (FIRST_RETRY_AFTER << doublings).min(MAX_RETRY_INTERVAL)
}

const COLUMNS: &str =
    "id, out_trade_no, seq, type, created_at, data, delivered_at, failed_at, attempts, next_attempt_at, last_error";

fn from_row(r: &Row) -> rusqlite::Result<OutboxEvent> {
    Ok(OutboxEvent {
        id: r.get(0)?,
        out_trade_no: r.get(1)?,
        seq: r.get(2)?,
        kind: r.get(3)?,
        created_at: r.get(4)?,
        data: r.get(5)?,
        delivered_at: r.get(6)?,
        failed_at: r.get(7)?,
        attempts: r.get(8)?,
        next_attempt_at: r.get(9)?,
        last_error: r.get(10)?,
    })
}

fn by_id(c: &Connection, id: &str) -> Result<Option<OutboxEvent>> {
    Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM pay_events WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

/// Wakes the delivery thread when an event is written, so it need not poll often.
#[derive(Default)]
pub struct Bell {
    rung: Mutex<bool>,
    cond: Condvar,
}

impl Bell {
    pub fn ring(&self) {
        *lock(&self.rung) = true;
        self.cond.notify_all();
    }

    /// Waits until rung (since the last wait) or `limit` has passed.
    pub fn wait(&self, limit: Duration) {
        let rung = lock(&self.rung);
        let (mut rung, _) = self.cond.wait_timeout_while(rung, limit, |r| !*r).unwrap_or_else(|p| p.into_inner());
        *rung = false;
    }
}

impl Sqlite {
    /// Rung by every write that adds an event.
    pub fn outbox_bell(&self) -> &Bell {
        &self.outbox_bell
    }

    /// Hands out the next event due at `now`, oldest due first, as a new attempt leased
    /// until `now + lease`: its attempt counted and its next attempt moved past the lease
    /// in the same transaction, so no other caller gets it before then. Never an event
    /// whose order has an earlier one not yet delivered (nor given up on).
    pub fn claim_event(&self, now: i64, lease: i64) -> Result<Option<OutboxEvent>> {
        self.write(|tx| {
            let id: Option<String> = tx
                .prepare_cached(
                    "SELECT e.id FROM pay_events e
                     WHERE e.delivered_at IS NULL AND e.failed_at IS NULL AND e.next_attempt_at <= ?1
                       AND NOT EXISTS (SELECT 1 FROM pay_events p
                                       WHERE p.out_trade_no = e.out_trade_no AND p.seq < e.seq
                                         AND p.delivered_at IS NULL AND p.failed_at IS NULL)
                     ORDER BY e.next_attempt_at, e.created_at, e.seq LIMIT 1",
                )?
                .query_row([now], |r| r.get(0))
                .optional()?;
            let Some(id) = id else { return Ok(None) };
            tx.prepare_cached("UPDATE pay_events SET attempts = attempts + 1, next_attempt_at = ?2 WHERE id = ?1")?
                .execute(params![id, now + lease])?;
            by_id(tx, &id)
        })
    }

    /// The receiver took the event. False when it was already delivered.
    pub fn mark_delivered(&self, id: &str, now: i64) -> Result<bool> {
        self.write(|tx| {
            Ok(tx
                .prepare_cached(
                    "UPDATE pay_events SET delivered_at = ?2, failed_at = NULL, last_error = NULL
                     WHERE id = ?1 AND delivered_at IS NULL",
                )?
                .execute(params![id, now])?
                == 1)
        })
    }

    /// Attempt number `attempt` failed with `error` (a status or "timeout": never a body
    /// or a URL): due again after [`backoff`], or given up on once past its give-up time.
    pub fn record_failed_attempt(&self, id: &str, attempt: i64, now: i64, error: &str) -> Result<Retry> {
        self.write(|tx| {
            let row: Option<(i64, Option<i64>)> = tx
                .prepare_cached(
                    "SELECT created_at, give_up_at FROM pay_events
                     WHERE id = ?1 AND attempts = ?2 AND delivered_at IS NULL AND failed_at IS NULL",
                )?
                .query_row(params![id, attempt], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((created_at, give_up_at)) = row else { return Ok(Retry::Stale) };
            if now >= give_up_at.unwrap_or(created_at + GIVE_UP_AFTER) {
                tx.prepare_cached("UPDATE pay_events SET failed_at = ?2, last_error = ?3 WHERE id = ?1")?
                    .execute(params![id, now, error])?;
                return Ok(Retry::GaveUp);
            }
            let at = now + backoff(attempt);
            tx.prepare_cached("UPDATE pay_events SET next_attempt_at = ?2, last_error = ?3 WHERE id = ?1")?
                .execute(params![id, at, error])?;
            Ok(Retry::At(at))
        })
    }

    /// Makes the event due now, whatever its status, with [`GIVE_UP_AFTER`] from now
    /// before it is given up on again: a failed one is revived, a delivered one sent again
    /// (its `id` lets the receiver drop it). Returns it as it was, or `None` if unknown.
    pub fn retry_event(&self, id: &str, now: i64) -> Result<Option<OutboxEvent>> {
        let before = self.write(|tx| {
            let Some(before) = by_id(tx, id)? else { return Ok(None) };
            tx.prepare_cached(
                "UPDATE pay_events SET delivered_at = NULL, failed_at = NULL, next_attempt_at = ?2, give_up_at = ?3
                 WHERE id = ?1",
            )?
            .execute(params![id, now, now + GIVE_UP_AFTER])?;
            Ok(Some(before))
        })?;
        if before.is_some() {
            self.outbox_bell.ring();
        }
        Ok(before)
    }

    pub fn pay_event(&self, id: &str) -> Result<Option<OutboxEvent>> {
        self.read(|c| by_id(c, id))
    }

    /// Events newest first (the order they were written: rowid, so no sort of the whole
    /// table); with `pending_only`, those not yet delivered (failed included).
    /// The order's events, in the order they happened.
    pub fn order_events(&self, out_trade_no: &str) -> Result<Vec<OutboxEvent>> {
        self.read(|c| {
            let mut st =
                c.prepare_cached(&format!("SELECT {COLUMNS} FROM pay_events WHERE out_trade_no = ?1 ORDER BY seq"))?;
            let rows = st.query_map([out_trade_no], from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub fn list_pay_events(&self, pending_only: bool, limit: usize) -> Result<Vec<OutboxEvent>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM pay_events WHERE (?1 = 0 OR delivered_at IS NULL)
                 ORDER BY rowid DESC LIMIT ?2"
            ))?;
            let rows = st.query_map(params![pending_only, i64::try_from(limit).unwrap_or(i64::MAX)], from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// For the metrics: how many events wait (and since when), and how many were given up on.
    pub fn outbox_backlog(&self) -> Result<Backlog> {
        self.read(|c| {
            let (pending, oldest_created_at) = c
                .prepare_cached(
                    "SELECT count(*), min(created_at) FROM pay_events WHERE delivered_at IS NULL AND failed_at IS NULL",
                )?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let failed = c
                .prepare_cached("SELECT count(*) FROM pay_events WHERE delivered_at IS NULL AND failed_at IS NOT NULL")?
                .query_row([], |r| r.get(0))?;
            Ok(Backlog { pending, oldest_created_at, failed })
        })
    }
}

#[cfg(test)]
mod tests;
