//! The contract's errors, and the ONE place that maps them to a status, a stable code and
//! a human sentence. Lower layers have their own error types (`StoreError`, `WeChatError`,
//! `OpenDataError`); their conversions into [`ApiError`] live here too, so a reader can
//! see every status wxlogin can answer in one file.

use std::fmt;

use crate::pay::{PayCryptoError, PayError};
use crate::store::StoreError;
use crate::wechat::crypto::OpenDataError;
use crate::wechat::WeChatError;

#[derive(Debug, Clone)]
pub enum ApiError {
    /// 400: malformed body, missing or ill-typed field; the message names the field.
    InvalidRequest(String),
    /// 400: `app` names no configured app.
    UnknownApp(String),
    /// 401: no token presented (RFC 6750: then no `error` attribute).
    NoToken,
    /// 401: a token we do not know.
    Unauthorized,
    /// 401: a token we know, past its idle or absolute expiry.
    SessionExpired,
    /// 401: `/internal/v1/*` without a configured API key.
    BadApiKey,
    /// 401: WeChat says the code is invalid, or used outside the replay window.
    InvalidCode {
        errcode: i64,
    },
    /// 403: WeChat 40226, a high-risk user.
    UserBlocked {
        errcode: i64,
    },
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
    /// 409: open data that does not decrypt with the stored session_key.
    SessionKeyStale {
        detail: &'static str,
    },
    /// 413
    BodyTooLarge {
        limit: usize,
    },
    /// 422: a field that is well-formed but not acceptable.
    InvalidField(String),
    SignatureMismatch,
    WatermarkMismatch,
    StaleData {
        max_age: i64,
    },
    /// 429: this server's own per-IP login limit.
    RateLimited {
        retry_after: u64,
    },
    /// 429: this user's budget of phone lookups (`rate_limit.phone_per_user_per_hour`).
    PhoneBudgetSpent {
        retry_after: u64,
    },
    /// 429: WeChat 45011.
    WeChatRateLimited {
        errcode: i64,
    },
    /// 502: WeChat answered with an error we cannot pass on as anything better.
    WeChatError {
        errcode: Option<i64>,
        message: String,
    },
    /// 504
    WeChatTimeout,
    /// 503: shutting down, the database cannot be written, or a lane is full.
    Unavailable(&'static str),
    /// 500: a bug; the detail goes to the log, never to the client.
    Internal,
    /// 404: `[pay]` is absent, so no payment route exists.
    PaymentsOff,
    /// 400: a product id the configuration does not list.
    UnknownProduct(String),
    /// 502: WeChat Pay refused (with its `code`), or answered in a way not to be believed.
    PayError {
        wechatpay_code: Option<String>,
        message: String,
    },
    /// 504: WeChat Pay did not answer in time.
    PayTimeout,
    /// 409: the order is no longer waiting for payment (paid, closed or expired).
    OrderNotPayable(&'static str),
    /// 409: `out_trade_no` exists with other parameters.
    OrderConflict,
    /// 409: the order was paid, so it cannot be closed.
    OrderPaid,
    /// 409: `out_refund_no` exists for another order or amount.
    RefundConflict,
    /// 409: the order is not paid (created or closed), so there is nothing to refund.
    OrderNotPaid,
    /// A refusal of `POST /v1/pay/notify`, answered by WeChat Pay's rules (its status and
    /// `{"code": "FAIL", "message"}`), not ours: see [`Notify`].
    Notify(Notify),
}

/// Why a WeChat Pay notification was refused; WeChat Pay retries each of them.
#[derive(Debug, Clone)]
pub enum Notify {
    /// 401: the signature cannot be trusted (bad, a probe, an unknown serial, a timestamp
    /// out of the window, a header missing).
    Untrusted(String),
    /// 400: trusted, but not for us or not usable (does not decrypt, mchid, appid or
    /// amount differ, unknown order).
    Refused(String),
    /// 500: the database failed; WeChat Pay will deliver it again.
    Failed,
}

impl From<PayCryptoError> for Notify {
    fn from(e: PayCryptoError) -> Notify {
        if e.is_untrusted() {
            Notify::Untrusted(format!("The notification's signature cannot be trusted: {e}."))
        } else {
            Notify::Refused(format!("The notification cannot be used: {e}."))
        }
    }
}

impl ApiError {
    pub fn invalid(field: &str, problem: &str) -> ApiError {
        ApiError::InvalidRequest(format!("`{field}` {problem}"))
    }

    pub fn status(&self) -> u16 {
        use ApiError::*;
        match self {
            InvalidRequest(_) | UnknownApp(_) | UnknownProduct(_) => 400,
            PaymentsOff => 404,
            OrderNotPayable(_) | OrderConflict | OrderPaid | RefundConflict | OrderNotPaid => 409,
            PayError { .. } => 502,
            PayTimeout => 504,
            Notify(self::Notify::Untrusted(_)) => 401,
            Notify(self::Notify::Refused(_)) => 400,
            Notify(self::Notify::Failed) => 500,
            NoToken | Unauthorized | SessionExpired | BadApiKey | InvalidCode { .. } => 401,
            UserBlocked { .. } => 403,
            NotFound => 404,
            MethodNotAllowed { .. } => 405,
            SessionKeyStale { .. } => 409,
            BodyTooLarge { .. } => 413,
            InvalidField(_) | SignatureMismatch | WatermarkMismatch | StaleData { .. } => 422,
            RateLimited { .. } | PhoneBudgetSpent { .. } | WeChatRateLimited { .. } => 429,
            Internal => 500,
            WeChatError { .. } => 502,
            Unavailable(_) => 503,
            WeChatTimeout => 504,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidRequest(_) => "invalid_request",
            UnknownApp(_) => "unknown_app",
            NoToken | Unauthorized | BadApiKey => "unauthorized",
            SessionExpired => "session_expired",
            InvalidCode { .. } => "invalid_code",
            UserBlocked { .. } => "user_blocked",
            NotFound => "not_found",
            MethodNotAllowed { .. } => "method_not_allowed",
            SessionKeyStale { .. } => "session_key_stale",
            BodyTooLarge { .. } => "body_too_large",
            InvalidField(_) => "invalid_field",
            SignatureMismatch => "signature_mismatch",
            WatermarkMismatch => "watermark_mismatch",
            StaleData { .. } => "stale_data",
            RateLimited { .. } | PhoneBudgetSpent { .. } => "rate_limited",
            WeChatRateLimited { .. } => "wechat_rate_limited",
            WeChatError { .. } => "wechat_error",
            WeChatTimeout => "wechat_timeout",
            Unavailable(_) => "unavailable",
            Internal => "internal",
            PaymentsOff => "not_found",
            UnknownProduct(_) => "unknown_product",
            PayError { .. } => "pay_error",
            PayTimeout => "wechat_timeout",
            OrderNotPayable(_) => "order_not_payable",
            OrderConflict => "order_conflict",
            OrderPaid => "order_paid",
            RefundConflict => "refund_conflict",
            OrderNotPaid => "order_not_paid",
            Notify(_) => "FAIL",
        }
    }

    /// WeChat's errcode, when WeChat answered with one.
    pub fn wechat_errcode(&self) -> Option<i64> {
        use ApiError::*;
        match self {
            InvalidCode { errcode } | UserBlocked { errcode } | WeChatRateLimited { errcode } => Some(*errcode),
            WeChatError { errcode, .. } => *errcode,
            _ => None,
        }
    }

    /// Extra response headers the contract asks for.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        use ApiError::*;
        match self {
            // The reason rides in the header too: nginx's auth_request replaces our body.
            NoToken | BadApiKey => vec![("WWW-Authenticate", r#"Bearer realm="wxlogin""#.into())],
            Unauthorized | SessionExpired => vec![(
                "WWW-Authenticate",
                format!(r#"Bearer realm="wxlogin", error="invalid_token", error_description="{}""#, self.code()),
            )],
            MethodNotAllowed { allow } => vec![("Allow", allow.to_string())],
            RateLimited { retry_after } | PhoneBudgetSpent { retry_after } => {
                vec![("Retry-After", retry_after.to_string())]
            }
            WeChatRateLimited { .. } => vec![("Retry-After", "60".into())],
            _ => Vec::new(),
        }
    }

    pub fn message(&self) -> String {
        use ApiError::*;
        match self {
            InvalidRequest(m) | InvalidField(m) => m.clone(),
            UnknownApp(app) => format!("No app named \"{app}\" is configured."),
            NoToken | Unauthorized => "Send a valid session token as `Authorization: Bearer <token>`; log in with POST /v1/login to get one.".into(),
            BadApiKey => "Send a key from `internal.api_keys` as `Authorization: Bearer <key>`.".into(),
            SessionExpired => "The session has expired; call wx.login and POST /v1/login again.".into(),
            InvalidCode { .. } => "WeChat rejected the login code (invalid, expired or already used); call wx.login for a new one and retry.".into(),
            UserBlocked { .. } => "WeChat blocked this login because it judged the user high-risk (40226).".into(),
            NotFound => "No such endpoint.".into(),
            MethodNotAllowed { allow } => format!("This endpoint accepts {allow}."),
            SessionKeyStale { detail } => format!(
                "The data was not encrypted with this user's current session_key ({detail}): call wx.login, POST /v1/login with the new code, fetch the data again and retry."
            ),
            BodyTooLarge { limit } => format!("The request body is larger than {limit} bytes."),
            SignatureMismatch => "`signature` does not match sha1(raw_data + session_key); the raw_data was altered or belongs to another session.".into(),
            WatermarkMismatch => "The decrypted data's watermark names another appid; it was made for a different mini-program.".into(),
            StaleData { max_age } => format!("The data's watermark is older than {max_age} seconds; fetch it again."),
            RateLimited { retry_after } => format!("Too many logins from this address; retry in {retry_after} seconds."),
            PhoneBudgetSpent { retry_after } => {
                format!("Too many phone number lookups for this user; retry in {retry_after} seconds.")
            }
            WeChatRateLimited { .. } => "WeChat's per-minute limit was reached (45011); retry after a minute.".into(),
            WeChatError { message, .. } => message.clone(),
            WeChatTimeout => "WeChat did not answer in time; retry shortly.".into(),
            Unavailable(why) => format!("The service is unavailable: {why}."),
            Internal => "An internal error occurred; it has been logged with this request's id.".into(),
            PaymentsOff => "Payments are not configured on this server.".into(),
            UnknownProduct(p) => format!("No product \"{p}\" is configured (`pay.products`)."),
            PayError { message, .. } => message.clone(),
            PayTimeout => "WeChat Pay did not answer in time; retry shortly.".into(),
            OrderNotPayable(why) => format!("The order cannot be paid: {why}."),
            OrderConflict => "An order with this out_trade_no exists with other parameters.".into(),
            OrderPaid => "The order was paid; it cannot be closed (refund it instead).".into(),
            RefundConflict => "A refund with this out_refund_no exists for another order or amount.".into(),
            OrderNotPaid => "The order is not paid, so there is nothing to refund.".into(),
            Notify(self::Notify::Untrusted(m) | self::Notify::Refused(m)) => m.clone(),
            Notify(self::Notify::Failed) => "The notification could not be recorded; send it again.".into(),
        }
    }

    /// The JSON error body of the contract.
    pub fn body(&self) -> serde_json::Value {
        if let ApiError::Notify(_) = self {
            return serde_json::json!({"code": "FAIL", "message": self.message()});
        }
        let mut error = serde_json::json!({"code": self.code(), "message": self.message()});
        if let Some(errcode) = self.wechat_errcode() {
            error["wechat_errcode"] = errcode.into();
        }
        if let ApiError::PayError { wechatpay_code: Some(code), .. } = self {
            error["wechatpay_code"] = code.as_str().into();
        }
        serde_json::json!({ "error": error })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.code(), self.message())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Busy => ApiError::Unavailable("the database is busy; retry shortly"),
            StoreError::ReadOnly => ApiError::Unavailable("the database cannot be written"),
            other => {
                log::error!("database error: {other}");
                ApiError::Internal
            }
        }
    }
}

impl From<PayError> for ApiError {
    /// WeChat Pay's own `message` never reaches the client (the client logged it): its
    /// `code` is passed on as `wechatpay_code`.
    fn from(e: PayError) -> ApiError {
        match e {
            PayError::Refused { status, code } => ApiError::PayError {
                message: format!(
                    "WeChat Pay refused the request (HTTP {status}, {code}); the server's log has the details."
                ),
                wechatpay_code: Some(code),
            },
            PayError::Timeout => ApiError::PayTimeout,
            PayError::Invalid(what) => {
                log::error!("a WeChat Pay request could not be made: {what}");
                ApiError::Internal
            }
            other @ (PayError::Unverified | PayError::Unreachable | PayError::Unreadable) => {
                ApiError::PayError { wechatpay_code: None, message: format!("{other}.") }
            }
        }
    }
}

impl From<WeChatError> for ApiError {
    fn from(e: WeChatError) -> ApiError {
        match e {
            WeChatError::Timeout => ApiError::WeChatTimeout,
            WeChatError::Transport(m) => {
                ApiError::WeChatError { errcode: None, message: format!("WeChat could not be reached: {m}.") }
            }
            WeChatError::BadReply(m) => ApiError::WeChatError {
                errcode: None,
                message: format!("WeChat sent a reply that could not be read: {m}."),
            },
            WeChatError::Api { errcode, errmsg } => match errcode {
                40029 | 40163 | 41008 => ApiError::InvalidCode { errcode },
                40226 => ApiError::UserBlocked { errcode },
                45011 => ApiError::WeChatRateLimited { errcode },
                _ => {
                    log_errmsg(errcode, &errmsg);
                    ApiError::WeChatError {
                        errcode: Some(errcode),
                        message: format!(
                            "WeChat refused the request (errcode {errcode}); the server's log has the details."
                        ),
                    }
                }
            },
            // Whatever went wrong at the token API, the caller's request could not be made:
            // a 502 that says so, with the token API's errcode.
            WeChatError::AccessToken(inner) => ApiError::WeChatError {
                errcode: inner.errcode(),
                message: format!("The WeChat access token could not be obtained ({}); retry later.", own_words(&inner)),
            },
        }
    }
}

/// A failure in our words: an errcode stands for itself, its errmsg goes to the log.
fn own_words(e: &WeChatError) -> String {
    match e {
        WeChatError::Api { errcode, errmsg } => {
            log_errmsg(*errcode, errmsg);
            format!("WeChat answered errcode {errcode}")
        }
        WeChatError::AccessToken(inner) => own_words(inner),
        other => other.to_string(),
    }
}

/// WeChat's own `errmsg` is for the operator, never the client: 40164's names this
/// server's outbound IP. It goes to the log, on one line, without the request id.
fn log_errmsg(errcode: i64, errmsg: &str) {
    let words: String =
        crate::wechat::strip_rid(errmsg).chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    log::warn!("WeChat answered errcode {errcode}: {words}");
}

impl From<OpenDataError> for ApiError {
    /// Malformed input is the client's code to fix (400); anything that does not decrypt to
    /// a JSON object (padding, UTF-8 or JSON failure, one indistinguishable case) means the
    /// data was made with another session_key (409, with the recovery in the message).
    fn from(e: OpenDataError) -> ApiError {
        match e {
            OpenDataError::Invalid { field, reason } => ApiError::InvalidRequest(format!("`{field}` {reason}.")),
            OpenDataError::Undecryptable => {
                ApiError::SessionKeyStale { detail: "it does not decrypt with the session_key stored for this user" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wechat_pay_refusals_carry_its_code_and_nothing_else_of_its_answer() {
        let e: ApiError = PayError::Refused { status: 403, code: "NO_AUTH".into() }.into();
        assert_eq!((e.status(), e.code()), (502, "pay_error"));
        assert_eq!(e.body()["error"]["wechatpay_code"], "NO_AUTH");
        let e: ApiError = PayError::Unverified.into();
        assert_eq!((e.status(), e.code()), (502, "pay_error"));
        assert!(e.body()["error"].get("wechatpay_code").is_none());
        assert_eq!(ApiError::from(PayError::Timeout).status(), 504);
        assert_eq!(ApiError::from(PayError::Invalid("x")).status(), 500);
    }

    #[test]
    fn notification_refusals_follow_wechat_pays_rules() {
        let untrusted: Notify = PayCryptoError::BadSignature.into();
        let refused: Notify = PayCryptoError::Decrypt("tag").into();
        for (n, status) in [(untrusted, 401), (refused, 400), (Notify::Failed, 500)] {
            let e = ApiError::Notify(n);
            assert_eq!(e.status(), status);
            let body = e.body();
            assert_eq!(body["code"], "FAIL");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert!(body.get("error").is_none(), "WeChat Pay's shape, not ours: {body}");
        }
        assert_eq!((ApiError::PaymentsOff.status(), ApiError::PaymentsOff.code()), (404, "not_found"));
    }

    #[test]
    fn refund_refusals_are_conflicts_with_their_own_codes() {
        for (e, code) in [(ApiError::RefundConflict, "refund_conflict"), (ApiError::OrderNotPaid, "order_not_paid")] {
            assert_eq!((e.status(), e.code()), (409, code));
            assert_eq!(e.body()["error"]["code"], code);
        }
    }
}
