//! Delivers the `pay_events` outbox to `pay.webhook_url`, on a thread of its own.
//!
//! Each event is claimed (a leased attempt: see `store::pay_events`), POSTed with no
//! store lock held, then marked delivered or scheduled again. The API never waits on
//! this thread, and a slow or dead receiver costs it at most [`TIMEOUT`] per attempt.
//! Work per wake is bounded; the thread wakes when an event is written, or every
//! [`POLL_EVERY`] (for retries falling due, and events written by another process).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};

use crate::app::App;
use crate::metrics::Metrics;
use crate::secrets::Secret;
use crate::store::{self, OutboxEvent, Retry, Store};

/// No 2xx within this = a failed attempt (the contract's 10 s).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed event is left to its attempt before another may take it over: the
/// timeout, plus room for the two writes around it on a loaded machine.
pub const LEASE_SECONDS: i64 = 20;
const POLL_EVERY: Duration = Duration::from_secs(2);
/// Events delivered per wake at most, so that stopping is never far off.
const MAX_PER_WAKE: usize = 50;
/// A receiver's answer is read (so the connection can be reused) up to this, then dropped.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// The `X-Wxlogin-Signature` value: `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", crate::secrets::hex(&mac.finalize().into_bytes()))
}

/// The JSON POSTed: `{"id","type","created_at","data"}`, `data` byte for byte as stored.
pub fn body(e: &OutboxEvent) -> String {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    format!("{{\"id\":{},\"type\":{},\"created_at\":{},\"data\":{}}}", text(&e.id), text(&e.kind), e.created_at, e.data)
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Any answer but a 2xx.
    Rejected(u16),
    Timeout,
    Unreachable,
}

impl Outcome {
    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Rejected(_) => "rejected",
            Outcome::Timeout => "timeout",
            Outcome::Unreachable => "unreachable",
        }
    }

    /// For the log and `last_error`: never a body, a URL or the secret.
    fn reason(&self) -> String {
        match self {
            Outcome::Delivered => "delivered".into(),
            Outcome::Rejected(status) => format!("HTTP {status}"),
            Outcome::Timeout => format!("no answer in {} s", TIMEOUT.as_secs()),
            Outcome::Unreachable => "connection failed".into(),
        }
    }
}

/// The receiver: where, with what key, through which agent.
pub struct Webhook {
    url: String,
    secret: Secret,
    agent: ureq::Agent,
}

impl Webhook {
    pub fn new(url: &str, secret: Secret) -> Webhook {
        Webhook { url: url.to_string(), secret, agent: crate::wechat::agent::new_agent(TIMEOUT, 2) }
    }

    /// One POST of `body`, signed at `t`.
    pub fn post(&self, body: &str, t: i64) -> Outcome {
        let sig = signature(self.secret.expose().as_bytes(), t, body.as_bytes());
        let sent = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-Wxlogin-Signature", &sig)
            .send(body.as_bytes());
        match sent {
            Ok(mut answer) => {
                let status = answer.status().as_u16();
                // Drained for the connection's reuse; what it says does not matter.
                let _ = answer.body_mut().with_config().limit(MAX_ANSWER_BYTES).read_to_vec();
                if (200..300).contains(&status) {
                    Outcome::Delivered
                } else {
                    Outcome::Rejected(status)
                }
            }
            Err(ureq::Error::Timeout(_)) => Outcome::Timeout,
            Err(ureq::Error::Io(io))
                if matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) =>
            {
                Outcome::Timeout
            }
            Err(_) => Outcome::Unreachable,
        }
    }
}

/// Starts the delivery thread, which ends soon after the app begins its shutdown (an
/// attempt cut short is sent again after its lease). None when payments are off or
/// `pay.webhook_url` is empty: events are still recorded, only not sent.
pub fn spawn(app: &Arc<App>) -> std::io::Result<Option<JoinHandle<()>>> {
    let Some(pay) = app.config.pay.as_ref() else { return Ok(None) };
    if pay.webhook_url.is_empty() {
        log::info!("pay.webhook_url is empty: payment events are recorded, not delivered");
        return Ok(None);
    }
    let hook = Webhook::new(&pay.webhook_url, pay.webhook_secret.clone());
    let app = app.clone();
    let handle = std::thread::Builder::new().name("webhook".into()).spawn(move || {
        let mut store_failed_logged: Option<Instant> = None;
        while !app.is_stopping() {
            report_backlog(&app.store, &app.metrics);
            match deliver_due(&app, &hook) {
                Ok(n) if n == MAX_PER_WAKE => continue,
                Ok(_) => store_failed_logged = None,
                // Once a minute at most: a full disk would otherwise fill the log too.
                Err(e) if store_failed_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) => {
                    log::warn!("webhook: the outbox could not be read or updated: {e}");
                    store_failed_logged = Some(Instant::now());
                }
                Err(_) => {}
            }
            app.store.outbox_bell().wait(POLL_EVERY);
        }
    })?;
    Ok(Some(handle))
}

