//! TRANSACTION.SUCCESS and REFUND.* notifications, POSTed to the order's (the refund's)
//! notify_url on threads of the fake (never inside the request that asked for them unless
//! it asked to wait).
//!
//! Shape, headers and encryption as research §6: the envelope `{id, create_time,
//! resource_type: "encrypt-resource", event_type, summary, resource}`, the Transaction
//! encrypted with the APIv3 key (AEAD_AES_256_GCM, AAD `transaction`), signed like an
//! answer (research §5) with `Wechatpay-Signature-Type`. Refund notifications are the same
//! envelope with `event_type` REFUND.SUCCESS | REFUND.ABNORMAL | REFUND.CLOSED and
//! `original_type` `refund` (research §7); their `associated_data` `refund` is the fake's
//! reading (research §6.2: a client must not depend on its value). An answer of 200 or 204 is
//! success, anything else or no answer a failure (research §6.3).
//!
//! Real WeChat Pay retries a failed notification 15 times over about 24 h
//! (15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h, research §6.3); the fake
//! retries only when asked, `retries` times `retry_interval_ms` apart.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::pay::sign::{new_nonce, SCHEME};
use crate::pay::verify::{response_message, PROBE_PREFIX};
use crate::pay::Resource;
use crate::secrets::random_id;

use super::wire::format_cst;
use super::PayFake;

/// research §6.1: the receiver has 5 s to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What one POST got back, for `GET /__fake/pay/deliveries`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Delivery {
    pub out_trade_no: String,
    /// Set for a refund's notification.
    pub out_refund_no: Option<String>,
    pub event_type: &'static str,
    /// The notification's `id`: retries and redeliveries of one notification share it.
    pub notification_id: String,
    pub probe: bool,
    /// The HTTP status, or null when there was no answer (see `error`).
    pub status: Option<u16>,
    pub error: Option<String>,
    pub ok: bool,
    pub at: i64,
}

/// How to deliver: how many times at once, after what delay, and the retry policy.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Plan {
    pub copies: u32,
    pub concurrent: bool,
    pub delay: Duration,
    pub probe: bool,
    pub retries: u32,
    pub retry_interval: Duration,
}

impl Plan {
    /// One delivery, at once, no retries.
    pub(crate) fn once() -> Plan {
        Plan { copies: 1, ..Plan::default() }
    }
}

/// What a notification is about.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    /// An order's payment, by out_trade_no.
    Payment(String),
    /// A refund, by out_refund_no.
    Refund(String),
}

/// Where a notification goes: `to` if the control request named a receiver, else the
/// fake's `notify_override`, else the order's notify_url (as WeChat Pay does).
fn destination(pay: &PayFake, own_url: Option<String>, to: Option<&str>) -> Option<String> {
    to.map(str::to_string).or_else(|| pay.opts.notify_override.clone()).or(own_url)
}

/// One notification of an order's payment, ready to send.
struct Notification {
    out_trade_no: String,
    out_refund_no: Option<String>,
    event_type: &'static str,
    url: String,
    id: String,
    body: String,
}

/// The plaintext, what goes where, and the envelope's event of a notification.
struct Content {
    plaintext: Value,
    original_type: &'static str,
    event_type: &'static str,
    summary: &'static str,
    url: String,
    at: i64,
    out_trade_no: String,
    out_refund_no: Option<String>,
}

fn content(pay: &PayFake, subject: &Subject, to: Option<&str>) -> Result<Content, String> {
    let inner = pay.lock();
    match subject {
        Subject::Payment(no) => {
            let order = inner.orders.get(no).ok_or("no such order")?;
            let at = order.success_time.ok_or("the order is not paid")?;
            Ok(Content {
                plaintext: order.transaction(),
                original_type: "transaction",
                event_type: "TRANSACTION.SUCCESS",
                summary: "支付成功",
                url: destination(pay, Some(order.request.notify_url.clone()), to).ok_or("no notify_url")?,
                at,
                out_trade_no: no.clone(),
                out_refund_no: None,
            })
        }
        Subject::Refund(no) => {
            let refund = inner.refunds.get(no).ok_or("no such refund")?;
            let (event_type, summary) = refund.status.event().ok_or("the refund is still PROCESSING")?;
            Ok(Content {
                plaintext: refund.notification(),
                original_type: "refund",
                event_type,
                summary,
                url: destination(pay, refund.request.notify_url.clone(), to)
                    .ok_or("the refund has no notify_url (give \"to\")")?,
                at: refund.settled_at.unwrap_or(refund.create_time),
                out_trade_no: refund.request.out_trade_no.clone(),
                out_refund_no: Some(no.clone()),
            })
        }
    }
}

