//! Users and the login transaction. (PostgreSQL: not written yet.)

#![allow(unused_variables)]

use super::Postgres;
use crate::secrets::Secret;
use crate::store::{Caller, LoginOutcome, NewLogin, Replay, Terms, User};
use crate::store::{Result, StoreError};

impl Postgres {
    pub fn record_login(&self, l: &NewLogin) -> Result<LoginOutcome> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn replay_login(
        &self,
        app: &str,
        code_hash: &[u8; 32],
        caller: &Caller,
        window: i64,
        terms: &Terms,
        new_token_hash: &mut dyn FnMut() -> [u8; 32],
    ) -> Result<Replay> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn user(&self, id: i64) -> Result<Option<User>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn user_by_openid(&self, openid: &str) -> Result<Vec<User>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn list_users(&self, app: Option<&str>, limit: i64) -> Result<Vec<User>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn session_key(&self, user_id: i64) -> Result<Option<Secret>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn update_profile(
        &self,
        user_id: i64,
        nickname: Option<&str>,
        avatar_url: Option<&str>,
        gender: Option<i64>,
    ) -> Result<Option<User>> {
        Err(StoreError::Postgres("not written yet".into()))
    }

    pub fn update_phone(&self, user_id: i64, phone_number: &str, country_code: Option<&str>) -> Result<Option<User>> {
        Err(StoreError::Postgres("not written yet".into()))
    }
}
