//! WeChat Pay (APIv3, JSAPI for mini-programs): what wxlogin needs to take payments
//! without a payment SDK (the contract is `pay.md`, the facts and vectors `wechat-pay.md`).
//!
//! This layer is the cryptography, as pure functions of their inputs so that the server,
//! the fake WeChat Pay and the tests all agree on one implementation:
//!
//! - `keys.rs`: the merchant private key, the WeChat Pay public key and the APIv3 key,
//!   parsed once at start-up with errors that say what to do; `pem.rs` and `der.rs` are
//!   the strict readers under them.
//! - `sign.rs`: what wxlogin signs: the `Authorization` header of each request and the
//!   `wx.requestPayment` parameters (`paySign`).
//! - `verify.rs`: what wxlogin checks: the `Wechatpay-*` signature of every answer and
//!   notification, and the AES-256-GCM `resource` inside notifications.
//! - `certificates.rs`: platform certificates for older merchants (`/v3/certificates`
//!   decrypted and read with `der.rs`), which `PayVerifier` swaps in while running.
//!
//! And the client that uses them, the only code that talks to WeChat Pay:
//!
//! - `client.rs`: `PayClient` (JSAPI order, query, close, refund and its query; timeouts,
//!   bounded retries, every answer verified before it is read), `error.rs` its `PayError`,
//!   `transaction.rs` the `Transaction` that queries answer and notifications carry,
//!   `refund.rs` the `WeChatRefund` that refund answers and notifications carry,
//!   `rfc3339.rs` WeChat Pay's time format, `explain.rs` failures in plain words for the
//!   command line.
//!
//! The primitives are ring's (RSA PKCS#1 v1.5 with SHA-256, AES-256-GCM), which is
//! already compiled in for rustls and has no timing advisory on private-key operations
//! (RustCrypto `rsa` has RUSTSEC-2023-0071). No error message and no `Debug` output of
//! this module ever holds key material.

pub mod certificates;
pub mod client;
mod der;
mod error;
pub mod explain;
pub mod keys;
mod pem;
mod refund;
pub mod rfc3339;
pub mod sign;
mod transaction;
pub mod verify;
pub mod webhook;

use std::fmt;

pub use certificates::{CertificatesError, PlatformCertificate};
pub use client::{JsapiOrder, PayClient, RefundRequest};
pub use error::PayError;
pub use keys::{ApiV3Key, SigningKey, VerifyingKey};
pub use refund::{parse_refund, WeChatRefund};
pub use sign::{Merchant, PaymentParams};
pub use transaction::{parse_transaction, Transaction};
pub use verify::{PayVerifier, Resource, Signed};

/// What can go wrong in WeChat Pay's cryptography. Messages name the input that is wrong
/// and never quote a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayCryptoError {
    /// A key cannot be used (start-up): what is wrong with it and what to do about it.
    Key(String),
    /// Something to be signed cannot be (a value that would break the header, or ring
    /// refusing, which a key that loaded should never make it do).
    Sign(String),
    /// The signature header starts with `WECHATPAY/SIGNTEST/`: one of WeChat Pay's
    /// deliberate probes, to be refused like any bad signature.
    SignatureProbe,
    /// `Wechatpay-Serial` names no key we hold.
    UnknownSerial,
    /// A `Wechatpay-*` header is not in its documented form.
    BadHeader(&'static str),
    /// `Wechatpay-Timestamp` is more than [`verify::WINDOW_SECONDS`] off our clock;
    /// `skew` is our time minus theirs.
    TimestampSkew { skew: i64 },
    /// The signature does not verify over the timestamp, nonce and raw body.
    BadSignature,
    /// The `resource` cannot be decrypted with the APIv3 key: why.
    Decrypt(&'static str),
}

impl PayCryptoError {
    /// Whether the message's origin cannot be trusted (a notification answers 401), as
    /// opposed to a trusted message we cannot use (400) or a local fault.
    pub fn is_untrusted(&self) -> bool {
        matches!(
            self,
            PayCryptoError::SignatureProbe
                | PayCryptoError::UnknownSerial
                | PayCryptoError::BadHeader(_)
                | PayCryptoError::TimestampSkew { .. }
                | PayCryptoError::BadSignature
        )
    }
}

impl fmt::Display for PayCryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayCryptoError::Key(m) => f.write_str(m),
            PayCryptoError::Sign(m) => write!(f, "cannot sign: {m}"),
            PayCryptoError::SignatureProbe => f.write_str("the signature is a WeChat Pay probe (WECHATPAY/SIGNTEST/)"),
            PayCryptoError::UnknownSerial => f.write_str("Wechatpay-Serial names no WeChat Pay key configured here"),
            PayCryptoError::BadHeader(m) => f.write_str(m),
            PayCryptoError::TimestampSkew { skew } => write!(
                f,
                "Wechatpay-Timestamp is {} s in the {}, more than {} s off",
                skew.unsigned_abs(),
                if *skew >= 0 { "past" } else { "future" },
                verify::WINDOW_SECONDS
            ),
            PayCryptoError::BadSignature => f.write_str("Wechatpay-Signature does not verify"),
            PayCryptoError::Decrypt(m) => write!(f, "the resource does not decrypt: {m}"),
        }
    }
}

impl std::error::Error for PayCryptoError {}

/// Unix seconds now; 0 if the clock is before 1970, which every timestamp check refuses.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests;
