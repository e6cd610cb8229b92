//! Counters for `/metrics`, rendered as Prometheus text by hand: the format is a few
//! lines, not worth a dependency.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Clone, Default)]
pub struct Metrics(Arc<Inner>);

#[derive(Default)]
struct Inner {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    logins: Mutex<BTreeMap<&'static str, u64>>,
    wechat: Mutex<BTreeMap<(&'static str, String), u64>>,
    pay_calls: Mutex<BTreeMap<(&'static str, String), u64>>,
    notifications: Mutex<BTreeMap<&'static str, u64>>,
    maintenance: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    webhook: Webhook,
}

/// The webhook's delivery counts and its backlog, as the delivery thread last saw it.
#[derive(Default)]
struct Webhook {
    deliveries: Mutex<BTreeMap<&'static str, u64>>,
    /// False until the delivery thread runs: no backlog lines without one.
    running: AtomicBool,
    pending: AtomicI64,
    /// 0 = nothing pending.
    oldest_created_at: AtomicI64,
    failed: AtomicI64,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(key).or_insert(0) += 1;
}

impl Metrics {
    /// One answered request; `route` is the route's pattern, never the raw path (which
    /// would let clients create unbounded label values).
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        bump(&self.0.requests, (route, status));
        // One bucket per request (the exposition sums them up): every shared counter
        // bumped is a cache line the two cores pass back and forth on the hot path.
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
            self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.0.latency_count.fetch_add(1, Ordering::Relaxed);
        self.0.latency_sum_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// One login attempt's result: "new_user", "returning", "replayed" or an error code.
    pub fn login(&self, result: &'static str) {
        bump(&self.0.logins, result);
    }

    pub fn wechat_call(&self, api: &'static str, errcode: String) {
        bump(&self.0.wechat, (api, errcode));
    }

    /// One WeChat Pay call: its API and its answer (`OK`, WeChat Pay's code, `TIMEOUT`...).
    pub fn pay_call(&self, api: &'static str, code: String) {
        bump(&self.0.pay_calls, (api, code));
    }

    /// One WeChat Pay notification's result: "applied", "duplicate", "untrusted",
    /// "refused" or "failed".
    pub fn notification(&self, result: &'static str) {
        bump(&self.0.notifications, result);
    }

    /// The payments part of the exposition; `orders` (state, count) comes from the caller.
    pub fn render_pay(&self, orders: &[(String, i64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP wxlogin_pay_orders Orders, by state.\n# TYPE wxlogin_pay_orders gauge\n");
        for (state, n) in orders {
            let _ = writeln!(out, "wxlogin_pay_orders{{state=\"{state}\"}} {n}");
        }
        out.push_str("# HELP wxlogin_pay_notifications_total WeChat Pay notifications, by result.\n# TYPE wxlogin_pay_notifications_total counter\n");
        for (result, n) in self.0.notifications.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "wxlogin_pay_notifications_total{{result=\"{result}\"}} {n}");
        }
        out.push_str("# HELP wxlogin_pay_calls_total Calls to WeChat Pay, by API and answer code (OK = success).\n# TYPE wxlogin_pay_calls_total counter\n");
        for ((api, code), n) in self.0.pay_calls.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "wxlogin_pay_calls_total{{api=\"{api}\",code=\"{code}\"}} {n}");
        }
        out
    }

    /// One webhook attempt's result ("delivered", "rejected", "timeout", "unreachable"),
    /// or "gave_up" when an event is given up on.
    pub fn webhook_delivery(&self, result: &'static str) {
        bump(&self.0.webhook.deliveries, result);
    }

    /// The outbox as the delivery thread saw it on its last wake.
    pub fn webhook_backlog(&self, pending: i64, oldest_created_at: Option<i64>, failed: i64) {
        let w = &self.0.webhook;
        w.pending.store(pending, Ordering::Relaxed);
        w.oldest_created_at.store(oldest_created_at.unwrap_or(0), Ordering::Relaxed);
        w.failed.store(failed, Ordering::Relaxed);
        w.running.store(true, Ordering::Relaxed);
    }

    /// One maintenance pass of `task`: "ran", "skipped" (another instance held its
    /// database lock) or "failed" (the lock could not be asked for).
    pub fn maintenance_pass(&self, task: &'static str, outcome: &'static str) {
        bump(&self.0.maintenance, (task, outcome));
    }

    pub fn logins(&self, result: &str) -> u64 {
        let m = self.0.logins.lock().unwrap_or_else(|p| p.into_inner());
        m.get(result).copied().unwrap_or(0)
    }

