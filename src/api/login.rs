//! POST /v1/login: a `wx.login` code in, a session token out.
//!
//! request -> per-IP limit -> Idempotency-Key, body -> app, code and open-data shape
//! checks -> single flight -> replay window (first caller only) -> the code claimed in the
//! database (other instances) -> jscode2session -> one
//! write transaction -> open data, if any (on failure the session just written is
//! withdrawn) -> response.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::decrypt::{open_for_user, OpenDataFields};
use super::user_json;
use crate::app::{App, Role};
use crate::config::AppConfig;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::secrets::{new_token, sha256, Secret};
use crate::store::{self, Caller, CodeClaim, LoginOutcome, NewLogin, Replay, Terms};

#[derive(Deserialize)]
pub struct LoginBody {
    pub code: String,
    pub app: Option<String>,
}

pub fn login(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let result = login_inner(app, req);
    app.metrics.login(match &result {
        Ok((_, kind)) => kind,
        Err(e) => e.code(),
    });
    result.map(|(resp, _)| resp)
}

fn login_inner(app: &App, req: &Req) -> Result<(Resp, &'static str), ApiError> {
    if let Err(retry_after) = app.login_limiter.check(req.client_ip) {
        return Err(ApiError::RateLimited { retry_after });
    }
    let caller = caller(req)?;
    let map = req.object(true)?;
    let open_data = OpenDataFields::from_body(&map)?;
    let body: LoginBody = Req::decode(map)?;
    let cfg = app.resolve_app(body.app.as_deref())?;
    check_code(&body.code)?;
    if let Some(f) = &open_data {
        // Malformed open data must not spend the code.
        f.check_shape()?;
    }
    let (mut issued, kind) = exchange(app, cfg, &body.code, &caller)?;
    let decrypted = match &open_data {
        None => None,
        Some(f) => {
            // The key this very code yielded (a replay has none in hand: the stored one).
            match open_for_user(app, cfg, issued.outcome.user.id, issued.session_key.take(), f) {
                Ok((opened, user)) => {
                    if let Some(u) = user {
                        issued.outcome.user = u;
                    }
                    Some(opened.to_json())
                }
                Err(e) => {
                    withdraw(app, &issued.token);
                    return Err(e);
                }
            }
        }
    };
    Ok((respond(app, &issued, decrypted), kind))
}

/// Ends the session a failed login-with-open-data recorded, before its token was ever
/// shown to anyone. The user, the new session_key and the used code stay: WeChat has
/// already rotated the key, and a retry of the same code within the replay window then
/// gets a session without asking WeChat again.
fn withdraw(app: &App, token: &Secret) {
    if let Err(e) = app.store.delete_session(&sha256(token.expose().as_bytes())) {
        // The token was never sent, so the row is unusable; it expires on its own.
        log::warn!("could not withdraw the session of a failed login: {e}");
    }
}

/// A wx.login code: 1 to 128 printable ASCII characters, no spaces. Checked before
/// WeChat is asked, so that a phone code or a JSON blob in the wrong field fails fast.
fn check_code(code: &str) -> Result<(), ApiError> {
    if code.is_empty() || code.len() > 128 || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "code",
            "must be the 1 to 128 printable characters that wx.login returned, without spaces",
        ));
    }
    Ok(())
}

/// Who asks, for binding the code's replays to its first caller: the `Idempotency-Key`
/// (1 to 128 visible ASCII characters; only its hash is kept) and the client IP as
/// the server computes it (which honours `trust_forwarded_for`).
fn caller(req: &Req) -> Result<Caller, ApiError> {
    let key_hash = match req.header("idempotency-key") {
        None => None,
        Some(k) if (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Some(sha256(k.as_bytes()))
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "Idempotency-Key",
                "header must be 1 to 128 visible ASCII characters, without spaces",
            ))
        }
    };
    Ok(Caller { key_hash, ip: req.client_ip })
}

/// The token issued, what the database recorded, and the session_key WeChat just gave
/// for the code (None for a replay, which does not ask WeChat).
struct Issued {
    token: Secret,
    outcome: LoginOutcome,
    session_key: Option<Secret>,
}

