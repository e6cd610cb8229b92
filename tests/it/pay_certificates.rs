//! Older merchants (issue 14): `pay.platform_certificates` against the fake WeChat Pay in
//! its `certificate` and `mixed` modes. Certificates fetched from `/v3/certificates`
//! (the first fetch verified with a certificate it carries), every answer and
//! notification verified with the key its `Wechatpay-Serial` names, refreshes that pick
//! up a new certificate or keep the old ones when WeChat Pay fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wxlogin::config::Config;
use wxlogin::fake_wechat as fake_pay;
use wxlogin::pay::{PayVerifier, PlatformCertificate};
use wxlogin::store::OrderState;

use crate::support::*;

fn now() -> i64 {
    wxlogin::store::now()
}

/// Switches the fake's signing keys (`public_key`, `certificate`, `mixed`) mid-run.
fn platform(s: &TestServer, mode: &str) {
    let body = json!({ "mode": mode }).to_string();
    let r = send(&format!("{}/__fake/pay/platform", s.fake.base_url()), "POST", None, Some(body), &[]);
    assert_eq!(r.status, 200, "fake platform: {}", r.text);
}

/// A merchant that never switched to the public key: certificates only.
fn certificates_only(c: &mut Config) {
    let pay = c.pay.as_mut().expect("[pay]");
    pay.platform_certificates = true;
    pay.verifier = Arc::new(PayVerifier::default());
}

/// A merchant in the middle of the migration: the public key and the certificates.
fn both(c: &mut Config) {
    c.pay.as_mut().expect("[pay]").platform_certificates = true;
}

fn verifier(s: &TestServer) -> &PayVerifier {
    &s.app().payments.as_ref().expect("payments").config.verifier
}

fn try_order(s: &TestServer, token: &str) -> Reply {
    s.post("/v1/pay/orders", Some(token), &json!({"product": "vip30"}))
}

fn paid_through_notification(s: &TestServer, token: &str) -> String {
    let r = try_order(s, token);
    assert_eq!(r.status, 201, "order: {}", r.text);
    let no = r.json()["order"]["out_trade_no"].as_str().expect("out_trade_no").to_string();
    assert_eq!(s.pay(&no, json!({})).status, 200);
    let d = s.deliveries(&no);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["status"], 204, "the notification was verified and applied: {d:?}");
    assert_eq!(s.app().store.order(&no).expect("read").expect("order").state, OrderState::Paid);
    no
}

fn metrics(s: &TestServer) -> String {
    send(&s.url("/metrics"), "GET", None, None, &[]).text
}

