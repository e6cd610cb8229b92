//! The webhook outbox. (PostgreSQL: not written yet.)

#![allow(unused_variables)]

use super::Postgres;
use crate::store::{Backlog, OutboxEvent, Retry};
use crate::store::{Result, StoreError};

impl Postgres {
    pub fn claim_event(&self, now: i64, lease: i64) -> Result<Option<OutboxEvent>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn mark_delivered(&self, id: &str, now: i64) -> Result<bool> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn record_failed_attempt(&self, id: &str, attempt: i64, now: i64, error: &str) -> Result<Retry> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn retry_event(&self, id: &str, now: i64) -> Result<Option<OutboxEvent>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn pay_event(&self, id: &str) -> Result<Option<OutboxEvent>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn order_events(&self, out_trade_no: &str) -> Result<Vec<OutboxEvent>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn list_pay_events(&self, pending_only: bool, limit: usize) -> Result<Vec<OutboxEvent>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn outbox_backlog(&self) -> Result<Backlog> {
        Err(StoreError::Postgres("not written yet".into()))
    }
}
