//! [`App`]: the state every handler sees, built once by `serve` (or `demo`, or a test).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::{AppConfig, Config};
use crate::error::ApiError;
pub use crate::limits::RateLimiter;
use crate::limits::UserLimits;
use crate::metrics::Metrics;
use crate::payments::Payments;
use crate::store::Store;
use crate::wechat::{AccessTokens, WeChat};

pub struct App {
    pub config: Config,
    pub store: Arc<Store>,
    pub wechat: WeChat,
    /// Each app's access token (and the WeChat APIs that need one).
    pub tokens: AccessTokens,
    pub metrics: Metrics,
    pub code_flights: CodeFlights,
    pub login_limiter: RateLimiter,
    /// Per-user limits on WeChat-costly calls (phone lookups, checksession).
    pub user_limits: UserLimits,
    /// WeChat Pay: `None` when `[pay]` is absent (payments off).
    pub payments: Option<Payments>,
    stopping: AtomicBool,
}

impl App {
    /// Opens the database (creating and migrating it) and builds the clients.
    pub fn open(config: Config) -> Result<App, crate::store::StoreError> {
        let store = Arc::new(Store::connect(&config.database)?);
        let metrics = Metrics::default();
        let wechat = WeChat::new(&config.wechat, metrics.clone());
        Ok(App {
            tokens: AccessTokens::new(&config, wechat.clone(), store.clone()),
            wechat,
            login_limiter: RateLimiter::new(config.rate_limit.login_per_ip_per_minute, Duration::from_secs(60)),
            user_limits: UserLimits::new(config.rate_limit.phone_per_user_per_hour),
            code_flights: CodeFlights::default(),
            payments: Payments::new(&config, metrics.clone()),
            metrics,
            store,
            config,
            stopping: AtomicBool::new(false),
        })
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// The payments, or 404 when `[pay]` is absent.
    pub fn payments(&self) -> Result<&Payments, ApiError> {
        self.payments.as_ref().ok_or(ApiError::PaymentsOff)
    }

    /// The app a request names, or the only one when it names none.
    pub fn resolve_app(&self, name: Option<&str>) -> Result<&AppConfig, ApiError> {
        match name {
            Some(n) => self.config.app(n).ok_or_else(|| ApiError::UnknownApp(n.chars().take(64).collect())),
            None if self.config.apps.len() == 1 => Ok(&self.config.apps[0]),
            None => Err(ApiError::invalid("app", "is required when several apps are configured")),
        }
    }

    /// Until shutdown, on its own thread: copies the WAL into the database file every
    /// [`FOLD_EVERY`] (see `Store::upkeep`), and purges expired sessions and spent
    /// codes every `every`, in small batches, so that requests are never blocked behind it.
    pub fn spawn_maintenance(self: &Arc<App>, every: Duration) -> std::io::Result<std::thread::JoinHandle<()>> {
        if let Some(p) = &self.payments {
            self.spawn_pay_maintenance(PAY_PASS_EVERY)?;
            if p.config.platform_certificates {
                self.spawn_pay_certificates()?;
            }
        }
        let app = self.clone();
        std::thread::Builder::new().name("maintenance".into()).spawn(move || {
            let mut next = Instant::now();
            let mut fold_failed_logged: Option<Instant> = None;
            while !app.is_stopping() {
                match app.store.upkeep() {
                    Ok(_) => fold_failed_logged = None,
                    // Once a minute at most: a full disk would otherwise fill the log too.
                    Err(e) if fold_failed_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) => {
                        log::warn!("maintenance: database upkeep (WAL copy, or login counts) failed: {e}");
                        fold_failed_logged = Some(Instant::now());
                    }
                    Err(_) => {}
                }
                if Instant::now() >= next {
                    app.exclusively("purge", || {
                        match app.store.purge(crate::store::now(), app.config.session.code_replay_seconds) {
                            Ok(0) => {}
                            Ok(n) => log::info!("maintenance: purged {n} expired session(s) and spent code(s)"),
                            Err(e) => log::warn!("maintenance: purge failed: {e}"),
                        }
                    });
                    app.login_limiter.prune();
                    app.user_limits.prune();
                    next = Instant::now() + every;
                }
                std::thread::sleep(FOLD_EVERY);
            }
        })
    }

