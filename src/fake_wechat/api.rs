//! The WeChat endpoints themselves: parameter checks in WeChat's order and WeChat's
//! reply shapes, over the stores in `State`.

use serde_json::{json, Map, Value};

use super::behaviour::{Failure, HANG};
use super::reply::{Errcode, Reply, WECHAT_JSON, WECHAT_TEXT};
use super::state::State;
use crate::secrets::ct_eq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Other,
}

/// One request to a WeChat endpoint, already read off the wire.
#[derive(Debug, Clone)]
pub(crate) struct Call<'a> {
    pub method: Method,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Call<'_> {
    /// The first value of a query parameter; an empty value counts as missing, as it
    /// does for WeChat ("appid missing" for `appid=`).
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }
}

/// The API name for a request path, if it is one the fake serves.
pub(crate) fn api_for_path(path: &str) -> Option<&'static str> {
    match path {
        "/sns/jscode2session" => Some("jscode2session"),
        "/cgi-bin/token" => Some("token"),
        "/cgi-bin/stable_token" => Some("stable_token"),
        "/wxa/business/getuserphonenumber" => Some("getuserphonenumber"),
        "/wxa/checksession" => Some("checksession"),
        "/wxa/resetusersessionkey" => Some("resetusersessionkey"),
        _ => None,
    }
}

/// Answers one call of `api`: counts it, serves a queued failure if there is one (which
/// leaves every store untouched, so a retry with the same code still works), else does
/// what WeChat would.
pub(crate) fn handle(state: &mut State, api: &'static str, call: &Call<'_>, now: i64) -> Reply {
    state.count_call(api);
    let content_type = if api == "jscode2session" { WECHAT_TEXT } else { WECHAT_JSON };
    if let Some(failure) = state.behaviour.take_failure(api) {
        return failure_reply(failure, content_type);
    }
    let result = match api {
        "jscode2session" => jscode2session(state, call, now),
        "token" => token(state, call, now),
        "stable_token" => stable_token(state, call, now),
        "getuserphonenumber" => getuserphonenumber(state, call, now),
        "checksession" => checksession(state, call, now),
        "resetusersessionkey" => resetusersessionkey(state, call, now),
        _ => Err(-1),
    };
    match result {
        Ok(body) => Reply::json(200, content_type, &body),
        Err(errcode) => Reply::wechat_error(errcode, content_type),
    }
}

fn failure_reply(failure: Failure, content_type: &'static str) -> Reply {
    match failure {
        Failure::Errcode(errcode) => Reply::wechat_error(errcode, content_type),
        Failure::Http500 => Reply {
            status: 500,
            content_type: "text/html",
            body: "<html><head><title>500 Internal Server Error</title></head>\
                   <body><center><h1>500 Internal Server Error</h1></center></body></html>"
                .to_string(),
            delay: None,
            headers: Vec::new(),
        },
        Failure::Garbage => Reply {
            status: 200,
            content_type,
            body: "<html><body>upstream temporarily unavailable</body></html>".to_string(),
            delay: None,
            headers: Vec::new(),
        },
        Failure::Hang => Reply { delay: Some(HANG), ..Reply::wechat_error(-1, content_type) },
    }
}

fn require(call: &Call<'_>, method: Method) -> Result<(), Errcode> {
    match (method, call.method == method) {
        (_, true) => Ok(()),
        (Method::Post, false) => Err(43002),
        _ => Err(43001),
    }
}

/// appid then secret, as every API that takes the AppSecret checks them.
fn check_app(state: &State, appid: Option<&str>, secret: Option<&str>) -> Result<String, Errcode> {
    let appid = appid.ok_or(41002)?;
    let expected = state.apps.get(appid).ok_or(40013)?;
    let secret = secret.ok_or(41004)?;
    if !ct_eq(secret.as_bytes(), expected.as_bytes()) {
        return Err(40125);
    }
    Ok(appid.to_string())
}

/// Marks a success body the way the docs' examples (not the real servers) do, when asked.
fn success(state: &State, mut body: Map<String, Value>) -> Value {
    if state.behaviour.errcode_on_success {
        body.insert("errcode".into(), json!(0));
        body.insert("errmsg".into(), json!("ok"));
    }
    Value::Object(body)
}

