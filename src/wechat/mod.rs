//! The only code that talks to WeChat.

pub mod access_token;
pub(crate) mod agent;
pub mod client;
pub mod crypto;
pub mod explain;
pub(crate) mod resolver;

use std::fmt;

pub use access_token::{AccessTokens, PhoneNumber};
pub use client::{Code2Session, WeChat};

/// What can go wrong with a WeChat call, after retries.
#[derive(Debug, Clone, PartialEq)]
pub enum WeChatError {
    /// No answer within `wechat.timeout_ms` on the last attempt.
    Timeout,
    /// WeChat could not be reached (refused, DNS, TLS, reset); the text never holds a URL.
    Transport(String),
    /// An answer that is not the JSON WeChat promises (HTTP 5xx, garbage, missing fields).
    BadReply(String),
    /// WeChat answered with a non-zero errcode.
    Api { errcode: i64, errmsg: String },
    /// The access token this call needs could not be obtained (the token API's failure).
    AccessToken(Box<WeChatError>),
}

impl fmt::Display for WeChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeChatError::Timeout => f.write_str("timed out"),
            WeChatError::Transport(m) => write!(f, "transport error: {m}"),
            WeChatError::BadReply(m) => write!(f, "unreadable reply: {m}"),
            WeChatError::Api { errcode, errmsg } => write!(f, "errcode {errcode}: {}", strip_rid(errmsg)),
            WeChatError::AccessToken(e) => write!(f, "the access token could not be obtained: {e}"),
        }
    }
}

impl std::error::Error for WeChatError {}

impl WeChatError {
    /// WeChat's errcode, when WeChat answered with one (also inside [`WeChatError::AccessToken`]).
    pub fn errcode(&self) -> Option<i64> {
        match self {
            WeChatError::Api { errcode, .. } => Some(*errcode),
            WeChatError::AccessToken(e) => e.errcode(),
            _ => None,
        }
    }
}

/// WeChat appends a request id (", rid: ..." or " hints: [ req_id: ... ]") to every
/// errmsg; it changes on each call, so it is cut before messages are shown or compared.
pub fn strip_rid(errmsg: &str) -> &str {
    let cut =
        [", rid:", " rid:", ", hints:", " hints:"].iter().filter_map(|m| errmsg.find(m)).min().unwrap_or(errmsg.len());
    errmsg[..cut].trim_end_matches([',', ' '])
}

#[cfg(test)]
mod tests {
    use super::strip_rid;

    #[test]
    fn request_ids_are_cut() {
        assert_eq!(strip_rid("invalid code, rid: 6166f719-6cb5d09c"), "invalid code");
        assert_eq!(strip_rid("invalid code, hints: [ req_id: uhJDV ]"), "invalid code");
        assert_eq!(
            strip_rid("invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist rid: 1"),
            "invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist"
        );
        assert_eq!(strip_rid("ok"), "ok");
    }
}
