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

/// China Standard Time, the offset WeChat Pay writes every time in.
const CST: i64 = 8 * 3600;

/// `2026-12-02T17:30:00+08:00` for Unix seconds (research §3, `time_expire`).
pub(crate) fn format_cst(unix: i64) -> String {
    let local = unix + CST;
    let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+08:00", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Unix seconds of an RFC 3339 time with seconds and an offset (`Z` or `±HH:MM`), as
/// `time_expire` must be (research §3); fractions of a second are refused.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d, h, mi, s) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let offset = match &text[19..] {
        "Z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && tz.as_bytes()[3] == b':' => {
            let (oh, om) = (num(20..22)?, num(23..25)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `days_from_civil`: days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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
        assert_eq!(format_cst(951_782_400 - CST), "2000-02-29T00:00:00+08:00");
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
