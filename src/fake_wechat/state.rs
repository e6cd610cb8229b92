//! Everything the fake remembers, behind one mutex, and the clock beside it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::behaviour::{Behaviour, APIS};
use super::clock::Clock;
use super::pay::PayFake;
use super::phone::PhoneCodes;
use super::sessions::Sessions;
use super::tokens::TokenStore;
use super::FakeOptions;

#[derive(Debug)]
pub(crate) struct State {
    /// appid -> secret.
    pub apps: BTreeMap<String, String>,
    pub sessions: Sessions,
    pub tokens: TokenStore,
    pub phones: PhoneCodes,
    pub behaviour: Behaviour,
    pub daily_token_quota: u32,
    pub mock_codes: bool,
    calls: BTreeMap<&'static str, u64>,
}

impl State {
    pub(crate) fn new(opts: &FakeOptions) -> State {
        State {
            apps: opts.apps.iter().cloned().collect(),
            sessions: Sessions::default(),
            tokens: TokenStore::new(opts.token_ttl_seconds),
            phones: PhoneCodes::default(),
            behaviour: Behaviour::new(opts.latency, opts.rotate_session_key),
            daily_token_quota: opts.daily_token_quota,
            mock_codes: opts.mock_codes,
            calls: APIS.iter().map(|api| (*api, 0)).collect(),
        }
    }

    pub(crate) fn count_call(&mut self, api: &'static str) {
        *self.calls.entry(api).or_insert(0) += 1;
    }

    /// The appid a control request means: the one it names, which must be configured,
    /// or the only one there is.
    pub(crate) fn resolve_app(&self, appid: Option<&str>) -> Result<String, String> {
        match appid {
            Some(appid) if self.apps.contains_key(appid) => Ok(appid.to_string()),
            Some(appid) => Err(format!("appid: {appid:?} is not one of the fake's apps")),
            None if self.apps.len() == 1 => Ok(self.apps.keys().next().cloned().unwrap_or_default()),
            None => Err(format!("appid: required when the fake has {} apps", self.apps.len())),
        }
    }

    /// What `GET /__fake/stats` answers.
    pub(crate) fn stats(&self, now: i64) -> Value {
        let current: BTreeMap<String, String> = self.tokens.current(now).into_iter().collect();
        json!({
            "calls": self.calls,
            "current_tokens": current,
            "users": self.sessions.user_count(),
            "pending_failures": self.behaviour.pending_failures(),
            "now": now,
        })
    }
}

/// What the worker threads share.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    pub clock: Clock,
    /// The fake WeChat Pay, with its own lock: its notification threads hold a reference.
    pub pay: Arc<PayFake>,
    stopping: AtomicBool,
}

impl Shared {
    pub(crate) fn new(state: State, clock: Clock, pay: PayFake) -> Shared {
        Shared { state: Mutex::new(state), clock, pay: Arc::new(pay), stopping: AtomicBool::new(false) }
    }

    /// The state, also after a panic elsewhere: the fake must keep answering, and every
    /// update to the state is a single step that leaves it consistent.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration` (never holding the state lock: callers pass a copied value),
    /// cut short when the fake stops so that `stop()` does not wait out a 60 s hang.
    pub(crate) fn pause(&self, duration: Duration) {
        let until = Instant::now() + duration;
        loop {
            let now = Instant::now();
            if now >= until || self.is_stopping() {
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(apps: &[(&str, &str)]) -> FakeOptions {
        FakeOptions {
            apps: apps.iter().map(|(a, s)| (a.to_string(), s.to_string())).collect(),
            ..FakeOptions::default()
        }
    }

    #[test]
    fn resolve_app_needs_a_name_unless_there_is_one_app() {
        let one = State::new(&opts(&[("wx1", "s1")]));
        assert_eq!(one.resolve_app(None), Ok("wx1".into()));
        assert_eq!(one.resolve_app(Some("wx1")), Ok("wx1".into()));
        assert!(one.resolve_app(Some("wx9")).is_err());
        let two = State::new(&opts(&[("wx1", "s1"), ("wx2", "s2")]));
        assert!(two.resolve_app(None).is_err());
        assert!(State::new(&opts(&[])).resolve_app(None).is_err());
    }

    #[test]
    fn stats_list_every_api_from_the_start() {
        let mut s = State::new(&opts(&[("wx1", "s1")]));
        s.count_call("token");
        let stats = s.stats(0);
        for api in APIS {
            assert!(stats["calls"][api].is_u64(), "{api}");
        }
        assert_eq!(stats["calls"]["token"], 1);
        assert_eq!(stats["current_tokens"], json!({}));
    }

    #[test]
    fn pause_returns_early_when_stopping() {
        let pay = PayFake::new(crate::fake_wechat::FakePayOptions::test(), Vec::new(), Clock::default());
        let shared = Shared::new(State::new(&opts(&[])), Clock::default(), pay);
        shared.stop();
        let start = Instant::now();
        shared.pause(Duration::from_secs(60));
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
