//! The `/__fake/*` endpoints through which tests and the demo play the mini-program's
//! part (`wx.login()`, getPhoneNumber, encrypted open data) and steer the fake.
//! The module documentation of `fake_wechat` lists them.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::api::Method;
use super::behaviour::{Failure, APIS};
use super::ids;
use super::open_data::{self, Kind, Subject};
use super::phone::PhoneInfo;
use super::reply::{Reply, CONTROL_JSON};
use super::state::Shared;

const MAX_NAME: usize = 256;
const MAX_LATENCY_MS: u64 = 600_000;

type Outcome = Result<Value, Reply>;

/// Answers a request under `/__fake/`.
pub(crate) fn handle(shared: &Shared, method: Method, path: &str, body: &[u8]) -> Reply {
    let outcome = match (path, method) {
        ("/__fake/stats", Method::Get) => Ok(shared.lock().stats(shared.clock.now())),
        ("/__fake/login", Method::Post) => parse(body).and_then(|r| login(shared, r)),
        ("/__fake/open_data", Method::Post) => parse(body).and_then(|r| open_data(shared, r)),
        ("/__fake/phone_code", Method::Post) => parse(body).and_then(|r| phone_code(shared, r)),
        ("/__fake/behaviour", Method::Post) => parse(body).and_then(|r| behaviour(shared, r)),
        ("/__fake/app", Method::Post) => parse(body).and_then(|r| app(shared, r)),
        ("/__fake/stats", _) => Err(Reply::fake_error(405, "use GET")),
        ("/__fake/login" | "/__fake/open_data" | "/__fake/phone_code" | "/__fake/behaviour" | "/__fake/app", _) => {
            Err(Reply::fake_error(405, "use POST with a JSON body"))
        }
        _ => Err(Reply::fake_error(404, &format!("no control endpoint {path}"))),
    };
    match outcome {
        Ok(value) => Reply::json(200, CONTROL_JSON, &value),
        Err(reply) => reply,
    }
}

/// A JSON body into a request type, with an error that names the field at fault.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Reply> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            bad_request(&format!("invalid JSON body: {}", e.inner()))
        } else {
            bad_request(&format!("{path}: {}", e.inner()))
        }
    })?;
    json.end().map_err(|e| bad_request(&format!("invalid JSON body: {e}")))?;
    Ok(value)
}

fn bad_request(message: &str) -> Reply {
    Reply::fake_error(400, message)
}

fn check_name(field: &str, value: &str) -> Result<(), Reply> {
    if value.is_empty() || value.len() > MAX_NAME || value.chars().any(char::is_control) {
        return Err(bad_request(&format!("{field}: must be 1 to {MAX_NAME} bytes without control characters")));
    }
    Ok(())
}

fn check_digits(field: &str, value: &str, max: usize) -> Result<(), Reply> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_request(&format!("{field}: must be 1 to {max} digits")));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    appid: Option<String>,
    user: String,
    unionid: Option<bool>,
}

