//! A faithful fake of `api.weixin.qq.com`, served over plain HTTP.
//!
//! Integration tests, `wxlogin demo`, `wxlogin fake-wechat` and users' own tests point
//! `wechat.api_base` at it. It follows the research notes on the real API
//! (wechat-api.md, §10 especially): codes live 300 s and redeem once, issuing a login code rotates
//! the user's session_key, errors are HTTP 200 with `errcode` and an `errmsg` ending in
//! `, rid: <random>`, jscode2session answers `text/plain` and omits `errcode` on success,
//! the classic and stable token families behave and stay apart as WeChat's do.
//!
//! The same server also fakes WeChat Pay (APIv3) under `/v3/` and `/__fake/pay/`: see
//! `pay/` and README.md.
//!
//! # WeChat endpoints
//!
//! | endpoint | errcodes |
//! |---|---|
//! | `GET /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code` | 41002, 40013, 41004, 40125, 40002, 41008 (empty code), 40029 (unknown, expired, other app), 40163 (used) |
//! | `GET /cgi-bin/token?grant_type=client_credential&appid&secret` | 40002, 41002, 40013, 41004, 40125, 45009 (daily quota) |
//! | `POST /cgi-bin/stable_token` `{grant_type, appid, secret, force_refresh?}` | 41002 (body not JSON), 40002, 40013, 41004, 40125, 47001 (force_refresh not a bool), 45009 (21st force refresh of the day) |
//! | `POST /wxa/business/getuserphonenumber?access_token` `{code, openid?}` | 41001, 40001, 42001, 44002 (empty body), 47001, 40029, 40013 |
//! | `GET /wxa/checksession?access_token&openid&signature&sig_method=hmac_sha256` | 41001, 40001, 42001, 87008, 87009 |
//! | `GET /wxa/resetusersessionkey?access_token&openid&signature&sig_method=hmac_sha256` | as checksession; success adds `openid` and the new `session_key` |
//!
//! GET endpoints called with another method answer 43001, POST endpoints 43002.
//! An openid the app has never seen fails checksession with 87009 (there is no key the
//! signature could match).
//!
//! # Control endpoints (JSON in, JSON out)
//!
//! `appid` may be left out of any of them when the fake has exactly one app. Bad
//! requests get HTTP 400 `{"errcode":400,"errmsg":"<field>: <what is wrong>, rid: ..."}`;
//! unknown paths 404 in the same shape.
//!
//! * `POST /__fake/login` `{"appid"?, "user": "alice", "unionid"?: bool}` →
//!   `{"code", "openid", "unionid": string|null}`: what `wx.login()` gives the
//!   mini-program. Rotates alice's session_key (unless rotation is off). Whether
//!   jscode2session reports a unionid follows a hash of the user name (about half the
//!   users) unless `unionid` says otherwise; that choice sticks for later logins.
//! * `POST /__fake/open_data` `{"appid"?, "user", "kind": "user_info"|"phone"|"werun"|"share",
//!   "data"?: {...}, "watermark_appid"?, "timestamp"?}` → `{"encrypted_data", "iv",
//!   "raw_data"?, "signature"?}`, encrypted with the user's CURRENT session_key (409 if
//!   the user has never logged in). `data` is laid over the default plaintext field by
//!   field; `raw_data` and `signature` come with `user_info` only.
//! * `POST /__fake/phone_code` `{"appid"?, "user", "phone"?: "13800138000",
//!   "country_code"?: "86"}` → `{"code"}` for getuserphonenumber (300 s, single use).
//! * `POST /__fake/behaviour` `{"latency_ms"?, "fail"?: {"api", "errcode", "times"?: 1},
//!   "clear_failures"?, "country_code_as_string"?, "errcode_on_success"?,
//!   "rotate_session_key"?, "invalidate_tokens"?, "advance_seconds"?}` → `{"ok": true}`.
//!   `fail.api` is one of `jscode2session`, `token`, `stable_token`,
//!   `getuserphonenumber`, `checksession`, `resetusersessionkey` or `*`; `fail.errcode`
//!   an integer, `"http_500"`, `"garbage"` (HTTP 200, not JSON) or `"hang"` (no answer
//!   for 60 s, then -1). Each matching call uses up one failure and changes nothing
//!   else, so a retry with the same code can succeed.
//! * `POST /__fake/app` `{"appid", "secret"}` → `{"ok": true}`: adds or replaces an app.
//! * `GET /__fake/stats` → `{"calls": {api: n}, "current_tokens": {appid: token},
//!   "users": n, "pending_failures": n, "now": unix_seconds}`; `current_tokens` holds,
//!   per app, the most recently issued token of either family that still works.

mod api;
mod behaviour;
mod clock;
mod control;
mod ids;
mod open_data;
mod pay;
mod phone;
mod reply;
mod router;
mod server;
mod sessions;
mod state;
mod tokens;

#[cfg(test)]
mod http_tests;

use std::time::Duration;

pub use pay::write_test_merchant;
pub use pay::{
    FakePayOptions, PlatformMode, PLATFORM2_CERT_PEM, PLATFORM2_CERT_SERIAL, PLATFORM2_PUBLIC_KEY_PEM,
    PLATFORM_CERT_PEM, PLATFORM_CERT_SERIAL, PLATFORM_PUBLIC_KEY_ID, PLATFORM_PUBLIC_KEY_PEM, TEST_APIV3_KEY,
    TEST_MCHID, TEST_MERCHANT_KEY_PEM, TEST_MERCHANT_PUBLIC_KEY_PEM, TEST_MERCHANT_SERIAL,
};
pub use server::{serve_forever, FakeWeChat};

/// How a fake starts out; `POST /__fake/behaviour` changes most of it at run time.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// (appid, secret) pairs the fake accepts.
    pub apps: Vec<(String, String)>,
    /// Slept before answering each WeChat API call (not the control endpoints).
    pub latency: Duration,
    /// Whether every login code gives the user a new session_key, as WeChat may.
    pub rotate_session_key: bool,
    /// Lifetime of every access token (WeChat's is 7200 s).
    pub token_ttl_seconds: u64,
    /// `cgi-bin/token` calls per app per day before 45009 (sources say 2000 or 10000).
    pub daily_token_quota: u32,
    /// Accept any never-seen code of the form `mock-<user>-<anything>` once, as the code
    /// of `<user>` (like WeChat devtools' mock codes). For load tests, whose clients
    /// cannot fetch a fresh code per request; off by default.
    pub mock_codes: bool,
    /// The fake WeChat Pay's merchant; `None` is the fixed test setup
    /// (`FakePayOptions::test()`: WeChat's documented test merchant, plain-http
    /// notify_urls refused).
    pub pay: Option<FakePayOptions>,
}

impl Default for FakeOptions {
    fn default() -> FakeOptions {
        FakeOptions {
            apps: Vec::new(),
            latency: Duration::ZERO,
            rotate_session_key: true,
            token_ttl_seconds: 7200,
            daily_token_quota: 2000,
            mock_codes: false,
            pay: None,
        }
    }
}