/// WeChat's answer to a used code, which a refused replay gets too: a used code tells
/// whoever holds it nothing more than WeChat would.
const CODE_USED: ApiError = ApiError::InvalidCode { errcode: 40163 };

fn exchange(app: &App, cfg: &AppConfig, code: &str, caller: &Caller) -> Result<(Issued, &'static str), ApiError> {
    let key = sha256(format!("{}\0{code}", cfg.name).as_bytes());
    match app.code_flights.join(key) {
        Role::Leader => {
            let result = lead(app, cfg, code, &key, caller);
            app.code_flights.land(key, result.as_ref().map(|_| ()).map_err(Clone::clone));
            result
        }
        Role::Follower(flight) => {
            flight.wait(follower_limit(app))?;
            // The leader committed the used code before landing: replay it, if this is
            // the leader's own client (a follower counts as one replay).
            match replay(app, cfg, &key, caller)? {
                Some(issued) => Ok((issued, "replayed")),
                // Another client, no replays left, or a replay window of 0.
                None => Err(CODE_USED),
            }
        }
    }
}

fn lead(
    app: &App,
    cfg: &AppConfig,
    code: &str,
    key: &[u8; 32],
    caller: &Caller,
) -> Result<(Issued, &'static str), ApiError> {
    match replay_or_refuse(app, cfg, key, caller)? {
        Replay::Answered(issued) => return Ok((issued, "replayed")),
        // WeChat would answer 40163: the same, without spending a call on it.
        Replay::Refused => return Err(CODE_USED),
        Replay::NotFound => {}
    }
    let now = store::now();
    let stale_before = now - follower_limit(app).as_secs() as i64;
    if app.store.claim_code(&cfg.name, key, now, stale_before)? != CodeClaim::Won {
        return follow_other_instance(app, cfg, key, caller);
    }
    let result = ask_wechat(app, cfg, code, key, caller);
    if result.is_err() {
        if let Err(e) = app.store.release_code(&cfg.name, key) {
            // It goes stale after the follower limit, and then anyone may claim it.
            log::warn!("could not release the claim of a failed login code: {e}");
        }
    }
    result
}

/// Another instance sharing the database claimed the code first and is asking WeChat:
/// answered as an in-process follower is, once that exchange is recorded (a replay for
/// its own client, else WeChat's 40163), or 40163 when it failed or takes too long.
fn follow_other_instance(
    app: &App,
    cfg: &AppConfig,
    key: &[u8; 32],
    caller: &Caller,
) -> Result<(Issued, &'static str), ApiError> {
    let window = app.config.session.code_replay_seconds;
    if window == 0 {
        return Err(CODE_USED);
    }
    let deadline = Instant::now() + follower_limit(app);
    loop {
        match app.store.code_claim(&cfg.name, key, store::now() - window)? {
            CodeClaim::Used => {
                return match replay(app, cfg, key, caller)? {
                    Some(issued) => Ok((issued, "replayed")),
                    None => Err(CODE_USED),
                }
            }
            CodeClaim::Held | CodeClaim::Won if Instant::now() < deadline => std::thread::sleep(CLAIM_POLL),
            _ => return Err(CODE_USED),
        }
    }
}

/// How often a follower on another instance looks at the claim: a login is one WeChat
/// round trip, usually tens of milliseconds.
const CLAIM_POLL: Duration = Duration::from_millis(20);

fn ask_wechat(
    app: &App,
    cfg: &AppConfig,
    code: &str,
    key: &[u8; 32],
    caller: &Caller,
) -> Result<(Issued, &'static str), ApiError> {
    let s = app.wechat.code2session(&cfg.appid, &cfg.secret, code)?;
    let token = new_token();
    let outcome = app.store.record_login(&NewLogin {
        app: &cfg.name,
        openid: &s.openid,
        unionid: s.unionid.as_deref(),
        session_key: &s.session_key,
        code_hash: *key,
        token_hash: sha256(token.expose().as_bytes()),
        terms: terms(app),
        caller: *caller,
    })?;
    let kind = if outcome.new_user { "new_user" } else { "returning" };
    Ok((Issued { token, outcome, session_key: Some(s.session_key) }, kind))
}

