//! GET/DELETE /v1/session and GET /v1/auth: the verify path. One hash, one indexed
//! read, and a write only when the sliding window is due.

use serde::Serialize;

use super::UserView;
use crate::app::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::secrets::sha256;
use crate::store::{self, Lookup, SessionInfo, SLIDE_EVERY_SECONDS};

/// The live session of the presented token, with its expiry slid forward when due.
pub fn authenticate(app: &App, req: &Req) -> Result<SessionInfo, ApiError> {
    let token = bearer(req)?;
    let hash = sha256(token.as_bytes());
    let now = store::now();
    let mut info = match app.store.lookup_session(&hash, now)? {
        Lookup::Live(info) => *info,
        Lookup::Expired => return Err(ApiError::SessionExpired),
        Lookup::Unknown => return Err(ApiError::Unauthorized),
    };
    let cfg = &app.config.session;
    if cfg.sliding && now - info.last_seen_at >= SLIDE_EVERY_SECONDS {
        // Best effort: a busy writer must not fail a read-only request.
        match app.store.touch_session(&hash, now, cfg.ttl_seconds) {
            Ok(expires_at) => info.expires_at = expires_at,
            Err(e) => log::warn!("could not slide a session's expiry: {e}"),
        }
    }
    Ok(info)
}

/// The presented token. No Authorization header at all is [`ApiError::NoToken`] (RFC
/// 6750 answers it without an error attribute); a malformed one is an invalid token.
fn bearer(req: &Req) -> Result<&str, ApiError> {
    req.bearer().ok_or(if req.header("authorization").is_some() { ApiError::Unauthorized } else { ApiError::NoToken })
}

#[derive(Serialize)]
struct SessionView<'a> {
    user: UserView<'a>,
    app: &'a str,
    expires_at: i64,
}

pub fn get(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let s = authenticate(app, req)?;
    Ok(Resp::ok_typed(&SessionView { user: UserView::of(app, &s.user), app: &s.user.app, expires_at: s.expires_at }))
}

/// Ends the presented session; 204 also when it was already gone, so that a client can
/// always log out without first asking whether it is logged in.
pub fn delete(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let token = bearer(req)?;
    app.store.delete_session(&sha256(token.as_bytes()))?;
    Ok(Resp::empty(204))
}

/// For a reverse proxy's sub-request. The identity headers go to the team's own
/// services, so `expose_openid` does not hide them.
pub fn auth(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let s = authenticate(app, req)?;
    let mut resp = Resp::empty(200)
        .header("X-User-Id", s.user.id.to_string())
        .header("X-App", s.user.app.clone())
        .header("X-OpenId", s.user.openid.clone());
    if let Some(u) = &s.user.unionid {
        resp = resp.header("X-UnionId", u.clone());
    }
    Ok(resp)
}
