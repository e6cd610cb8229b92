//! The owner of each app's access token ("中控" in WeChat's guidance), and the WeChat
//! APIs that need one: `getuserphonenumber` and `checksession`.
//!
//! Rules (see research/peers.md P3, P16):
//! * one token per app, cached in memory and in SQLite (`access_tokens`), so that a
//!   restart reuses a valid token instead of spending quota;
//! * refreshed ahead of expiry ([`REFRESH_AHEAD`]), and a token is never handed out with
//!   less than [`MIN_VALIDITY`] seconds left when WeChat can give a better one;
//! * ONE refresh at a time per app: a `Mutex` per app is held across the refresh, and
//!   whoever gets it next re-checks the cache first, so waiters get the new token (or the
//!   refresh's error) without a second call; the lock is a guard, released on every path;
//! * a token WeChat rejects (40001/42001) is dropped only if it is still the current one
//!   (compare-then-replace), and the failed call is retried once: never a loop;
//! * `stable_token` by default (every caller gets the same token, so other services
//!   cannot clobber ours); `force_refresh` only when WeChat keeps handing out the very
//!   token that was rejected, at most once a minute per app.
//!
//! The token is a [`Secret`] and is never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::client::Call;
use super::{WeChat, WeChatError};
use crate::config::{Config, TokenApi};
use crate::secrets::Secret;
use crate::store::tokens::StoredToken;
use crate::store::{self, Store};

/// A token handed out is valid for at least this many more seconds.
pub const MIN_VALIDITY: i64 = 300;
/// A token is refreshed when fewer than this many seconds are left.
pub const REFRESH_AHEAD: i64 = 600;
/// Forced stable_token refreshes (20 a day at WeChat) at most this often per app.
const FORCE_MIN_INTERVAL: Duration = Duration::from_secs(60);

/// The access-token manager of every configured app.
pub struct AccessTokens {
    wechat: WeChat,
    store: Arc<Store>,
    api: TokenApi,
    apps: HashMap<String, Slot>,
}

struct Slot {
    appid: String,
    secret: Secret,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Whether the database's row has been read since start.
    loaded: bool,
    current: Option<Cached>,
    /// The token last reported invalid, to notice WeChat handing it out again.
    rejected: Option<Secret>,
    last_force: Option<Instant>,
    /// When the last refresh failed, and why: what waiters that queued behind it get.
    last_failure: Option<(Instant, WeChatError)>,
    refreshes: u64,
}

#[derive(Clone)]
struct Cached {
    token: Secret,
    expires_at: i64,
    /// When to ask WeChat again, even though the token still works.
    refresh_at: i64,
}

impl Cached {
    fn new(token: Secret, expires_at: i64, now: i64) -> Cached {
        // A stable token in its last ten minutes is what WeChat answers until it renews
        // it (five minutes before expiry); asking again before then gets the same token.
        let ahead = expires_at - REFRESH_AHEAD;
        let refresh_at = if ahead > now { ahead } else { expires_at - MIN_VALIDITY };
        Cached { token, expires_at, refresh_at }
    }

    fn usable(&self, now: i64) -> bool {
        now < self.refresh_at && self.expires_at - now >= MIN_VALIDITY
    }
}

/// A phone number from `getuserphonenumber`.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneNumber {
    /// WeChat's `phoneNumber`, as given (with the country code for non-CN numbers).
    pub phone_number: String,
    pub pure_phone_number: String,
    /// Always a string here, whether WeChat sent `86` or `"86"`.
    pub country_code: Option<String>,
}

impl AccessTokens {
    pub fn new(config: &Config, wechat: WeChat, store: Arc<Store>) -> AccessTokens {
        let apps = config
            .apps
            .iter()
            .map(|a| {
                let slot = Slot { appid: a.appid.clone(), secret: a.secret.clone(), state: Mutex::default() };
                (a.name.clone(), slot)
            })
            .collect();
        AccessTokens { wechat, store, api: config.wechat.token_api, apps }
    }