/// The notification about `subject`: an error if there is nothing to notify (an unpaid
/// order, a refund still processing).
fn build(pay: &PayFake, subject: &Subject, to: Option<&str>) -> Result<Notification, String> {
    let c = content(pay, subject, to)?;
    let resource =
        Resource::encrypt(&pay.opts.apiv3_key, c.original_type, c.original_type, c.plaintext.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
    // research §6: id `EV-...`, create_time RFC 3339.
    let id = format!("EV-{}", random_id(10).to_uppercase());
    let body = json!({
        "id": id,
        "create_time": format_cst(c.at),
        "resource_type": "encrypt-resource",
        "event_type": c.event_type,
        "summary": c.summary,
        "resource": {
            "original_type": resource.original_type,
            "algorithm": resource.algorithm,
            "ciphertext": resource.ciphertext,
            "associated_data": resource.associated_data,
            "nonce": resource.nonce,
        },
    })
    .to_string();
    Ok(Notification {
        out_trade_no: c.out_trade_no,
        out_refund_no: c.out_refund_no,
        event_type: c.event_type,
        url: c.url,
        id,
        body,
    })
}

/// Delivers the notification about `subject` as `plan` says (to `to` if given). With
/// `wait`, returns once every delivery (and retry) is done; otherwise at once.
pub(crate) fn deliver(
    pay: &Arc<PayFake>,
    subject: &Subject,
    to: Option<&str>,
    plan: Plan,
    wait: bool,
) -> Result<(), String> {
    let notification = Arc::new(build(pay, subject, to)?);
    let pay = Arc::clone(pay);
    let run = move || {
        pause(&pay, plan.delay);
        if plan.concurrent {
            let threads: Vec<_> = (0..plan.copies)
                .map(|_| {
                    let (pay, n) = (Arc::clone(&pay), Arc::clone(&notification));
                    thread::spawn(move || send_with_retries(&pay, &n, plan))
                })
                .collect();
            for t in threads {
                let _ = t.join();
            }
        } else {
            for _ in 0..plan.copies {
                send_with_retries(&pay, &notification, plan);
            }
        }
    };
    let handle = thread::Builder::new().name("fake-wechatpay-notify".into()).spawn(run).map_err(|e| e.to_string())?;
    if wait {
        handle.join().map_err(|_| "the delivery thread panicked".to_string())?;
    }
    Ok(())
}

fn send_with_retries(pay: &PayFake, n: &Notification, plan: Plan) {
    for attempt in 0..=plan.retries {
        if attempt > 0 {
            pause(pay, plan.retry_interval);
        }
        if pay.is_stopping() || send(pay, n, plan.probe) {
            return;
        }
    }
}

/// Sleeps, cut short when the fake stops (whose deliveries are then dropped).
fn pause(pay: &PayFake, duration: Duration) {
    let until = std::time::Instant::now() + duration;
    while !pay.is_stopping() {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// One POST, recorded. Whether the receiver accepted it (200 or 204, research §6.3).
fn send(pay: &PayFake, n: &Notification, probe: bool) -> bool {
    let now = pay.clock.now();
    let timestamp = now.to_string();
    let nonce = new_nonce().to_uppercase();
    // In mixed mode each delivery may be signed by the other key (research §5 rule 3).
    let signer = pay.platform.signer();
    let signature = if probe {
        // research §5 rule 4: a deliberately wrong signature a receiver must refuse.
        format!("{PROBE_PREFIX}{}", random_id(32))
    } else {
        signer.key.sign_base64(&response_message(&timestamp, &nonce, n.body.as_bytes())).unwrap_or_default()
    };
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(TIMEOUT)).build().into();
    let result = agent
        .post(&n.url)
        .header("Content-Type", "application/json")
        .header("User-Agent", "Mozilla/4.0")
        .header("Wechatpay-Timestamp", &timestamp)
        .header("Wechatpay-Nonce", &nonce)
        .header("Wechatpay-Signature", &signature)
        .header("Wechatpay-Serial", signer.serial)
        .header("Wechatpay-Signature-Type", SCHEME)
        .send(n.body.as_str());
    let (status, error) = match result {
        Ok(resp) => (Some(resp.status().as_u16()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let ok = matches!(status, Some(200 | 204));
    pay.lock().deliveries.push(Delivery {
        out_trade_no: n.out_trade_no.clone(),
        out_refund_no: n.out_refund_no.clone(),
        event_type: n.event_type,
        notification_id: n.id.clone(),
        probe,
        status,
        error,
        ok,
        at: now,
    });
    ok
}
