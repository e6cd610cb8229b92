//! /internal/v1/access_token: the team's other services get each app's access token
//! here instead of fetching their own (which, with cgi-bin/token, would invalidate
//! ours). Guarded by `internal.api_keys`; absent when none is configured.

use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::secrets::{ct_eq, sha256};

/// 404 when no key is configured (the endpoint does not exist), 401 without a
/// configured key. Every key is compared, in constant time over hashes of equal length.
pub(crate) fn require_key(app: &App, req: &Req) -> Result<(), ApiError> {
    let keys = &app.config.internal.api_keys;
    if keys.is_empty() {
        return Err(ApiError::NotFound);
    }
    let presented = sha256(req.bearer().ok_or(ApiError::BadApiKey)?.as_bytes());
    let mut ok = false;
    for k in keys {
        ok |= ct_eq(&sha256(k.expose().as_bytes()), &presented);
    }
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadApiKey)
    }
}

fn token_response(app: &App, name: &str, extra: Option<bool>) -> Result<Resp, ApiError> {
    let (token, expires_at) = app.tokens.current_token(name)?;
    let mut body = json!({"access_token": token.expose(), "expires_at": expires_at});
    if let Some(replaced) = extra {
        body["replaced"] = replaced.into();
    }
    Ok(Resp::ok(body).header("Cache-Control", "no-store"))
}

/// GET ?app=NAME: the current token, valid for at least 5 more minutes.
pub fn get_token(app: &App, req: &Req) -> Result<Resp, ApiError> {
    require_key(app, req)?;
    let cfg = app.resolve_app(req.query_param("app").as_deref())?;
    token_response(app, &cfg.name, None)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    app: Option<String>,
    invalid: String,
}

/// POST {"app", "invalid": TOKEN}: WeChat rejected TOKEN; it is replaced only if it is
/// still the current one. Answers with the current token and whether it was replaced.
pub fn report_token(app: &App, req: &Req) -> Result<Resp, ApiError> {
    require_key(app, req)?;
    let r: Report = Req::decode(req.object(false)?)?;
    let cfg = app.resolve_app(r.app.as_deref())?;
    if r.invalid.is_empty() {
        return Err(ApiError::invalid("invalid", "must be the access token that WeChat rejected"));
    }
    let replaced = app.tokens.report_invalid(&cfg.name, &r.invalid);
    token_response(app, &cfg.name, Some(replaced))
}