    /// Until shutdown, on its own thread (so that a hung WeChat Pay never delays folding
    /// the WAL): a bounded WeChat Pay pass every `every` (`Payments::maintenance_pass`).
    /// The thread is not joined at shutdown: it holds no transaction across a WeChat Pay
    /// call, and stops between orders once shutdown begins.
    pub fn spawn_pay_maintenance(self: &Arc<App>, every: Duration) -> std::io::Result<std::thread::JoinHandle<()>> {
        let app = self.clone();
        std::thread::Builder::new().name("pay-maintenance".into()).spawn(move || {
            let mut next = Instant::now() + every;
            while !app.is_stopping() {
                if Instant::now() >= next {
                    app.exclusively("pay", || app.pay_pass(crate::store::now()));
                    next = Instant::now() + every;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    }

    /// Until shutdown, on its own thread (a slow WeChat Pay delays neither the API nor the
    /// order pass): fetches the platform certificates at once, then hourly and before one
    /// expires, and early (at most once a minute) when a message names a serial not held;
    /// after a failure, again in 30 s, the certificates already trusted kept.
    /// Until the first fetch succeeds, a merchant without a public key has no key to
    /// verify WeChat Pay with, and pay calls answer 502 `pay_error` without calling it.
    pub fn spawn_pay_certificates(self: &Arc<App>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let app = self.clone();
        std::thread::Builder::new().name("pay-certificates".into()).spawn(move || {
            let mut next = crate::store::now();
            let mut last_early: Option<i64> = None;
            while !app.is_stopping() {
                let now = crate::store::now();
                // A serial we do not hold may be a certificate WeChat Pay just started
                // using: fetch early, at most once a minute.
                let gap = crate::pay::certificates::EARLY_REFRESH_GAP_SECONDS;
                let early = app.payments.as_ref().is_some_and(|p| p.config.verifier.take_unknown_serial_seen())
                    && last_early.is_none_or(|t| now - t >= gap);
                if early {
                    last_early = Some(now);
                }
                if now >= next || early {
                    // Every instance needs the certificates in its own memory: one that
                    // found another fetching tries again shortly, rather than in an hour.
                    next = app
                        .exclusively("certificates", || app.pay_certificates_refresh(now))
                        .unwrap_or(now + CERTIFICATES_AFTER_SKIP);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    }

    /// Runs `pass` unless another instance sharing the database is running `task` now
    /// (its database lock; always free on SQLite), and counts which for `/metrics`.
    pub fn exclusively<T>(&self, task: &'static str, pass: impl FnOnce() -> T) -> Option<T> {
        match self.store.try_task_lock(task) {
            Ok(Some(held)) => {
                self.metrics.maintenance_pass(task, "ran");
                let out = pass();
                drop(held);
                Some(out)
            }
            Ok(None) => {
                self.metrics.maintenance_pass(task, "skipped");
                None
            }
            Err(e) => {
                log::warn!("maintenance: could not ask for the {task} lock: {e}");
                self.metrics.maintenance_pass(task, "failed");
                None
            }
        }
    }

    /// One certificate fetch; when the next one is due.
    pub fn pay_certificates_refresh(&self, now: i64) -> i64 {
        let Some(p) = self.payments.as_ref() else { return i64::MAX };
        match p.refresh_certificates() {
            Ok(_) => crate::pay::certificates::next_refresh(&p.config.verifier.certificates(), now),
            Err(e) => {
                let kept = p.config.verifier.certificates().len();
                log::warn!("wechat pay: fetching the platform certificates failed: {e}; keeping the {kept} trusted");
                now + crate::pay::certificates::RETRY_AFTER_FAILURE_SECONDS
            }
        }
    }

    /// One WeChat Pay maintenance pass at `now`; how many orders it changed.
    pub fn pay_pass(&self, now: i64) -> usize {
        let Some(p) = self.payments.as_ref() else { return 0 };
        let n = p.maintenance_pass(&self.config, &self.store, now, &|| self.is_stopping());
        if n > 0 {
            log::info!("maintenance: {n} order(s) or refund(s) changed after asking WeChat Pay");
        }
        n
    }
}

/// How soon an instance that found another fetching the certificates tries again.
const CERTIFICATES_AFTER_SKIP: i64 = 5;

/// How often the WeChat Pay pass runs (each pass bounded by `payments::PASS_LIMIT`).
const PAY_PASS_EVERY: Duration = Duration::from_secs(10);

/// How often the maintenance thread copies the WAL into the database file. At 4,000
/// logins a second that is some 4,000 pages each time, well under the writer's own
/// checkpoint threshold, which then never comes due while the server runs.
const FOLD_EVERY: Duration = Duration::from_millis(200);

/// Exchanges in progress, keyed by (app, code hash), so that two requests with the same
/// code at the same moment share one call to WeChat (a second call would get 40163).
#[derive(Default)]
pub struct CodeFlights {
    flights: Mutex<HashMap<[u8; 32], Arc<Flight>>>,
}

#[derive(Default)]
pub struct Flight {
    outcome: Mutex<Option<Result<(), ApiError>>>,
    done: Condvar,
}

pub enum Role {
    /// This request performs the exchange and must call [`CodeFlights::land`].
    Leader,
    /// Another request is exchanging this code; wait for its outcome.
    Follower(Arc<Flight>),
}

impl CodeFlights {
    pub fn join(&self, key: [u8; 32]) -> Role {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        match flights.get(&key) {
            Some(f) => Role::Follower(f.clone()),
            None => {
                flights.insert(key, Arc::new(Flight::default()));
                Role::Leader
            }
        }
    }

    /// Publishes the leader's outcome to the followers and ends the flight. The leader
    /// must have committed its result to the database first, so that a request arriving
    /// after the flight ends finds it there.
    pub fn land(&self, key: [u8; 32], outcome: Result<(), ApiError>) {
        let flight = self.flights.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        if let Some(f) = flight {
            *f.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
            f.done.notify_all();
        }
    }
}

impl Flight {
    /// Waits for the leader, at most `limit`; a leader that never lands is a bug, and
    /// the follower then answers 504 rather than hang.
    pub fn wait(&self, limit: Duration) -> Result<(), ApiError> {
        let deadline = Instant::now() + limit;
        let mut outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(o) = outcome.as_ref() {
                return o.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ApiError::WeChatTimeout);
            }
            outcome = self.done.wait_timeout(outcome, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_get_the_leaders_outcome() {
        let flights = Arc::new(CodeFlights::default());
        assert!(matches!(flights.join([1; 32]), Role::Leader));
        let Role::Follower(f) = flights.join([1; 32]) else { panic!("second join must follow") };
        let waiter = std::thread::spawn(move || f.wait(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(50));
        flights.land([1; 32], Err(ApiError::InvalidCode { errcode: 40029 }));
        assert!(matches!(waiter.join().unwrap(), Err(ApiError::InvalidCode { errcode: 40029 })));
        assert!(matches!(flights.join([1; 32]), Role::Leader));
    }
}
