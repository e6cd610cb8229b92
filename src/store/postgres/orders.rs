//! WeChat Pay orders. (PostgreSQL: not written yet.)

#![allow(unused_variables)]

use super::Postgres;
use crate::store::{Applied, Created, NewOrder, Order, OrderState, Payment};
use crate::store::{Result, StoreError};

impl Postgres {
    pub fn create_order(&self, o: &NewOrder) -> Result<Created> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn set_prepay(&self, out_trade_no: &str, prepay_id: &str, at: i64) -> Result<()> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn order(&self, out_trade_no: &str) -> Result<Option<Order>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn orders_of_user(&self, user_id: i64, before: Option<&str>, limit: usize) -> Result<Vec<Order>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn apply_payment(&self, p: &Payment, now: i64) -> Result<Applied> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn close_order(&self, out_trade_no: &str, now: i64) -> Result<Option<Order>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn orders_due_for_query(&self, now: i64, limit: usize) -> Result<Vec<Order>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn note_queried(&self, out_trade_no: &str, now: i64) -> Result<()> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn expired_orders(&self, now: i64, limit: usize) -> Result<Vec<Order>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn list_orders(&self, state: Option<OrderState>, user_id: Option<i64>, limit: usize) -> Result<Vec<Order>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn order_counts(&self) -> Result<Vec<(String, i64)>> {
        Err(StoreError::Postgres("not written yet".into()))
    }
}