    /// The exposition; `live_sessions` and `token_ages` (app, seconds) come from the caller.
    pub fn render(&self, live_sessions: i64, token_ages: &[(String, i64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP wxlogin_requests_total HTTP requests answered, by route and status.\n# TYPE wxlogin_requests_total counter\n");
        for ((route, status), n) in self.0.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "wxlogin_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP wxlogin_request_duration_seconds Time to answer a request.\n# TYPE wxlogin_request_duration_seconds histogram\n");
        let mut n = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            n += self.0.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "wxlogin_request_duration_seconds_bucket{{le=\"{bound}\"}} {n}");
        }
        let count = self.0.latency_count.load(Ordering::Relaxed);
        let sum = self.0.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "wxlogin_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ =
            writeln!(out, "wxlogin_request_duration_seconds_sum {sum}\nwxlogin_request_duration_seconds_count {count}");
        out.push_str("# HELP wxlogin_logins_total Login attempts, by result.\n# TYPE wxlogin_logins_total counter\n");
        for (result, n) in self.0.logins.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "wxlogin_logins_total{{result=\"{result}\"}} {n}");
        }
        out.push_str("# HELP wxlogin_wechat_calls_total Calls to WeChat, by API and errcode (0 = success).\n# TYPE wxlogin_wechat_calls_total counter\n");
        for ((api, errcode), n) in self.0.wechat.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "wxlogin_wechat_calls_total{{api=\"{api}\",errcode=\"{errcode}\"}} {n}");
        }
        out.push_str(
            "# HELP wxlogin_live_sessions Sessions that have not expired.\n# TYPE wxlogin_live_sessions gauge\n",
        );
        let _ = writeln!(out, "wxlogin_live_sessions {live_sessions}");
        out.push_str("# HELP wxlogin_access_token_age_seconds Age of each app's cached access token.\n# TYPE wxlogin_access_token_age_seconds gauge\n");
        for (app, age) in token_ages {
            let _ = writeln!(out, "wxlogin_access_token_age_seconds{{app=\"{app}\"}} {age}");
        }
        out.push_str("# HELP wxlogin_maintenance_passes_total Maintenance passes, by task and outcome (skipped: another instance held the task's lock).\n# TYPE wxlogin_maintenance_passes_total counter\n");
        for ((task, outcome), n) in self.0.maintenance.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "wxlogin_maintenance_passes_total{{task=\"{task}\",outcome=\"{outcome}\"}} {n}");
        }
        self.render_webhook(&mut out, crate::store::now());
        out
    }

    fn render_webhook(&self, out: &mut String, now: i64) {
        let w = &self.0.webhook;
        out.push_str("# HELP wxlogin_webhook_deliveries_total Webhook delivery attempts, by result (gave_up: events given up on).\n# TYPE wxlogin_webhook_deliveries_total counter\n");
        for (result, n) in w.deliveries.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "wxlogin_webhook_deliveries_total{{result=\"{result}\"}} {n}");
        }
        if !w.running.load(Ordering::Relaxed) {
            return;
        }
        let oldest = w.oldest_created_at.load(Ordering::Relaxed);
        let age = if oldest > 0 { (now - oldest).max(0) } else { 0 };
        let _ = write!(
            out,
            "# HELP wxlogin_webhook_backlog Payment events waiting for delivery.\n# TYPE wxlogin_webhook_backlog gauge\n\
             wxlogin_webhook_backlog {}\n\
             # HELP wxlogin_webhook_oldest_pending_age_seconds Age of the oldest event waiting for delivery (0: none).\n\
             # TYPE wxlogin_webhook_oldest_pending_age_seconds gauge\nwxlogin_webhook_oldest_pending_age_seconds {age}\n\
             # HELP wxlogin_webhook_failed_events Events given up on after 3 days (`wxlogin pay events retry`).\n\
             # TYPE wxlogin_webhook_failed_events gauge\nwxlogin_webhook_failed_events {}\n",
            w.pending.load(Ordering::Relaxed),
            w.failed.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.request("/v1/session", 200, Duration::from_micros(700));
        m.request("/v1/session", 401, Duration::from_millis(30));
        m.login("new_user");
        m.wechat_call("jscode2session", "40029".into());
        let text = m.render(3, &[("main".into(), 12)]);
        assert!(text.contains("wxlogin_requests_total{route=\"/v1/session\",status=\"200\"} 1"));
        assert!(text.contains("wxlogin_request_duration_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("wxlogin_request_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("wxlogin_request_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("wxlogin_logins_total{result=\"new_user\"} 1"));
        assert!(text.contains("wxlogin_wechat_calls_total{api=\"jscode2session\",errcode=\"40029\"} 1"));
        assert!(text.contains("wxlogin_live_sessions 3"));
        assert!(text.contains("wxlogin_access_token_age_seconds{app=\"main\"} 12"));
        assert!(!text.contains("wxlogin_webhook_backlog"), "no backlog without a delivery thread");
    }

    #[test]
    fn webhook_deliveries_and_backlog() {
        let m = Metrics::default();
        m.webhook_delivery("delivered");
        m.webhook_delivery("rejected");
        m.webhook_delivery("delivered");
        m.webhook_backlog(3, Some(1000), 1);
        let mut text = String::new();
        m.render_webhook(&mut text, 1042);
        assert!(text.contains("wxlogin_webhook_deliveries_total{result=\"delivered\"} 2"));
        assert!(text.contains("wxlogin_webhook_deliveries_total{result=\"rejected\"} 1"));
        assert!(text.contains("\nwxlogin_webhook_backlog 3\n"));
        assert!(text.contains("\nwxlogin_webhook_oldest_pending_age_seconds 42\n"));
        assert!(text.contains("\nwxlogin_webhook_failed_events 1\n"));
        m.webhook_backlog(0, None, 0);
        let mut text = String::new();
        m.render_webhook(&mut text, 1042);
        assert!(text.contains("\nwxlogin_webhook_oldest_pending_age_seconds 0\n"));
    }

    #[test]
    fn payments_are_counted_by_state_result_api_and_code() {
        let m = Metrics::default();
        m.pay_call("jsapi", "OK".into());
        m.pay_call("query", "ORDER_NOT_EXIST".into());
        m.notification("applied");
        m.notification("applied");
        let text = m.render_pay(&[("created".into(), 2), ("paid".into(), 1)]);
        assert!(text.contains("wxlogin_pay_orders{state=\"paid\"} 1"));
        assert!(text.contains("wxlogin_pay_notifications_total{result=\"applied\"} 2"));
        assert!(text.contains("wxlogin_pay_calls_total{api=\"jsapi\",code=\"OK\"} 1"));
        assert!(text.contains("wxlogin_pay_calls_total{api=\"query\",code=\"ORDER_NOT_EXIST\"} 1"));
    }
}