#[test]
fn certificates_only_pays_end_to_end_once_the_first_fetch_succeeds() {
    let s = TestServer::start_pay_with(certificates_only);
    platform(&s, "certificate");
    let (token, _) = s.login("alice");
    // No key to verify WeChat Pay with yet: refused without calling it.
    let r = try_order(&s, &token);
    assert_eq!((r.status, r.error_code().as_str()), (502, "pay_error"), "{}", r.text);
    assert_eq!(s.fake_pay_calls("jsapi"), 0);
    // The certificate thread fetches at once; pay calls work as soon as it has.
    s.app().spawn_pay_certificates().expect("thread");
    let deadline = Instant::now() + Duration::from_secs(20);
    while verifier(&s).certificates().is_empty() {
        assert!(Instant::now() < deadline, "the first fetch never happened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let serials: Vec<String> = verifier(&s).certificates().iter().map(|c| c.serial.clone()).collect();
    assert_eq!(serials.len(), 2, "{serials:?}");
    assert!(serials.contains(&fake_pay::PLATFORM_CERT_SERIAL.to_string()), "{serials:?}");
    // The answers and the notification are signed with the certificate, and verify.
    paid_through_notification(&s, &token);
    let m = metrics(&s);
    assert!(m.contains("wxlogin_pay_calls_total{api=\"certificates\",code=\"OK\"} 1"), "{m}");
    let unverified: Vec<&str> = m.lines().filter(|l| l.contains("UNVERIFIED")).collect();
    assert_eq!(unverified, ["wxlogin_pay_calls_total{api=\"jsapi\",code=\"UNVERIFIED\"} 1"], "only the first");
}

#[test]
fn mid_migration_every_answer_and_notification_verifies_while_the_keys_switch() {
    let s = TestServer::start_pay_with(both);
    assert!(s.app().pay_certificates_refresh(now()) > now());
    let (token, _) = s.login("alice");
    paid_through_notification(&s, &token);
    // WeChat Pay switches mid-run: alternately the public key and a certificate whose key
    // is another one. Orders, notifications and queries all keep verifying.
    platform(&s, "mixed");
    for _ in 0..3 {
        paid_through_notification(&s, &token);
    }
    let r = try_order(&s, &token);
    assert_eq!(r.status, 201, "{}", r.text);
    let no = r.json()["order"]["out_trade_no"].as_str().expect("no").to_string();
    assert_eq!(s.pay(&no, json!({"mode": "never"})).status, 200);
    let synced = s.get(&format!("/v1/pay/orders/{no}?sync=true"), Some(&token));
    assert_eq!(synced.json()["state"], "paid", "the query answer verified: {}", synced.text);
    platform(&s, "certificate");
    paid_through_notification(&s, &token);
    let m = metrics(&s);
    assert!(!m.contains("UNVERIFIED"), "{m}");
    assert!(m.contains("wxlogin_pay_notifications_total{result=\"applied\"} 5"), "{m}");
}

#[test]
fn a_refresh_picks_up_a_new_certificate_and_a_failed_one_keeps_the_old() {
    let s = TestServer::start_pay_with(both);
    // Trusted so far: the public key and the first certificate only.
    let first = PlatformCertificate::from_pem(fake_pay::PLATFORM_CERT_PEM).expect("certificate");
    verifier(&s).set_certificates(vec![first]);
    platform(&s, "mixed");
    let (token, _) = s.login("alice");
    // Mixed mode signs every other answer with the second certificate, not yet known.
    let statuses: Vec<u16> = (0..4).map(|_| try_order(&s, &token).status).collect();
    assert!(statuses.contains(&502) && statuses.contains(&201), "{statuses:?}");
    let t = now();
    assert!(s.app().pay_certificates_refresh(t) >= t + 600, "next refresh within the hour");
    assert!(verifier(&s).certificates().iter().any(|c| c.serial == fake_pay::PLATFORM2_CERT_SERIAL));
    for _ in 0..4 {
        paid_through_notification(&s, &token);
    }
    // WeChat Pay fails the next fetch: logged, retried soon, the certificates kept.
    s.fake_pay_behaviour(json!({"fail": {"api": "certificates", "error": "SYSTEM_ERROR", "times": 10}}));
    let t = now();
    let next = s.app().pay_certificates_refresh(t);
    assert!(next > t && next <= t + 60, "retried soon: {}", next - t);
    assert_eq!(verifier(&s).certificates().len(), 2);
    for _ in 0..2 {
        paid_through_notification(&s, &token);
    }
}

#[test]
fn an_answer_signed_with_an_unknown_certificate_is_not_believed() {
    // The fetch itself must verify: a certificates answer signed by the public key is fine
    // for a merchant holding it, but a certificates-only merchant cannot believe it.
    let s = TestServer::start_pay_with(certificates_only);
    let t = now();
    let next = s.app().pay_certificates_refresh(t);
    assert!(next <= t + 60, "the fetch failed and is retried soon");
    assert!(verifier(&s).certificates().is_empty());
    let m = metrics(&s);
    assert!(m.contains("wxlogin_pay_calls_total{api=\"certificates\",code=\"UNVERIFIED\"} 1"), "{m}");
}

#[test]
fn a_message_from_a_certificate_not_yet_held_makes_the_thread_fetch_early() {
    let s = TestServer::start_pay_with(both);
    s.app().spawn_pay_certificates().expect("thread");
    let deadline = Instant::now() + Duration::from_secs(20);
    while verifier(&s).certificates().len() < 2 {
        assert!(Instant::now() < deadline, "the first fetch never happened");
        std::thread::sleep(Duration::from_millis(50));
    }
    // As if the second certificate had been published after that fetch.
    let first = PlatformCertificate::from_pem(fake_pay::PLATFORM_CERT_PEM).expect("certificate");
    verifier(&s).set_certificates(vec![first]);
    platform(&s, "mixed");
    let (token, _) = s.login("alice");
    let r = try_order(&s, &token);
    assert_eq!(r.status, 502, "signed by the certificate not held: {}", r.text);
    // Not an hour later: within seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !verifier(&s).certificates().iter().any(|c| c.serial == fake_pay::PLATFORM2_CERT_SERIAL) {
        assert!(Instant::now() < deadline, "no early fetch");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..2 {
        paid_through_notification(&s, &token);
    }
}