    /// The app's access token and its expiry (Unix seconds), valid for at least
    /// [`MIN_VALIDITY`] more seconds; fetched from WeChat only when the cached one is due.
    /// A failure to obtain one is [`WeChatError::AccessToken`].
    pub fn current_token(&self, app: &str) -> Result<(Secret, i64), WeChatError> {
        let slot = self.slot(app)?;
        let arrived = Instant::now();
        let mut st = self.lock(app, slot);
        let now = store::now();
        if let Some(c) = st.current.as_ref().filter(|c| c.usable(now)) {
            return Ok((c.token.clone(), c.expires_at));
        }
        // A refresh failed while this caller waited for the lock: share its error rather
        // than queue one more call to a token API that is failing.
        if let Some((at, e)) = &st.last_failure {
            if *at >= arrived {
                return Err(e.clone());
            }
        }
        let result = self.refresh(app, slot, &mut st);
        st.last_failure = result.as_ref().err().map(|e| (Instant::now(), e.clone()));
        result
    }

    /// Reports that WeChat rejected `token`. It is dropped only if it is still the
    /// current one (someone may have replaced it already); returns whether it was.
    pub fn report_invalid(&self, app: &str, token: &str) -> bool {
        let Ok(slot) = self.slot(app) else { return false };
        let mut st = self.lock(app, slot);
        let is_current =
            st.current.as_ref().is_some_and(|c| crate::secrets::ct_eq(c.token.expose().as_bytes(), token.as_bytes()));
        if !is_current {
            return false;
        }
        log::warn!("app {app}: the access token was reported invalid; it will be replaced");
        st.current = None;
        st.rejected = Some(Secret::new(token));
        if let Err(e) = self.store.clear_access_token(app, token) {
            log::warn!("app {app}: could not forget the rejected access token in the database: {e}");
        }
        true
    }

    /// How many times this process asked WeChat for a token for `app`, successful or not.
    pub fn refreshes(&self, app: &str) -> u64 {
        self.slot(app).map(|s| self.lock(app, s).refreshes).unwrap_or(0)
    }

    /// Runs `f` with the app's token; when WeChat rejects the token (40001 "invalid or
    /// not latest", 42001 "expired"), reports it and runs `f` once more with a new one.
    pub fn with_token<T>(
        &self,
        app: &str,
        mut f: impl FnMut(&str) -> Result<T, WeChatError>,
    ) -> Result<T, WeChatError> {
        let (token, _) = self.current_token(app)?;
        match f(token.expose()) {
            Err(WeChatError::Api { errcode: errcode @ (40001 | 42001), .. }) => {
                log::info!("app {app}: WeChat rejected the access token ({errcode}); retrying once with a new one");
                self.report_invalid(app, token.expose());
                let (token, _) = self.current_token(app)?;
                f(token.expose())
            }
            other => other,
        }
    }

    /// `wxa/business/getuserphonenumber`: the phone number behind a getPhoneNumber
    /// button's `code`. With `openid`, WeChat also checks that the code is that user's.
    pub fn phone_number(&self, app: &str, code: &str, openid: Option<&str>) -> Result<PhoneNumber, WeChatError> {
        let appid = self.slot(app)?.appid.clone();
        let mut body = json!({ "code": code });
        if let Some(o) = openid {
            body["openid"] = o.into();
        }
        let v = self.with_token(app, |token| {
            let call = Call::Post {
                path: "/wxa/business/getuserphonenumber",
                query: vec![("access_token", token)],
                body: body.clone(),
            };
            self.wechat.call("getuserphonenumber", &call)
        })?;
        parse_phone(&v, &appid)
    }

