//! POST /v1/me/phone: the phone number behind a getPhoneNumber button's code, fetched
//! from WeChat with the app's access token (see `wechat::access_token`).

use serde::Deserialize;
use serde_json::json;

use super::session::authenticate;
use crate::app::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneBody {
    code: String,
}

pub fn phone(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let s = authenticate(app, req)?;
    let body: PhoneBody = Req::decode(req.object(false)?)?;
    if body.code.is_empty() || body.code.len() > 256 || !body.code.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "code",
            "must be the printable characters that the getPhoneNumber button returned, without spaces",
        ));
    }
    // Each lookup costs a call against the app's WeChat quota, shared by every user.
    app.user_limits.phone_lookup(s.user.id).map_err(|retry_after| ApiError::PhoneBudgetSpent { retry_after })?;
    // With the openid, WeChat also checks that the code was made for this very user.
    let p = app.tokens.phone_number(&s.user.app, &body.code, Some(&s.user.openid))?;
    app.store.update_phone(s.user.id, &p.phone_number, p.country_code.as_deref())?.ok_or(ApiError::Unauthorized)?;
    Ok(Resp::ok(json!({
        "phone_number": p.phone_number,
        "pure_phone_number": p.pure_phone_number,
        "country_code": p.country_code,
    })))
}
