//! `PayError`: what can go wrong with a WeChat Pay call, after retries.
//!
//! No message here ever holds WeChat Pay's `message` text or any part of a body: those
//! may name the merchant's configuration or hold a payer's openid, and these messages
//! reach clients (`src/error.rs`). The client logs the `message`, with the `Request-ID`
//! WeChat Pay support asks for.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayError {
    /// WeChat Pay answered, signed, with an error: its HTTP status and `code`
    /// (`PARAM_ERROR`, `SIGN_ERROR`, `ORDER_NOT_EXIST`, `SYSTEM_ERROR` ...).
    Refused { status: u16, code: String },
    /// An answer whose `Wechatpay-*` signature is missing or does not verify with the
    /// configured WeChat Pay key: it was not believed, whatever it said.
    Unverified,
    /// No answer within the timeout on the last attempt.
    Timeout,
    /// WeChat Pay could not be reached (refused, DNS, TLS, reset).
    Unreachable,
    /// A verified answer that is not what WeChat Pay documents (not JSON, a field missing
    /// or out of its form, an unexpected status).
    Unreadable,
    /// The request could not be made here (a value that cannot go into a URL or be
    /// signed): our fault or our caller's, never WeChat Pay's. Nothing was sent.
    Invalid(&'static str),
}

impl PayError {
    /// WeChat Pay's error code, when it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            PayError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for PayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayError::Refused { status, code } => write!(f, "WeChat Pay refused the request (HTTP {status}, {code})"),
            PayError::Unverified => f.write_str("WeChat Pay's answer did not carry a valid WeChat Pay signature"),
            PayError::Timeout => f.write_str("WeChat Pay did not answer in time"),
            PayError::Unreachable => f.write_str("WeChat Pay could not be reached"),
            PayError::Unreadable => f.write_str("WeChat Pay's answer was not in its documented form"),
            PayError::Invalid(what) => write!(f, "the WeChat Pay request could not be made: {what}"),
        }
    }
}

impl std::error::Error for PayError {}