fn jscode2session(state: &mut State, call: &Call<'_>, now: i64) -> Result<Value, Errcode> {
    require(call, Method::Get)?;
    let appid = check_app(state, call.param("appid"), call.param("secret"))?;
    if call.param("grant_type") != Some("authorization_code") {
        return Err(40002);
    }
    let code = call.param("js_code").ok_or(41008)?;
    let session = match state.sessions.redeem(&appid, code, now) {
        Err(40029) if state.mock_codes && code.starts_with("mock-") => {
            let rotate = state.behaviour.rotate_session_key;
            state.sessions.redeem_mock(&appid, code, rotate, now)
        }
        other => other?,
    };
    let mut body = Map::new();
    body.insert("openid".into(), json!(session.openid));
    body.insert("session_key".into(), json!(session.session_key));
    if let Some(unionid) = session.unionid {
        body.insert("unionid".into(), json!(unionid));
    }
    Ok(success(state, body))
}

fn token(state: &mut State, call: &Call<'_>, now: i64) -> Result<Value, Errcode> {
    require(call, Method::Get)?;
    if call.param("grant_type") != Some("client_credential") {
        return Err(40002);
    }
    let appid = check_app(state, call.param("appid"), call.param("secret"))?;
    let issued = state.tokens.classic(&appid, state.daily_token_quota, now)?;
    let mut body = Map::new();
    body.insert("access_token".into(), json!(issued.token));
    body.insert("expires_in".into(), json!(issued.expires_in));
    Ok(success(state, body))
}

fn stable_token(state: &mut State, call: &Call<'_>, now: i64) -> Result<Value, Errcode> {
    require(call, Method::Post)?;
    // A form-encoded or empty body reads as "no appid" to WeChat.
    let body = json_object(call.body).ok_or(41002)?;
    let field = |name: &str| body.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    if field("grant_type") != Some("client_credential") {
        return Err(40002);
    }
    let appid = check_app(state, field("appid"), field("secret"))?;
    let force_refresh = match body.get("force_refresh") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(47001),
    };
    let issued = state.tokens.stable(&appid, force_refresh, now)?;
    let mut reply = Map::new();
    reply.insert("access_token".into(), json!(issued.token));
    reply.insert("expires_in".into(), json!(issued.expires_in));
    Ok(success(state, reply))
}

/// The app an `access_token` query parameter belongs to: 41001 missing, 40001 unknown
/// or superseded, 42001 expired.
fn authorise(state: &State, call: &Call<'_>, now: i64) -> Result<String, Errcode> {
    let token = call.param("access_token").ok_or(41001)?;
    state.tokens.check(token, now).map(str::to_string)
}

fn getuserphonenumber(state: &mut State, call: &Call<'_>, now: i64) -> Result<Value, Errcode> {
    require(call, Method::Post)?;
    let appid = authorise(state, call, now)?;
    if call.body.iter().all(u8::is_ascii_whitespace) {
        return Err(44002);
    }
    let body = json_object(call.body).ok_or(47001)?;
    let code = match body.get("code") {
        Some(Value::String(code)) => code.as_str(),
        _ => return Err(47001),
    };
    let openid = match body.get("openid") {
        None | Some(Value::Null) => None,
        Some(Value::String(openid)) => Some(openid.as_str()),
        Some(_) => return Err(47001),
    };
    let info = state.phones.redeem(&appid, code, openid, now)?;
    let country_code = match info.country_code.parse::<u64>() {
        Ok(n) if !state.behaviour.country_code_as_string => json!(n),
        _ => json!(info.country_code),
    };
    Ok(json!({
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": info.phone_number(),
            "purePhoneNumber": info.pure_phone_number,
            "countryCode": country_code,
            "watermark": {"timestamp": info.issued_at, "appid": info.appid},
        }
    }))
}

/// The checks checksession and resetusersessionkey share; returns (appid, openid).
fn check_signature(state: &State, call: &Call<'_>, now: i64) -> Result<(String, String), Errcode> {
    require(call, Method::Get)?;
    let appid = authorise(state, call, now)?;
    if call.param("sig_method") != Some("hmac_sha256") {
        return Err(87008);
    }
    let openid = call.param("openid").ok_or(87009)?;
    let signature = call.param("signature").ok_or(87009)?;
    state.sessions.verify_signature(&appid, openid, signature)?;
    Ok((appid, openid.to_string()))
}

fn checksession(state: &mut State, call: &Call<'_>, now: i64) -> Result<Value, Errcode> {
    check_signature(state, call, now)?;
    Ok(json!({"errcode": 0, "errmsg": "ok"}))
}