    /// Asks WeChat (`wxa/checksession`) whether `session_key` is still the current
    /// session_key of the user `openid` of the app named `app` (the config's app name).
    ///
    /// `Ok(true)`: valid. `Ok(false)`: WeChat answered 87009, the key is stale (rotated
    /// by a newer wx.login, or expired): the user must call wx.login and log in again.
    /// `Err(_)`: WeChat could not say (including [`WeChatError::AccessToken`] when no
    /// access token could be obtained); convert with `ApiError::from` in a handler.
    pub fn check_session_key(&self, app: &str, openid: &str, session_key: &Secret) -> Result<bool, WeChatError> {
        let signature = super::crypto::session_key_signature(session_key.expose());
        let result = self.with_token(app, |token| {
            let query = vec![
                ("access_token", token),
                ("openid", openid),
                ("signature", signature.as_str()),
                ("sig_method", "hmac_sha256"),
            ];
            self.wechat.call("checksession", &Call::Get { path: "/wxa/checksession", query })
        });
        match result {
            Ok(_) => Ok(true),
            Err(WeChatError::Api { errcode: 87009, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn slot(&self, app: &str) -> Result<&Slot, WeChatError> {
        self.apps.get(app).ok_or_else(|| {
            WeChatError::AccessToken(Box::new(WeChatError::BadReply(format!("no app named \"{app}\" is configured"))))
        })
    }

    /// The app's state, with the database's token read in on first use.
    fn lock<'a>(&self, app: &str, slot: &'a Slot) -> MutexGuard<'a, State> {
        let mut st = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        if !st.loaded {
            st.loaded = true;
            match self.store.load_access_token(app) {
                Ok(Some(t)) => st.current = Some(Cached::new(t.token, t.expires_at, store::now())),
                Ok(None) => {}
                Err(e) => log::warn!("app {app}: could not read the stored access token: {e}"),
            }
        }
        st
    }

    /// Fetches a new token while holding the app's lock, and the database's: other
    /// instances sharing the database wait for it, then find the new token there.
    fn refresh(&self, app: &str, slot: &Slot, st: &mut State) -> Result<(Secret, i64), WeChatError> {
        let _shared = match self.store.token_refresh_lock(app) {
            Ok(held) => Some(held),
            // Without it, at worst another instance refreshes too: better than no token.
            Err(e) => {
                log::warn!("app {app}: could not take the database's token lock ({e}); refreshing without it");
                None
            }
        };
        if let Some(found) = self.saved_by_another(app, st) {
            return Ok(found);
        }
        let wrap = |e| WeChatError::AccessToken(Box::new(e));
        let started = store::now();
        st.refreshes += 1;
        let (mut token, mut expires_in) =
            fetch_token(&self.wechat, self.api, &slot.appid, &slot.secret, false).map_err(wrap)?;
        let again = st.rejected.as_ref().is_some_and(|r| *r == token);
        let may_force = st.last_force.is_none_or(|t| t.elapsed() >= FORCE_MIN_INTERVAL);
        if again && self.api == TokenApi::Stable && may_force {
            log::warn!("app {app}: WeChat still hands out the rejected access token; forcing a new one");
            st.last_force = Some(Instant::now());
            st.refreshes += 1;
            (token, expires_in) = fetch_token(&self.wechat, self.api, &slot.appid, &slot.secret, true).map_err(wrap)?;
        }
        st.rejected = None;
        let now = store::now();
        let expires_at = started + expires_in;
        let stored = StoredToken { token: token.clone(), expires_at, fetched_at: now };
        if let Err(e) = self.store.save_access_token(app, &stored) {
            log::warn!("app {app}: could not store the access token (it is still used from memory): {e}");
        }
        log::info!("app {app}: new access token from {}, valid for {expires_in} s", api_name(self.api));
        st.current = Some(Cached::new(token.clone(), expires_at, now));
        Ok((token, expires_at))
    }
}

impl AccessTokens {
    /// A usable token in the database that is not the one this process saw rejected:
    /// another instance refreshed while this one waited for the lock.
    fn saved_by_another(&self, app: &str, st: &mut State) -> Option<(Secret, i64)> {
        let saved = match self.store.load_access_token(app) {
            Ok(saved) => saved?,
            Err(e) => {
                log::warn!("app {app}: could not read the stored access token: {e}");
                return None;
            }
        };
        let now = store::now();
        let cached = Cached::new(saved.token, saved.expires_at, now);
        if !cached.usable(now) || st.rejected.as_ref() == Some(&cached.token) {
            return None;
        }
        let found = (cached.token.clone(), cached.expires_at);
        st.current = Some(cached);
        st.rejected = None;
        Some(found)
    }
}

fn api_name(api: TokenApi) -> &'static str {
    match api {
        TokenApi::Stable => "stable_token",
        TokenApi::Classic => "token",
    }
}

/// One call to the token API (`cgi-bin/stable_token` or `cgi-bin/token`): the token and
/// its `expires_in`. Used by the manager and by `wxlogin check --live`; errors are
/// WeChat's own (not wrapped).
pub fn fetch_token(
    wechat: &WeChat,
    api: TokenApi,
    appid: &str,
    secret: &Secret,
    force_refresh: bool,
) -> Result<(Secret, i64), WeChatError> {
    let v = match api {
        TokenApi::Stable => {
            let body = json!({"grant_type": "client_credential", "appid": appid, "secret": secret.expose(),
                              "force_refresh": force_refresh});
            wechat.call("stable_token", &Call::Post { path: "/cgi-bin/stable_token", query: Vec::new(), body })?
        }
        TokenApi::Classic => {
            let query = vec![("grant_type", "client_credential"), ("appid", appid), ("secret", secret.expose())];
            wechat.call("token", &Call::Get { path: "/cgi-bin/token", query })?
        }
    };
    let token = v.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty());
    let expires_in = v.get("expires_in").and_then(Value::as_i64).filter(|n| *n > 0);
    match (token, expires_in) {
        (Some(t), Some(n)) => Ok((Secret::new(t), n)),
        _ => Err(WeChatError::BadReply("the token API answered without access_token or expires_in".into())),
    }
}

