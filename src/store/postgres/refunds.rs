//! WeChat Pay refunds. (PostgreSQL: not written yet.)

#![allow(unused_variables)]

use super::Postgres;
use crate::store::{NewRefund, Refund, RefundApplied, RefundCreated, RefundResult};
use crate::store::{Result, StoreError};

impl Postgres {
    pub fn create_refund(&self, n: &NewRefund) -> Result<RefundCreated> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn forget_refund(&self, out_refund_no: &str) -> Result<bool> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn apply_refund(&self, r: &RefundResult, now: i64) -> Result<RefundApplied> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn refund(&self, out_refund_no: &str) -> Result<Option<Refund>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn refunds_of_order(&self, out_trade_no: &str) -> Result<Vec<Refund>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn refunds_due_for_query(&self, now: i64, limit: usize) -> Result<Vec<Refund>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn note_refund_queried(&self, out_refund_no: &str, now: i64) -> Result<()> {
        Err(StoreError::Postgres("not written yet".into()))
    }
}
