//! The WeChat HTTP client: one ureq agent, a timeout on every call, bounded retries.
//!
//! Secrets travel in query strings (jscode2session's `secret`, other APIs'
//! `access_token`), so no URL is ever logged or put into an error here, and the HTTP
//! stack's log records (ureq, ureq_proto, rustls) are held at `info` by `logging.rs`
//! because they carry full URLs and request bytes above it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::WeChatError;
use crate::config::WeChatConfig;
use crate::metrics::Metrics;
use crate::secrets::Secret;

/// Replies are small JSON objects; anything bigger is not WeChat.
const MAX_REPLY_BYTES: u64 = 1024 * 1024;

/// The longest openid or unionid accepted; WeChat's are 28 characters.
const MAX_ID_CHARS: usize = 64;

/// ureq's pool walks all of an agent's idle connections on every checkout and return
/// (with the lane's 64 connections in one agent, 8% of a login's CPU went there, and its
/// lock was shared by every lane worker). Each thread sticks to one of a few agents.
const AGENT_SHARDS: usize = 8;
/// Idle connections kept, over all shards: room for every WeChat-lane worker's
/// connection. With ureq's default total of 10, 64 concurrent calls at 100 ms churned
/// the pool and about 2% of calls failed with "connection closed" (bench/run).
const IDLE_CONNECTIONS: usize = 256;

#[derive(Clone)]
pub struct WeChat {
    agents: Arc<[ureq::Agent]>,
    base: String,
    retries: u32,
    metrics: Metrics,
}

pub struct Code2Session {
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key: Secret,
}

/// One HTTP request to WeChat, built fresh for each attempt.
pub enum Call<'a> {
    Get { path: &'a str, query: Vec<(&'a str, &'a str)> },
    Post { path: &'a str, query: Vec<(&'a str, &'a str)>, body: Value },
}

impl WeChat {
    pub fn new(cfg: &WeChatConfig, metrics: Metrics) -> WeChat {
        let agents = (0..AGENT_SHARDS).map(|_| agent(cfg)).collect();
        WeChat { agents, base: cfg.api_base.trim_end_matches('/').to_string(), retries: cfg.retries, metrics }
    }

    /// This thread's agent.
    fn agent(&self) -> &ureq::Agent {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! { static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed); }
        &self.agents[SLOT.with(|s| *s) % self.agents.len()]
    }

    /// `sns/jscode2session`: the code for openid, unionid and session_key. Needs no access token.
    pub fn code2session(&self, appid: &str, secret: &Secret, code: &str) -> Result<Code2Session, WeChatError> {
        let query = vec![
            ("appid", appid),
            ("secret", secret.expose()),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ];
        let v = self.call("jscode2session", &Call::Get { path: "/sns/jscode2session", query })?;
        let field = |name: &str| v.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let (Some(openid), Some(session_key)) = (field("openid"), field("session_key")) else {
            return Err(WeChatError::BadReply("jscode2session answered without openid or session_key".into()));
        };
        // The IDs go on to the database and into response headers (`/v1/auth`'s
        // X-OpenId): whatever sits at `wechat.api_base` must not get CR/LF or anything
        // else there. The value itself is never echoed.
        if !is_wechat_id(&openid) {
            return Err(WeChatError::BadReply("jscode2session answered an openid that is not in WeChat's form".into()));
        }
        let unionid = field("unionid");
        if unionid.as_deref().is_some_and(|u| !is_wechat_id(u)) {
            return Err(WeChatError::BadReply("jscode2session answered a unionid that is not in WeChat's form".into()));
        }
        Ok(Code2Session { openid, unionid, session_key: Secret::new(session_key) })
    }

    /// Performs `call` with up to `retries` extra attempts for transient failures (-1,
    /// transport errors, timeouts, HTTP 5xx), backing off 100 ms, 200 ms, 400 ms ... with
    /// jitter. Returns the reply object when its errcode is absent or 0.
    pub fn call(&self, api: &'static str, call: &Call) -> Result<Value, WeChatError> {
        let mut attempt = 0;
        let mut ambiguous: Option<WeChatError> = None;
        loop {
            let result = self.attempt(call);
            self.metrics.wechat_call(api, outcome_label(&result));
            let err = match result {
                Ok(v) => {
                    log::debug!("wechat {api}: answered (attempt {})", attempt + 1);
                    return Ok(v);
                }
                Err(e) => e,
            };
            // A retry of a code exchange whose first attempt may have reached WeChat finds
            // the code spent (40163): the honest answer is the first failure.
            if let (Some(first), WeChatError::Api { errcode: 40163, .. }) = (&ambiguous, &err) {
                return Err(first.clone());
            }
            if attempt >= self.retries || !is_transient(&err) {
                return Err(err);
            }
            log::debug!("wechat {api}: attempt {} failed ({err}); retrying", attempt + 1);
            if !matches!(err, WeChatError::Api { .. }) && ambiguous.is_none() {
                ambiguous = Some(err);
            }
            std::thread::sleep(backoff(attempt));
            attempt += 1;
        }
    }

    fn attempt(&self, call: &Call) -> Result<Value, WeChatError> {
        let response = match call {
            Call::Get { path, query } => {
                let mut req = self.agent().get(format!("{}{path}", self.base));
                for (k, v) in query {
                    req = req.query(*k, *v);
                }
                req.call()
            }
            Call::Post { path, query, body } => {
                let mut req = self.agent().post(format!("{}{path}", self.base));
                for (k, v) in query {
                    req = req.query(*k, *v);
                }
                req.header("Content-Type", "application/json").send(body.to_string())
            }
        };
        let mut response = response.map_err(classify)?;
        let status = response.status().as_u16();
        if status >= 500 {
            return Err(WeChatError::BadReply(format!("HTTP {status}")));
        }
        // WeChat answers errors with HTTP 200 too; any other status is not WeChat talking.
        if status != 200 {
            return Err(WeChatError::BadReply(format!("unexpected HTTP status {status}")));
        }
        // jscode2session says text/plain; the content type is ignored on purpose.
        let text = response.body_mut().with_config().limit(MAX_REPLY_BYTES).read_to_string().map_err(classify)?;
        parse_reply(&text)
    }
}

