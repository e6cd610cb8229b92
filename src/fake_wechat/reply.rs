//! What the fake sends back, and WeChat's error envelope.

use std::time::Duration;

use serde_json::{json, Value};

use super::ids;

/// WeChat's error numbers, kept as plain integers because that is what goes on the wire.
pub(crate) type Errcode = i64;

/// What WeChat's own servers send for most APIs.
pub(crate) const WECHAT_JSON: &str = "application/json; encoding=utf-8";
/// What `sns/jscode2session` sends, JSON or not.
pub(crate) const WECHAT_TEXT: &str = "text/plain";
/// What the control endpoints send.
pub(crate) const CONTROL_JSON: &str = "application/json";

/// An HTTP answer, possibly held back for a while first (the "hang" failure).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub delay: Option<Duration>,
    /// Extra headers (WeChat Pay's signature headers).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(crate) fn json(status: u16, content_type: &'static str, value: &Value) -> Reply {
        Reply { status, content_type, body: value.to_string(), delay: None, headers: Vec::new() }
    }

    /// WeChat's error envelope: HTTP 200, errcode, and an errmsg whose request id suffix
    /// differs every time (so that clients learn to key off errcode alone).
    pub(crate) fn wechat_error(errcode: Errcode, content_type: &'static str) -> Reply {
        Reply::json(200, content_type, &error_body(errcode, errmsg(errcode)))
    }

    /// An error of the fake itself (bad control request, unknown path): the HTTP status
    /// doubles as errcode, so it can never be mistaken for one of WeChat's.
    pub(crate) fn fake_error(status: u16, message: &str) -> Reply {
        Reply::json(status, CONTROL_JSON, &error_body(Errcode::from(status), message))
    }
}

fn error_body(errcode: Errcode, message: &str) -> Value {
    json!({"errcode": errcode, "errmsg": format!("{message}, rid: {}", ids::rid())})
}

/// The errmsg WeChat sends with each errcode (wechat-api.md §0-§4).
pub(crate) fn errmsg(errcode: Errcode) -> &'static str {
    match errcode {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest, could get access_token by getStableAccessToken, more details at https://mmbizurl.cn/s/JtxxFh33r",
        40002 => "invalid grant_type",
        40003 => "invalid openid",
        40013 => "invalid appid",
        40029 => "invalid code",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40164 => "invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist",
        40226 => "code blocked",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        42001 => "access_token expired",
        43001 => "require GET method",
        43002 => "require POST method",
        44002 => "empty post data",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit mustslower retry next minute",
        47001 => "data format error",
        48001 => "api unauthorized",
        87008 => "invalid sig_method",
        87009 => "invalid signature",
        _ => "error injected by the fake WeChat",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_http_200_with_a_changing_rid() {
        let a = Reply::wechat_error(40029, WECHAT_JSON);
        let b = Reply::wechat_error(40029, WECHAT_JSON);
        assert_eq!(a.status, 200);
        assert_ne!(a.body, b.body);
        let v: Value = serde_json::from_str(&a.body).expect("json");
        assert_eq!(v["errcode"], 40029);
        let msg = v["errmsg"].as_str().expect("string");
        assert!(msg.starts_with("invalid code, rid: "), "{msg}");
    }
}
