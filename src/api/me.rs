//! GET /v1/me, and PATCH, PUT or POST /v1/me: the user's own profile. PUT and POST are
//! the same partial update as PATCH because `wx.request` cannot send PATCH. Since WeChat
//! stopped handing out nicknames and avatars, the user fills them in; they are ordinary,
//! unsigned input.

use serde::Deserialize;

use super::session::authenticate;
use super::user_json;
use crate::app::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};

pub fn get(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let s = authenticate(app, req)?;
    Ok(Resp::ok(user_json(app, &s.user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    nickname: Option<String>,
    avatar_url: Option<String>,
}

pub fn patch(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let s = authenticate(app, req)?;
    let p: Patch = Req::decode(req.object(false)?)?;
    if p.nickname.is_none() && p.avatar_url.is_none() {
        return Err(ApiError::InvalidRequest("Send `nickname`, `avatar_url` or both.".into()));
    }
    if let Some(n) = &p.nickname {
        check_nickname(n)?;
    }
    if let Some(u) = &p.avatar_url {
        check_avatar_url(u)?;
    }
    let user = app
        .store
        .update_profile(s.user.id, p.nickname.as_deref(), p.avatar_url.as_deref(), None)?
        .ok_or(ApiError::Unauthorized)?;
    Ok(Resp::ok(user_json(app, &user)))
}

fn check_nickname(n: &str) -> Result<(), ApiError> {
    let chars = n.chars().count();
    if chars == 0 || chars > 64 || n.trim().is_empty() {
        return Err(ApiError::InvalidField("`nickname` must be 1 to 64 characters and not blank.".into()));
    }
    if n.chars().any(char::is_control) {
        return Err(ApiError::InvalidField("`nickname` must not contain control characters.".into()));
    }
    Ok(())
}

fn check_avatar_url(u: &str) -> Result<(), ApiError> {
    let lower = u.to_ascii_lowercase();
    let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"));
    let has_host = rest.is_some_and(|r| r.split(['/', '?', '#']).next().is_some_and(|h| !h.is_empty()));
    if u.len() > 1024 || !has_host || u.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(ApiError::InvalidField("`avatar_url` must be an http(s) URL of at most 1024 bytes.".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_and_avatars_are_checked() {
        assert!(check_nickname("小明").is_ok());
        assert!(check_nickname(&"字".repeat(64)).is_ok());
        assert!(check_nickname(&"字".repeat(65)).is_err());
        assert!(check_nickname(" ").is_err());
        assert!(check_avatar_url("https://thirdwx.qlogo.cn/a/b.png").is_ok());
        assert!(check_avatar_url("ftp://x/y").is_err());
        assert!(check_avatar_url("https://").is_err());
        assert!(check_avatar_url(&format!("https://x/{}", "a".repeat(1024))).is_err());
    }
}