fn agent(cfg: &WeChatConfig) -> ureq::Agent {
    super::agent::new_agent(Duration::from_millis(cfg.timeout_ms), IDLE_CONNECTIONS / AGENT_SHARDS)
}

/// Parses a reply body: a JSON object whose errcode, when present and non-zero, is an error.
pub fn parse_reply(text: &str) -> Result<Value, WeChatError> {
    let v: Value = serde_json::from_str(text).map_err(|_| WeChatError::BadReply("the reply is not JSON".into()))?;
    if !v.is_object() {
        return Err(WeChatError::BadReply("the reply is not a JSON object".into()));
    }
    match v.get("errcode").and_then(Value::as_i64).unwrap_or(0) {
        0 => Ok(v),
        errcode => {
            Err(WeChatError::Api { errcode, errmsg: v.get("errmsg").and_then(Value::as_str).unwrap_or("").to_string() })
        }
    }
}

/// WeChat's openids and unionids: 1 to 64 of `[A-Za-z0-9_-]` (28 characters in practice).
fn is_wechat_id(id: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_transient(e: &WeChatError) -> bool {
    match e {
        WeChatError::Timeout | WeChatError::Transport(_) => true,
        WeChatError::BadReply(m) => m.starts_with("HTTP 5"),
        WeChatError::Api { errcode, .. } => *errcode == -1,
        WeChatError::AccessToken(_) => false,
    }
}

/// Maps a ureq error to a fixed description; ureq's own messages are not used because
/// some of them can carry the request URL, and with it a secret.
fn classify(e: ureq::Error) -> WeChatError {
    use std::io::ErrorKind;
    match e {
        ureq::Error::Timeout(_) => WeChatError::Timeout,
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => WeChatError::Timeout,
            ErrorKind::ConnectionRefused => WeChatError::Transport("connection refused".into()),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof => {
                WeChatError::Transport("connection closed by the other side".into())
            }
            kind => WeChatError::Transport(format!("network error ({kind})")),
        },
        ureq::Error::HostNotFound => WeChatError::Transport("host not found".into()),
        ureq::Error::ConnectionFailed => WeChatError::Transport("connection failed".into()),
        ureq::Error::BodyExceedsLimit(_) => WeChatError::BadReply("the reply is too large".into()),
        ureq::Error::Tls(_) => WeChatError::Transport("TLS error".into()),
        _ => WeChatError::Transport("request failed".into()),
    }
}

pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 100u64 << attempt.min(5);
    let mut jitter = [0u8; 1];
    crate::secrets::random_bytes(&mut jitter);
    Duration::from_millis(base + base * u64::from(jitter[0]) / 512)
}

/// The errcode label of a call for the metrics: "0" on success, else the errcode or a kind.
fn outcome_label(r: &Result<Value, WeChatError>) -> String {
    match r {
        Ok(_) => "0".into(),
        Err(WeChatError::Api { errcode, .. }) => errcode.to_string(),
        Err(WeChatError::Timeout) => "timeout".into(),
        Err(WeChatError::Transport(_)) => "transport".into(),
        Err(WeChatError::BadReply(_)) => "bad_reply".into(),
        Err(WeChatError::AccessToken(_)) => "access_token".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_classified_by_errcode_not_content_type() {
        assert!(parse_reply(r#"{"openid":"o","session_key":"k"}"#).is_ok());
        assert!(parse_reply(r#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        assert_eq!(
            parse_reply(r#"{"errcode":40029,"errmsg":"invalid code, rid: 1"}"#),
            Err(WeChatError::Api { errcode: 40029, errmsg: "invalid code, rid: 1".into() })
        );
        assert!(matches!(parse_reply("<html>"), Err(WeChatError::BadReply(_))));
        assert!(matches!(parse_reply("[1]"), Err(WeChatError::BadReply(_))));
    }

    #[test]
    fn only_wechat_shaped_ids_are_accepted() {
        for good in ["oVBkZ0aYgDMDIywRdgPW8-joxXc4", "o6_bmasdasdsad6_2sgVt7hMZOPfL", "a", &"x".repeat(64)] {
            assert!(is_wechat_id(good), "{good}");
        }
        for bad in ["", "abc\r\nX-Evil: 1", "a b", "a\u{0}", "\u{e9}t\u{e9}", "a;b", &"x".repeat(65)] {
            assert!(!is_wechat_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_transient_errors_are_retried() {
        assert!(is_transient(&WeChatError::Timeout));
        assert!(is_transient(&WeChatError::Api { errcode: -1, errmsg: String::new() }));
        assert!(is_transient(&WeChatError::BadReply("HTTP 502".into())));
        assert!(!is_transient(&WeChatError::Api { errcode: 40029, errmsg: String::new() }));
        assert!(!is_transient(&WeChatError::BadReply("the reply is not JSON".into())));
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(0) >= Duration::from_millis(100) && backoff(0) < Duration::from_millis(200));
        assert!(backoff(9) < Duration::from_millis(6400));
    }
}
