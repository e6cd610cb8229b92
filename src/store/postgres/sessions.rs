//! Sessions. (PostgreSQL: not written yet.)

#![allow(unused_variables)]

use super::Postgres;
use crate::store::{Lookup, SessionRow};
use crate::store::{Result, StoreError};

impl Postgres {
    pub fn lookup_session(&self, token_hash: &[u8; 32], now: i64) -> Result<Lookup> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn touch_session(&self, token_hash: &[u8; 32], now: i64, ttl: i64) -> Result<i64> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn delete_session(&self, token_hash: &[u8; 32]) -> Result<bool> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn revoke_sessions(&self, user_id: Option<i64>) -> Result<usize> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn list_sessions(&self, user_id: i64, now: i64) -> Result<Vec<SessionRow>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn live_sessions(&self, now: i64) -> Result<i64> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn purge(&self, now: i64, code_window: i64) -> Result<usize> {
        Err(StoreError::Postgres("not written yet".into()))
    }
}