fn replay(app: &App, cfg: &AppConfig, key: &[u8; 32], caller: &Caller) -> Result<Option<Issued>, ApiError> {
    Ok(match replay_or_refuse(app, cfg, key, caller)? {
        Replay::Answered(issued) => Some(issued),
        Replay::Refused | Replay::NotFound => None,
    })
}

/// A new session for a code used within the replay window, if `caller` was its first
/// caller and it has replays left (the store counts them).
fn replay_or_refuse(app: &App, cfg: &AppConfig, key: &[u8; 32], caller: &Caller) -> Result<Replay<Issued>, ApiError> {
    let session = &app.config.session;
    if session.code_replay_seconds == 0 {
        return Ok(Replay::NotFound);
    }
    let mut token = None;
    let outcome =
        app.store.replay_login(&cfg.name, key, caller, session.code_replay_seconds, &terms(app), &mut || {
            let t = new_token();
            let hash = sha256(t.expose().as_bytes());
            token = Some(t);
            hash
        })?;
    Ok(match (outcome, token) {
        (Replay::Answered(outcome), Some(token)) => Replay::Answered(Issued { token, outcome, session_key: None }),
        (Replay::NotFound, _) => Replay::NotFound,
        // (A replay answered without a token made cannot happen.)
        _ => Replay::Refused,
    })
}

fn terms(app: &App) -> Terms {
    let s = &app.config.session;
    Terms { now: store::now(), ttl: s.ttl_seconds, max_lifetime: s.max_lifetime_seconds, max_per_user: s.max_per_user }
}

/// A follower waits as long as the leader's exchange can take, with slack.
fn follower_limit(app: &App) -> Duration {
    let w = &app.config.wechat;
    Duration::from_millis(w.timeout_ms * u64::from(w.retries + 1) + 5_000)
}

fn respond(app: &App, issued: &Issued, decrypted: Option<Value>) -> Resp {
    let o = &issued.outcome;
    let mut body: Value = json!({
        "token": issued.token.expose(),
        "token_type": "Bearer",
        "expires_in": (o.expires_at - store::now()).max(0),
        "new_user": o.new_user,
        "user": user_json(app, &o.user),
    });
    if let Some(d) = decrypted {
        body["decrypted"] = d;
    }
    Resp::ok(body)
}

#[cfg(test)]
mod tests {
    use super::{caller, check_code};
    use crate::http::{Method, Req};

    #[test]
    fn idempotency_keys_are_visible_ascii_and_kept_only_as_a_hash() {
        let with = |key: &str| {
            let mut req = Req::new(Method::Post, "/v1/login");
            req.headers.push(("idempotency-key".into(), key.into()));
            caller(&req)
        };
        let c = with("3f2a-\u{7e}!").expect("visible ASCII");
        assert_eq!(c.key_hash, Some(crate::secrets::sha256(b"3f2a-~!")));
        assert!(with(&"k".repeat(128)).is_ok());
        for bad in ["", "a b", "tab\there", "caf\u{e9}", "nul\0", &"k".repeat(129)] {
            let e = with(bad).expect_err(bad);
            assert_eq!(e.code(), "invalid_request");
            assert!(e.to_string().contains("`Idempotency-Key`"), "{e}");
        }
        let none = caller(&Req::new(Method::Post, "/v1/login")).expect("a key is optional");
        assert_eq!((none.key_hash, none.ip), (None, std::net::IpAddr::from([127, 0, 0, 1])));
    }

    #[test]
    fn codes_are_checked_before_wechat_is_asked() {
        assert!(check_code("061Xq3ll2Zx3Xe4nEJml2G9kz90Xq3lt").is_ok());
        assert!(check_code("").is_err());
        assert!(check_code("a b").is_err());
        assert!(check_code(&"a".repeat(129)).is_err());
        assert!(check_code("é").is_err());
    }
}