fn login(shared: &Shared, req: LoginRequest) -> Outcome {
    check_name("user", &req.user)?;
    let now = shared.clock.now();
    let mut state = shared.lock();
    let appid = state.resolve_app(req.appid.as_deref()).map_err(|m| bad_request(&m))?;
    let rotate = state.behaviour.rotate_session_key;
    let issued = state.sessions.issue_code(&appid, &req.user, req.unionid, rotate, now);
    Ok(json!({"code": issued.code, "openid": issued.openid, "unionid": issued.unionid}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenDataRequest {
    appid: Option<String>,
    user: String,
    kind: String,
    data: Option<Map<String, Value>>,
    watermark_appid: Option<String>,
    timestamp: Option<i64>,
}

fn open_data(shared: &Shared, req: OpenDataRequest) -> Outcome {
    check_name("user", &req.user)?;
    let kind = Kind::parse(&req.kind)
        .ok_or_else(|| bad_request("kind: must be one of \"user_info\", \"phone\", \"werun\", \"share\""))?;
    let now = shared.clock.now();
    let state = shared.lock();
    let appid = state.resolve_app(req.appid.as_deref()).map_err(|m| bad_request(&m))?;
    let session = state.sessions.by_name(&appid, &req.user).ok_or_else(|| {
        Reply::fake_error(409, &format!("{} has no session_key in {appid} yet: get a login code first", req.user))
    })?;
    let mut iv = [0u8; 16];
    crate::secrets::random_bytes(&mut iv);
    let subject = Subject {
        appid: &appid,
        user: &req.user,
        openid: &session.openid,
        unionid: session.unionid.as_deref(),
        watermark_appid: req.watermark_appid.as_deref().unwrap_or(&appid),
        timestamp: req.timestamp.unwrap_or(now),
    };
    let produced = open_data::produce(kind, &subject, req.data.as_ref(), &session.session_key, iv);
    let mut reply = json!({"encrypted_data": produced.encrypted_data, "iv": produced.iv});
    if let (Some(raw), Some(signature)) = (produced.raw_data, produced.signature) {
        reply["raw_data"] = json!(raw);
        reply["signature"] = json!(signature);
    }
    Ok(reply)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneCodeRequest {
    appid: Option<String>,
    user: String,
    phone: Option<String>,
    country_code: Option<String>,
}

fn phone_code(shared: &Shared, req: PhoneCodeRequest) -> Outcome {
    check_name("user", &req.user)?;
    let phone = req.phone.unwrap_or_else(|| "13800138000".to_string());
    check_digits("phone", &phone, 20)?;
    let country_code = req.country_code.unwrap_or_else(|| "86".to_string());
    check_digits("country_code", &country_code, 4)?;
    let now = shared.clock.now();
    let mut state = shared.lock();
    let appid = state.resolve_app(req.appid.as_deref()).map_err(|m| bad_request(&m))?;
    let info = PhoneInfo {
        openid: ids::openid(&appid, &req.user),
        appid,
        pure_phone_number: phone,
        country_code,
        issued_at: now,
    };
    Ok(json!({"code": state.phones.issue(info, now)}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailRequest {
    api: String,
    errcode: Value,
    times: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BehaviourRequest {
    latency_ms: Option<u64>,
    fail: Option<FailRequest>,
    clear_failures: Option<bool>,
    country_code_as_string: Option<bool>,
    errcode_on_success: Option<bool>,
    rotate_session_key: Option<bool>,
    invalidate_tokens: Option<bool>,
    advance_seconds: Option<i64>,
}

fn failure(fail: &FailRequest) -> Result<Failure, Reply> {
    if fail.api != "*" && !APIS.contains(&fail.api.as_str()) {
        return Err(bad_request(&format!("fail.api: must be \"*\" or one of {}", APIS.join(", "))));
    }
    match &fail.errcode {
        Value::String(s) if s == "http_500" => Ok(Failure::Http500),
        Value::String(s) if s == "garbage" => Ok(Failure::Garbage),
        Value::String(s) if s == "hang" => Ok(Failure::Hang),
        Value::Number(n) => match n.as_i64() {
            Some(code) if code != 0 => Ok(Failure::Errcode(code)),
            _ => Err(bad_request("fail.errcode: must be a non-zero integer")),
        },
        _ => Err(bad_request("fail.errcode: must be a non-zero integer, \"http_500\", \"garbage\" or \"hang\"")),
    }
}

fn behaviour(shared: &Shared, req: BehaviourRequest) -> Outcome {
    // Everything is checked before anything changes, so a rejected request changes nothing.
    let injected =
        req.fail.as_ref().map(|f| Ok::<_, Reply>((f.api.clone(), failure(f)?, f.times.unwrap_or(1)))).transpose()?;
    if req.latency_ms.is_some_and(|ms| ms > MAX_LATENCY_MS) {
        return Err(bad_request(&format!("latency_ms: at most {MAX_LATENCY_MS}")));
    }
    if req.advance_seconds.is_some_and(|s| s < 0) {
        return Err(bad_request("advance_seconds: must not be negative"));
    }

    if let Some(seconds) = req.advance_seconds {
        shared.clock.advance(seconds);
    }
    let now = shared.clock.now();
    let mut state = shared.lock();
    let b = &mut state.behaviour;
    if req.clear_failures == Some(true) {
        b.clear_failures();
    }
    if let Some((api, failure, times)) = injected {
        b.inject(&api, failure, times);
    }
    if let Some(ms) = req.latency_ms {
        b.latency = Duration::from_millis(ms);
    }
    if let Some(v) = req.country_code_as_string {
        b.country_code_as_string = v;
    }
    if let Some(v) = req.errcode_on_success {
        b.errcode_on_success = v;
    }
    if let Some(v) = req.rotate_session_key {
        b.rotate_session_key = v;
    }
    if req.invalidate_tokens == Some(true) {
        state.tokens.invalidate_all(now);
    }
    Ok(json!({"ok": true}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppRequest {
    appid: String,
    secret: String,
}

fn app(shared: &Shared, req: AppRequest) -> Outcome {
    check_name("appid", &req.appid)?;
    check_name("secret", &req.secret)?;
    shared.lock().apps.insert(req.appid, req.secret);
    Ok(json!({"ok": true}))
}
