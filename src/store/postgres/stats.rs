//! Counts for `wxlogin stats`. (PostgreSQL: not written yet.)

#![allow(unused_variables)]

use super::Postgres;
use crate::store::Stats;
use crate::store::{Result, StoreError};

impl Postgres {
    pub fn stats(&self, now: i64) -> Result<Stats> {
        Err(StoreError::Postgres("not written yet".into()))
    }
}