/// Delivers up to [`MAX_PER_WAKE`] due events, one attempt each; returns how many.
fn deliver_due(app: &App, hook: &Webhook) -> store::Result<usize> {
    for n in 0..MAX_PER_WAKE {
        if app.is_stopping() {
            return Ok(n);
        }
        let Some(event) = app.store.claim_event(store::now(), LEASE_SECONDS)? else { return Ok(n) };
        deliver(&app.store, &app.metrics, hook, &event)?;
    }
    Ok(MAX_PER_WAKE)
}

/// One attempt of a claimed event, and its outcome recorded.
pub fn deliver(store: &Store, metrics: &Metrics, hook: &Webhook, e: &OutboxEvent) -> store::Result<Outcome> {
    let outcome = hook.post(&body(e), store::now());
    metrics.webhook_delivery(outcome.label());
    if outcome == Outcome::Delivered {
        store.mark_delivered(&e.id, store::now())?;
        log::debug!("webhook: event {} ({} of order {}) delivered", e.id, e.kind, e.out_trade_no);
        return Ok(outcome);
    }
    let reason = outcome.reason();
    let now = store::now();
    match store.record_failed_attempt(&e.id, e.attempts, now, &reason)? {
        Retry::At(at) => log::warn!(
            "webhook: event {} ({} of order {}) attempt {}: {reason}; next attempt in {} s",
            e.id,
            e.kind,
            e.out_trade_no,
            e.attempts,
            at - now
        ),
        Retry::GaveUp => {
            metrics.webhook_delivery("gave_up");
            log::error!(
                "webhook: gave up on event {} ({} of order {}) after {} attempts over {} days ({reason}); \
                 it stays listed (`wxlogin pay events list --pending`), and `wxlogin pay events retry {}` sends it again",
                e.id,
                e.kind,
                e.out_trade_no,
                e.attempts,
                store::GIVE_UP_AFTER / 86_400,
                e.id
            );
        }
        Retry::Stale => log::debug!("webhook: event {} attempt {} ended after its lease", e.id, e.attempts),
    }
    Ok(outcome)
}

/// Sets the backlog gauges (a snapshot per wake).
fn report_backlog(store: &Store, metrics: &Metrics) {
    if let Ok(b) = store.outbox_backlog() {
        metrics.webhook_backlog(b.pending, b.oldest_created_at, b.failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of docs/api.md ("Verifying the webhook"), checked here.
    const SECRET: &str = "whsec_5f1c2a9e7b3d4c6a8e0f1b2d";
    const T: i64 = 1796202600;
    const BODY: &str = r#"{"id":"evt_3kQ9xT2mV8pL5nR7wZ4c","type":"order.paid","created_at":1796202600,"data":{"out_trade_no":"W20261202A1","state":"paid","amount":990}}"#;
    /// Computed apart from this code (Python's hmac module), so the test checks ours.
    const HEADER: &str = "t=1796202600,v1=ae600e53aba237cc2f0270d2db77485701e2b5c4b0d0e525b642fd2a90dba72c";

    #[test]
    fn the_docs_worked_example_is_what_we_send() {
        assert_eq!(signature(SECRET.as_bytes(), T, BODY.as_bytes()), HEADER);
        let docs = include_str!("../../docs/api.md");
        for part in [SECRET, BODY, HEADER] {
            assert!(docs.contains(part), "docs/api.md's worked example lacks {part}");
        }
    }

    #[test]
    fn the_body_is_the_contracts_event_with_data_as_stored() {
        let e = OutboxEvent {
            id: "evt_1".into(),
            out_trade_no: "W1".into(),
            seq: 1,
            kind: "order.paid".into(),
            created_at: 5,
            data: r#"{"out_trade_no":"W1","amount":1}"#.into(),
            delivered_at: None,
            failed_at: None,
            attempts: 1,
            next_attempt_at: 0,
            last_error: None,
        };
        let b = body(&e);
        assert_eq!(b, r#"{"id":"evt_1","type":"order.paid","created_at":5,"data":{"out_trade_no":"W1","amount":1}}"#);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["data"]["amount"], 1);
    }
}