fn parse_phone(v: &Value, appid: &str) -> Result<PhoneNumber, WeChatError> {
    let info = v.get("phone_info").filter(|i| i.is_object());
    let field = |name: &str| info.and_then(|i| i.get(name)).and_then(Value::as_str).map(str::to_string);
    let (Some(phone_number), Some(pure_phone_number)) = (field("phoneNumber"), field("purePhoneNumber")) else {
        return Err(WeChatError::BadReply("getuserphonenumber answered without phone_info".into()));
    };
    let country_code = match info.and_then(|i| i.get("countryCode")) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let watermark = info.and_then(|i| i.pointer("/watermark/appid")).and_then(Value::as_str);
    if watermark.is_some_and(|w| w != appid) {
        return Err(WeChatError::BadReply("the phone number's watermark names another appid".into()));
    }
    Ok(PhoneNumber { phone_number, pure_phone_number, country_code })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_ahead_and_never_handed_out_nearly_expired() {
        let c = Cached::new(Secret::new("t"), 10_000, 2_800);
        assert!(c.usable(2_800));
        assert!(c.usable(10_000 - REFRESH_AHEAD - 1));
        assert!(!c.usable(10_000 - REFRESH_AHEAD));
        // A token that arrives in its last ten minutes is kept until five are left.
        let late = Cached::new(Secret::new("t"), 10_000, 9_500);
        assert!(late.usable(9_500) && late.usable(10_000 - MIN_VALIDITY - 1));
        assert!(!late.usable(10_000 - MIN_VALIDITY));
    }

    #[test]
    fn phone_replies_are_parsed_with_either_country_code_type() {
        let v = json!({"errcode": 0, "phone_info": {"phoneNumber": "+8613800138000", "purePhoneNumber": "13800138000",
                       "countryCode": 86, "watermark": {"appid": "wx1", "timestamp": 1}}});
        let p = parse_phone(&v, "wx1").unwrap();
        assert_eq!(p.country_code.as_deref(), Some("86"));
        assert_eq!(p.pure_phone_number, "13800138000");
        let mut s = v.clone();
        s["phone_info"]["countryCode"] = "852".into();
        assert_eq!(parse_phone(&s, "wx1").unwrap().country_code.as_deref(), Some("852"));
        assert!(parse_phone(&v, "wx2").is_err(), "another app's watermark");
        assert!(parse_phone(&json!({"errcode": 0}), "wx1").is_err());
    }
}
