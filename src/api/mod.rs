//! Handlers: plain functions of (&App, &Req) -> Result<Resp, ApiError>. They never see
//! SQL or tiny_http, so they can be called in tests without sockets.

pub mod decrypt;
pub mod internal;
pub mod login;
pub mod me;
pub mod ops;
pub mod pay;
pub mod phone;
pub mod session;

use serde::Serialize;
use serde_json::Value;

use crate::app::App;
use crate::store::User;

/// The contract's User object; `openid` is left out when `session.expose_openid` is off.
/// Typed, so that the verify path serializes it without building a map first.
#[derive(Serialize)]
pub struct UserView<'a> {
    id: i64,
    app: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    openid: Option<&'a str>,
    unionid: Option<&'a str>,
    nickname: Option<&'a str>,
    avatar_url: Option<&'a str>,
    gender: Option<i64>,
    phone_number: Option<&'a str>,
    country_code: Option<&'a str>,
    created_at: i64,
    last_login_at: i64,
}

impl<'a> UserView<'a> {
    pub fn of(app: &App, u: &'a User) -> UserView<'a> {
        UserView {
            id: u.id,
            app: &u.app,
            openid: app.config.session.expose_openid.then_some(u.openid.as_str()),
            unionid: u.unionid.as_deref(),
            nickname: u.nickname.as_deref(),
            avatar_url: u.avatar_url.as_deref(),
            gender: u.gender,
            phone_number: u.phone_number.as_deref(),
            country_code: u.country_code.as_deref(),
            created_at: u.created_at,
            last_login_at: u.last_login_at,
        }
    }
}

pub fn user_json(app: &App, u: &User) -> Value {
    serde_json::to_value(UserView::of(app, u)).unwrap_or(Value::Null)
}
