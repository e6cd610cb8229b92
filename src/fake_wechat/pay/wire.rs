//! WeChat Pay's wire details: the `Authorization` header as WeChat Pay reads it, the
//! signature on every answer, and RFC 3339 times in China Standard Time.

use serde_json::{json, Value};

use crate::pay::sign::{new_nonce, SCHEME};
use crate::pay::verify::response_message;
use crate::secrets::random_id;

use super::super::reply::Reply;
use super::platform::Signer;

/// The five fields of `Authorization: WECHATPAY2-SHA256-RSA2048 k="v",...` (research
/// §2.3: comma-separated, no spaces, any order).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Authorization {
    pub mchid: String,
    pub nonce_str: String,
    pub signature: String,
    pub timestamp: String,
    pub serial_no: String,
}

/// Reads the header; `Err` says what is wrong (the fake's answer is then 401 SIGN_ERROR).
pub(crate) fn parse_authorization(header: &str) -> Result<Authorization, String> {
    let rest = header
        .strip_prefix(SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| format!("Authorization must start with \"{SCHEME} \""))?;
    let mut auth = Authorization::default();
    for item in rest.split(',') {
        let (key, value) = item.split_once('=').ok_or_else(|| format!("Authorization item {item:?} is not k=\"v\""))?;
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| format!("Authorization value of {key} is not in double quotes"))?;
        let slot = match key {
            "mchid" => &mut auth.mchid,
            "nonce_str" => &mut auth.nonce_str,
            "signature" => &mut auth.signature,
            "timestamp" => &mut auth.timestamp,
            "serial_no" => &mut auth.serial_no,
            _ => return Err(format!("Authorization has an unknown item {key:?}")),
        };
        if !slot.is_empty() {
            return Err(format!("Authorization repeats {key}"));
        }
        *slot = value.to_string();
    }
    for (name, value) in [
        ("mchid", &auth.mchid),
        ("nonce_str", &auth.nonce_str),
        ("signature", &auth.signature),
        ("timestamp", &auth.timestamp),
        ("serial_no", &auth.serial_no),
    ] {
        if value.is_empty() {
            return Err(format!("Authorization lacks {name}"));
        }
    }
    Ok(auth)
}

/// An answer signed as WeChat Pay signs every answer (research §5): `Wechatpay-Timestamp`,
/// `-Nonce`, `-Serial` (the public key id or certificate serial naming the signer's key) and
/// `-Signature` over `TS\nNONCE\nBODY\n`, plus a `Request-ID` (research §2.4). A 204 has an
/// empty body, signed as such.
pub(crate) fn signed_reply(signer: Signer<'_>, now: i64, status: u16, body: Option<&Value>) -> Reply {
    let body = body.map(Value::to_string).unwrap_or_default();
    let timestamp = now.to_string();
    let nonce = new_nonce().to_uppercase();
    let mut headers = vec![
        ("Wechatpay-Timestamp", timestamp.clone()),
        ("Wechatpay-Nonce", nonce.clone()),
        ("Wechatpay-Serial", signer.serial.to_string()),
        ("Request-ID", request_id()),
    ];
    // ring does not refuse a key that loaded; were it to, an unsigned answer is what a
    // client must refuse, which is the safe way to fail.
    if let Ok(signature) = signer.key.sign_base64(&response_message(&timestamp, &nonce, body.as_bytes())) {
        headers.push(("Wechatpay-Signature", signature));
    }
    Reply { status, content_type: "application/json; charset=utf-8", body, delay: None, headers }
}

/// WeChat Pay's error body (research §2.4): `{"code", "message"}`.
pub(crate) fn error_body(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// Looks like the hex ids WeChat Pay sends (e.g. `08F7B6C8A9061010...`).
pub(crate) fn request_id() -> String {
    random_id(18).to_uppercase()
}

/// `2026-12-02T17:30:00+08:00` for Unix seconds (research §3, `time_expire`), as wxlogin
/// writes them (`pay::rfc3339`); the fake's times are always within RFC 3339's years.
pub(crate) fn format_cst(unix: i64) -> String {
    crate::pay::rfc3339::format_cst(unix).unwrap_or_default()
}

/// Unix seconds of an RFC 3339 time with whole seconds and an offset (`Z` or `±HH:MM`),
/// the form `time_expire` must have (research §3, `yyyy-MM-DDTHH:mm:ss+TIMEZONE`):
/// stricter than `pay::rfc3339::parse`, which also reads fractions and lower case.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    if text.contains(['.', 't', 'z']) {
        return None;
    }
    crate::pay::rfc3339::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_in_cst() {
        // research §3's example: 2015-05-20T13:29:35+08:00 = 1432099775.
        assert_eq!(parse_rfc3339("2015-05-20T13:29:35+08:00"), Some(1_432_099_775));
        assert_eq!(parse_rfc3339("2015-05-20T05:29:35Z"), Some(1_432_099_775));
        assert_eq!(format_cst(1_432_099_775), "2015-05-20T13:29:35+08:00");
        assert_eq!(format_cst(951_782_400 - 8 * 3600), "2000-02-29T00:00:00+08:00");
        for bad in
            ["2015-05-20 13:29:35+08:00", "2015-02-30T00:00:00Z", "2015-05-20T13:29:35.5Z", "2015-05-20T13:29:35"]
        {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn authorization_fields_in_any_order() {
        let a = parse_authorization(
            "WECHATPAY2-SHA256-RSA2048 serial_no=\"S\",mchid=\"1\",nonce_str=\"n\",timestamp=\"2\",signature=\"x=\"",
        )
        .expect("parses");
        assert_eq!((a.mchid.as_str(), a.signature.as_str(), a.serial_no.as_str()), ("1", "x=", "S"));
        assert!(parse_authorization("WECHATPAY2-SHA256-RSA2048 mchid=\"1\"").is_err());
        assert!(parse_authorization("Bearer x").is_err());
    }
}
