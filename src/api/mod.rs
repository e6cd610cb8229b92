//! Handlers: plain functions of (&App, &Req) -> Result<Resp, ApiError>. They never see
//! SQL or tiny_http, so they can be called in tests without sockets.

pub mod decrypt;
pub mod internal;
pub mod login;
pub mod me;
pub mod ops;
pub mod phone;
pub mod session;

use serde_json::{json, Value};

use crate::app::App;
use crate::store::User;

/// The contract's User object; `openid` is left out when `session.expose_openid` is off.
pub fn user_json(app: &App, u: &User) -> Value {
    let mut v = json!({
        "id": u.id,
        "app": u.app,
        "openid": u.openid,
        "unionid": u.unionid,
        "nickname": u.nickname,
        "avatar_url": u.avatar_url,
        "gender": u.gender,
        "phone_number": u.phone_number,
        "country_code": u.country_code,
        "created_at": u.created_at,
        "last_login_at": u.last_login_at,
    });
    if !app.config.session.expose_openid {
        if let Some(map) = v.as_object_mut() {
            map.remove("openid");
        }
    }
    v
}