fn resetusersessionkey(state: &mut State, call: &Call<'_>, now: i64) -> Result<Value, Errcode> {
    let (appid, openid) = check_signature(state, call, now)?;
    let session_key = state.sessions.reset_key(&appid, &openid).ok_or(87009)?;
    Ok(json!({"errcode": 0, "errmsg": "ok", "openid": openid, "session_key": session_key}))
}

fn json_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_wechat::FakeOptions;
    use crate::wechat::crypto::session_key_signature;

    const T0: i64 = 1_700_000_000;

    fn state() -> State {
        State::new(&FakeOptions {
            apps: vec![("wx1".into(), "s1".into()), ("wx2".into(), "s2".into())],
            daily_token_quota: 5,
            ..FakeOptions::default()
        })
    }

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn get(state: &mut State, api: &'static str, pairs: &[(&str, &str)], now: i64) -> (Reply, Value) {
        call(state, api, Method::Get, pairs, b"", now)
    }

    fn call(
        state: &mut State,
        api: &'static str,
        method: Method,
        pairs: &[(&str, &str)],
        body: &[u8],
        now: i64,
    ) -> (Reply, Value) {
        let q = query(pairs);
        let reply = handle(state, api, &Call { method, query: &q, body }, now);
        let value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        (reply, value)
    }

    fn errcode(value: &Value) -> i64 {
        value["errcode"].as_i64().unwrap_or(0)
    }

    fn code2session(state: &mut State, appid: &str, secret: &str, code: &str, now: i64) -> Value {
        let q = [("appid", appid), ("secret", secret), ("js_code", code), ("grant_type", "authorization_code")];
        get(state, "jscode2session", &q, now).1
    }

    #[test]
    fn jscode2session_success_is_text_plain_without_errcode() {
        let mut s = state();
        let issued = s.sessions.issue_code("wx1", "alice", Some(true), true, T0);
        let q = [
            ("appid", "wx1"),
            ("secret", "s1"),
            ("js_code", issued.code.as_str()),
            ("grant_type", "authorization_code"),
        ];
        let (reply, v) = get(&mut s, "jscode2session", &q, T0);
        assert_eq!(reply.content_type, WECHAT_TEXT);
        assert_eq!(reply.status, 200);
        assert!(v.get("errcode").is_none(), "{v}");
        assert_eq!(v["openid"], issued.openid);
        assert_eq!(v["unionid"], json!(issued.unionid));
        let key = s.sessions.by_name("wx1", "alice").expect("user").session_key;
        assert_eq!(v["session_key"], key);
        assert_eq!(errcode(&get(&mut s, "jscode2session", &q, T0).1), 40163);
    }

    #[test]
    fn jscode2session_errors_in_order() {
        let mut s = state();
        let code = s.sessions.issue_code("wx1", "alice", None, true, T0).code;
        assert_eq!(errcode(&code2session(&mut s, "", "s1", &code, T0)), 41002);
        assert_eq!(errcode(&code2session(&mut s, "wx9", "s1", &code, T0)), 40013);
        assert_eq!(errcode(&code2session(&mut s, "wx1", "", &code, T0)), 41004);
        assert_eq!(errcode(&code2session(&mut s, "wx1", "s2", &code, T0)), 40125);
        assert_eq!(errcode(&code2session(&mut s, "wx1", "s1", "", T0)), 41008);
        assert_eq!(errcode(&code2session(&mut s, "wx2", "s2", &code, T0)), 40029);
        assert_eq!(errcode(&code2session(&mut s, "wx1", "s1", &code, T0 + 301)), 40029);
        let q = [("appid", "wx1"), ("secret", "s1"), ("js_code", code.as_str())];
        assert_eq!(errcode(&get(&mut s, "jscode2session", &q, T0).1), 40002);
        let (_, v) = call(&mut s, "jscode2session", Method::Post, &q, b"", T0);
        assert_eq!(errcode(&v), 43001);
        // None of the failures used the code up.
        assert!(code2session(&mut s, "wx1", "s1", &code, T0)["session_key"].is_string());
    }

    #[test]
    fn errcode_on_success_switch() {
        let mut s = state();
        s.behaviour.errcode_on_success = true;
        let code = s.sessions.issue_code("wx1", "alice", None, true, T0).code;
        let v = code2session(&mut s, "wx1", "s1", &code, T0);
        assert_eq!(v["errcode"], 0);
        assert!(v["openid"].is_string());
    }

    #[test]
    fn classic_token_endpoint() {
        let mut s = state();
        let q = [("grant_type", "client_credential"), ("appid", "wx1"), ("secret", "s1")];
        let (reply, v) = get(&mut s, "token", &q, T0);
        assert_eq!(reply.content_type, WECHAT_JSON);
        assert_eq!(v["expires_in"], 7200);
        assert!(v.get("errcode").is_none());
        let first = v["access_token"].as_str().expect("token").to_string();
        let second = get(&mut s, "token", &q, T0 + 1).1["access_token"].clone();
        assert_ne!(json!(first), second);
        let bad = [("grant_type", "password"), ("appid", "wx1"), ("secret", "s1")];
        assert_eq!(errcode(&get(&mut s, "token", &bad, T0).1), 40002);
        let bad = [("grant_type", "client_credential"), ("appid", "wx1"), ("secret", "x")];
        assert_eq!(errcode(&get(&mut s, "token", &bad, T0).1), 40125);
        for _ in 0..3 {
            assert!(get(&mut s, "token", &q, T0).1["access_token"].is_string());
        }
        assert_eq!(errcode(&get(&mut s, "token", &q, T0).1), 45009);
    }

    #[test]
    fn stable_token_endpoint() {
        let mut s = state();
        let body = br#"{"grant_type":"client_credential","appid":"wx1","secret":"s1"}"#;
        let (_, a) = call(&mut s, "stable_token", Method::Post, &[], body, T0);
        let (_, b) = call(&mut s, "stable_token", Method::Post, &[], body, T0 + 60);
        assert_eq!(a["access_token"], b["access_token"]);
        assert_eq!(b["expires_in"], 7140);
        let form = b"grant_type=client_credential&appid=wx1&secret=s1";
        assert_eq!(errcode(&call(&mut s, "stable_token", Method::Post, &[], form, T0).1), 41002);
        let weird = br#"{"grant_type":"client_credential","appid":"wx1","secret":"s1","force_refresh":"yes"}"#;
        assert_eq!(errcode(&call(&mut s, "stable_token", Method::Post, &[], weird, T0).1), 47001);
        let force = br#"{"grant_type":"client_credential","appid":"wx1","secret":"s1","force_refresh":true}"#;
        let (_, c) = call(&mut s, "stable_token", Method::Post, &[], force, T0 + 61);
        assert_ne!(c["access_token"], a["access_token"]);
        let old = a["access_token"].as_str().expect("token");
        assert_eq!(s.tokens.check(old, T0 + 61), Err(40001));
        assert_eq!(errcode(&get(&mut s, "stable_token", &[], T0).1), 43002);
    }

    fn stable(s: &mut State, appid: &str, secret: &str, now: i64) -> String {
        let body = json!({"grant_type": "client_credential", "appid": appid, "secret": secret});
        let (_, v) = call(s, "stable_token", Method::Post, &[], body.to_string().as_bytes(), now);
        v["access_token"].as_str().expect("token").to_string()
    }

    #[test]
    fn getuserphonenumber_endpoint() {
        let mut s = state();
        let token = stable(&mut s, "wx1", "s1", T0);
        let info = |appid: &str, cc: &str| crate::fake_wechat::phone::PhoneInfo {
            appid: appid.into(),
            openid: crate::fake_wechat::ids::openid(appid, "alice"),
            pure_phone_number: "13800138000".into(),
            country_code: cc.into(),
            issued_at: T0,
        };
        let code = s.phones.issue(info("wx1", "86"), T0);
        let body = json!({"code": code}).to_string();
        let post = |s: &mut State, q: &[(&str, &str)], body: &[u8]| {
            call(s, "getuserphonenumber", Method::Post, q, body, T0 + 1).1
        };
        let q = [("access_token", token.as_str())];
        assert_eq!(errcode(&post(&mut s, &[], body.as_bytes())), 41001);
        assert_eq!(errcode(&post(&mut s, &[("access_token", "nope")], body.as_bytes())), 40001);
        assert_eq!(errcode(&post(&mut s, &q, b"code=x")), 47001);
        assert_eq!(errcode(&post(&mut s, &q, b"")), 44002);
        assert_eq!(errcode(&post(&mut s, &q, b"{}")), 47001);
        let v = post(&mut s, &q, body.as_bytes());
        assert_eq!(v["errcode"], 0);
        assert_eq!(v["phone_info"]["phoneNumber"], "13800138000");
        assert_eq!(v["phone_info"]["purePhoneNumber"], "13800138000");
        assert_eq!(v["phone_info"]["countryCode"], 86);
        assert_eq!(v["phone_info"]["watermark"], json!({"timestamp": T0, "appid": "wx1"}));
        assert_eq!(errcode(&post(&mut s, &q, body.as_bytes())), 40029);

        let other = s.phones.issue(info("wx2", "86"), T0);
        let other_body = json!({"code": other}).to_string();
        assert_eq!(errcode(&post(&mut s, &q, other_body.as_bytes())), 40013);

        s.behaviour.country_code_as_string = true;
        let code = s.phones.issue(info("wx1", "86"), T0);
        let v = post(&mut s, &q, json!({"code": code}).to_string().as_bytes());
        assert_eq!(v["phone_info"]["countryCode"], "86");

        let mut old = info("wx1", "86");
        old.issued_at = T0 - 400;
        let expired = s.phones.issue(old, T0);
        assert_eq!(errcode(&post(&mut s, &q, json!({"code": expired}).to_string().as_bytes())), 40029);

        let late = call(&mut s, "getuserphonenumber", Method::Post, &q, body.as_bytes(), T0 + 7200).1;
        assert_eq!(errcode(&late), 42001);
    }

    #[test]
    fn checksession_and_reset() {
        let mut s = state();
        let token = stable(&mut s, "wx1", "s1", T0);
        let issued = s.sessions.issue_code("wx1", "alice", None, true, T0);
        let key = s.sessions.by_name("wx1", "alice").expect("user").session_key;
        let sig = session_key_signature(&key);
        let q = |sig: &str, method: &str| {
            vec![
                ("access_token", token.clone()),
                ("openid", issued.openid.clone()),
                ("signature", sig.to_string()),
                ("sig_method", method.to_string()),
            ]
        };
        let run = |s: &mut State, api: &'static str, q: Vec<(&str, String)>| {
            let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
            get(s, api, &pairs, T0 + 1).1
        };
        assert_eq!(run(&mut s, "checksession", q(&sig, "hmac_sha256")), json!({"errcode": 0, "errmsg": "ok"}));
        assert_eq!(errcode(&run(&mut s, "checksession", q(&sig, "md5"))), 87008);
        assert_eq!(errcode(&run(&mut s, "checksession", q("00", "hmac_sha256"))), 87009);
        assert_eq!(errcode(&get(&mut s, "checksession", &[], T0).1), 41001);

        let v = run(&mut s, "resetusersessionkey", q(&sig, "hmac_sha256"));
        assert_eq!(v["errcode"], 0);
        assert_eq!(v["openid"], issued.openid);
        let new_key = v["session_key"].as_str().expect("key").to_string();
        assert_ne!(new_key, key);
        assert_eq!(errcode(&run(&mut s, "checksession", q(&sig, "hmac_sha256"))), 87009);
        let new_sig = session_key_signature(&new_key);
        assert_eq!(run(&mut s, "checksession", q(&new_sig, "hmac_sha256"))["errcode"], 0);
        assert_eq!(errcode(&run(&mut s, "resetusersessionkey", q(&sig, "hmac_sha256"))), 87009);
    }

    #[test]
    fn injected_failures_leave_state_alone_and_are_counted() {
        let mut s = state();
        let code = s.sessions.issue_code("wx1", "alice", None, true, T0).code;
        s.behaviour.inject("jscode2session", Failure::Errcode(-1), 1);
        s.behaviour.inject("*", Failure::Garbage, 1);
        s.behaviour.inject("jscode2session", Failure::Http500, 1);
        s.behaviour.inject("jscode2session", Failure::Hang, 1);
        assert_eq!(errcode(&code2session(&mut s, "wx1", "s1", &code, T0)), -1);
        let q = [("appid", "wx1")];
        let (garbage, _) = get(&mut s, "jscode2session", &q, T0);
        assert!(serde_json::from_str::<Value>(&garbage.body).is_err());
        let (err500, _) = get(&mut s, "jscode2session", &q, T0);
        assert_eq!(err500.status, 500);
        let (hang, v) = get(&mut s, "jscode2session", &q, T0);
        assert_eq!(hang.delay, Some(HANG));
        assert_eq!(errcode(&v), -1);
        assert!(code2session(&mut s, "wx1", "s1", &code, T0)["session_key"].is_string());
        assert_eq!(s.stats(T0)["calls"]["jscode2session"], 5);
    }
}
