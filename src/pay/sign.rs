//! What wxlogin signs with the merchant key: the `Authorization` header of every request
//! to WeChat Pay, and the parameters the mini-program hands to `wx.requestPayment`.
//!
//! Both are RSA PKCS#1 v1.5 over lines each ending in `\n`, the last one included
//! (research/wechat-pay.md §2, §4). The request's last line is the exact body bytes that
//! will be sent: WeChat Pay verifies the bytes it receives, so a body re-serialised after
//! signing fails with SIGN_ERROR.

use serde::{Deserialize, Serialize};

use super::{unix_now, PayCryptoError, SigningKey};
use crate::secrets::random_id;

/// The `Authorization` scheme: signature scheme 2, SHA-256 with a 2048-bit RSA key (the
/// name is fixed even for larger keys).
pub const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// A merchant as it signs: its number, the serial of its API certificate, and its key.
#[derive(Debug)]
pub struct Merchant {
    mchid: String,
    serial: String,
    key: SigningKey,
}

impl Merchant {
    /// The mchid and serial go inside quoted header values, so they are refused if they
    /// could break out of them.
    pub fn new(mchid: &str, serial: &str, key: SigningKey) -> Result<Merchant, PayCryptoError> {
        check_header_value("the mchid", mchid)?;
        check_header_value("the merchant serial", serial)?;
        Ok(Merchant { mchid: mchid.to_string(), serial: serial.to_string(), key })
    }

    pub fn mchid(&self) -> &str {
        &self.mchid
    }

    /// The header for a request sent now, with a fresh nonce.
    pub fn authorization(&self, method: &str, path_and_query: &str, body: &[u8]) -> Result<String, PayCryptoError> {
        self.authorization_at(method, path_and_query, body, unix_now(), &new_nonce())
    }

    /// The header for a given time and nonce (fixed in tests; [`Merchant::authorization`]
    /// otherwise). `path_and_query` is the URL without scheme and host, query included.
    pub fn authorization_at(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp: i64,
        nonce: &str,
    ) -> Result<String, PayCryptoError> {
        check_header_value("the nonce", nonce)?;
        if !path_and_query.starts_with('/') || path_and_query.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(PayCryptoError::Sign(
                "the path must start with / and be visible ASCII (percent-encoded)".into(),
            ));
        }
        let message = request_message(method, path_and_query, timestamp, nonce, body);
        let signature = self.key.sign_base64(&message)?;
        Ok(format!(
            "{SCHEME} mchid=\"{}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{}\"",
            self.mchid, self.serial
        ))
    }

    /// The `wx.requestPayment` parameters for a prepay id, signed now with a fresh nonce.
    pub fn payment_params(&self, appid: &str, prepay_id: &str) -> Result<PaymentParams, PayCryptoError> {
        self.payment_params_at(appid, prepay_id, unix_now(), &new_nonce())
    }

    /// The same for a given time and nonce. `appid` is the mini-program the order is for:
    /// it is signed though the mini-program does not pass it.
    pub fn payment_params_at(
        &self,
        appid: &str,
        prepay_id: &str,
        timestamp: i64,
        nonce: &str,
    ) -> Result<PaymentParams, PayCryptoError> {
        let package = format!("prepay_id={prepay_id}");
        let time_stamp = timestamp.to_string();
        let pay_sign = self.key.sign_base64(pay_sign_message(appid, &time_stamp, nonce, &package).as_bytes())?;
        Ok(PaymentParams { time_stamp, nonce_str: nonce.to_string(), package, sign_type: "RSA".into(), pay_sign })
    }
}

/// The parameters of `wx.requestPayment`, serialised with the mini-program API's own
/// camelCase names. `signType` is always `RSA`: the API's default is `MD5` (APIv2), which
/// would fail with an APIv3 prepay id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentParams {
    pub time_stamp: String,
    pub nonce_str: String,
    pub package: String,
    pub sign_type: String,
    pub pay_sign: String,
}

/// `METHOD\nPATH_AND_QUERY\nTIMESTAMP\nNONCE\nBODY\n`, the body as raw bytes.
pub fn request_message(method: &str, path_and_query: &str, timestamp: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// `APPID\nTIMESTAMP\nNONCE\nPACKAGE\n`, where the package is `prepay_id=...`.
pub fn pay_sign_message(appid: &str, time_stamp: &str, nonce: &str, package: &str) -> String {
    format!("{appid}\n{time_stamp}\n{nonce}\n{package}\n")
}

/// 32 lower-case hex characters (128 bits) from the OS random source: the length the
/// official SDKs use, and unpredictable so that a signed request cannot be pre-computed.
pub fn new_nonce() -> String {
    random_id(16)
}

/// A value that goes between double quotes in the header: 1 to 64 visible ASCII
/// characters, none of them a quote or a comma.
fn check_header_value(what: &str, value: &str) -> Result<(), PayCryptoError> {
    let ok =
        !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b',');
    if ok {
        Ok(())
    } else {
        Err(PayCryptoError::Sign(format!("{what} must be 1 to 64 visible ASCII characters without \" or ,")))
    }
}
