use std::sync::{Arc, Barrier};

use super::*;
use crate::secrets::Secret;
use crate::store::{Caller, NewLogin, NewOrder, Terms};

fn temp_store() -> (Sqlite, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("wxlogin-outbox-{}", crate::secrets::random_id(6)));
    (Sqlite::open(&dir.join("wxlogin.db")).unwrap(), dir)
}

/// An order of a fresh user, with events of `kinds` written at `created_at`, 1 s apart.
fn order_with_events(store: &Sqlite, no: &str, created_at: i64, kinds: &[&str]) -> Vec<String> {
    let n = no.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    let openid = format!("o-{no}");
    let uid = store
        .record_login(&NewLogin {
            app: "main",
            openid: &openid,
            unionid: None,
            session_key: &Secret::new("k"),
            code_hash: [n; 32],
            token_hash: [n; 32],
            terms: Terms { now: 1000, ttl: 100, max_lifetime: 1000, max_per_user: 50 },
            caller: Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) },
        })
        .unwrap()
        .user
        .id;
    store
        .create_order(&NewOrder {
            out_trade_no: no,
            app: "main",
            user_id: uid,
            openid: &openid,
            product: None,
            description: "d",
            amount: 1,
            attach: None,
            created_at,
            expires_at: created_at + 7200,
        })
        .unwrap();
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let id = format!("evt_{no}_{i}");
            let at = created_at + i as i64;
            store
                .write(|tx| {
                    tx.execute(
                        "INSERT INTO pay_events (id, out_trade_no, seq, type, created_at, data, next_attempt_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, '{}', ?5)",
                        params![id, no, i as i64 + 1, kind, at],
                    )?;
                    Ok(())
                })
                .unwrap();
            id
        })
        .collect()
}

const LEASE: i64 = 20;

fn claim(store: &Sqlite, now: i64) -> Option<String> {
    store.claim_event(now, LEASE).unwrap().map(|e| e.id)
}

#[test]
fn backoff_starts_at_10_s_doubles_and_stops_at_an_hour() {
    let waits: Vec<i64> = (1..=11).map(backoff).collect();
    assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]);
    assert_eq!(backoff(1000), 3600);
    assert_eq!(backoff(0), 10);
}

#[test]
fn events_go_oldest_first_and_in_order_within_an_order() {
    let (store, dir) = temp_store();
    let a = order_with_events(&store, "A", 100, &["order.paid", "refund.succeeded"]);
    let b = order_with_events(&store, "B", 50, &["order.paid"]);
    // B's is older; A's second waits for A's first.
    assert_eq!(claim(&store, 1000).as_deref(), Some(b[0].as_str()));
    assert_eq!(claim(&store, 1000).as_deref(), Some(a[0].as_str()));
    assert_eq!(claim(&store, 1000), None, "A's second must wait while A's first is out");
    assert!(store.mark_delivered(&a[0], 1001).unwrap());
    assert_eq!(claim(&store, 1001).as_deref(), Some(a[1].as_str()));
    assert!(!store.mark_delivered(&a[0], 1002).unwrap(), "delivered once");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn one_orders_failing_event_does_not_hold_back_another_order() {
    let (store, dir) = temp_store();
    let a = order_with_events(&store, "A", 100, &["order.paid", "refund.succeeded"]);
    let b = order_with_events(&store, "B", 200, &["order.paid"]);
    assert_eq!(claim(&store, 1000).as_deref(), Some(a[0].as_str()));
    assert_eq!(store.record_failed_attempt(&a[0], 1, 1000, "HTTP 500").unwrap(), Retry::At(1010));
    // A's first is waiting for its retry; A's second stays behind it; B goes.
    assert_eq!(claim(&store, 1005).as_deref(), Some(b[0].as_str()));
    assert_eq!(claim(&store, 1005), None);
    assert_eq!(claim(&store, 1010).as_deref(), Some(a[0].as_str()));
    let e = store.pay_event(&a[0]).unwrap().unwrap();
    assert_eq!((e.attempts, e.last_error.as_deref(), e.status()), (2, Some("HTTP 500"), EventStatus::Pending));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_claim_is_a_lease_and_an_attempt() {
    let (store, dir) = temp_store();
    let a = order_with_events(&store, "A", 100, &["order.paid"]);
    let first = store.claim_event(1000, LEASE).unwrap().unwrap();
    assert_eq!((first.attempts, first.next_attempt_at), (1, 1000 + LEASE));
    // A second thread, or the server restarted after a SIGKILL mid-delivery: nothing
    // until the lease is over, then the same event as the next attempt.
    assert_eq!(claim(&store, 1000 + LEASE - 1), None);
    let second = store.claim_event(1000 + LEASE, LEASE).unwrap().unwrap();
    assert_eq!((second.id.as_str(), second.attempts), (a[0].as_str(), 2));
    // The first attempt's late failure cannot push back the second's lease.
    assert_eq!(store.record_failed_attempt(&a[0], 1, 1000 + LEASE + 1, "timeout").unwrap(), Retry::Stale);
    assert_eq!(store.pay_event(&a[0]).unwrap().unwrap().next_attempt_at, 1000 + 2 * LEASE);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn concurrent_claims_hand_each_event_out_once() {
    let (store, dir) = temp_store();
    let store = Arc::new(store);
    let mut ids: Vec<String> =
        (0..20).flat_map(|i| order_with_events(&store, &format!("O{i}"), 100 + i, &["order.paid"])).collect();
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut got = Vec::new();
                while let Some(id) = claim(&store, 1000) {
                    got.push(id);
                }
                got
            })
        })
        .collect();
    let mut got: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "every event handed out exactly once");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_event_failing_for_3_days_is_given_up_and_no_longer_holds_back_its_order() {
    let (store, dir) = temp_store();
    let a = order_with_events(&store, "A", 100, &["order.paid", "refund.succeeded"]);
    let last = 100 + GIVE_UP_AFTER;
    assert_eq!(claim(&store, last - 1).as_deref(), Some(a[0].as_str()));
    assert!(matches!(store.record_failed_attempt(&a[0], 1, last - 1, "HTTP 503").unwrap(), Retry::At(_)));
    let e = store.claim_event(last + 100, LEASE).unwrap().unwrap();
    assert_eq!(store.record_failed_attempt(&e.id, e.attempts, last + 100, "timeout").unwrap(), Retry::GaveUp);
    let dead = store.pay_event(&a[0]).unwrap().unwrap();
    assert_eq!((dead.status(), dead.last_error.as_deref()), (EventStatus::Failed, Some("timeout")));
    assert_eq!(store.outbox_backlog().unwrap(), Backlog { pending: 1, oldest_created_at: Some(101), failed: 1 });
    assert_eq!(claim(&store, last + 100).as_deref(), Some(a[1].as_str()));
    // Still listed, and a retry makes it due now, with 3 more days.
    let pending: Vec<String> = store.list_pay_events(true, 10).unwrap().into_iter().map(|e| e.id).collect();
    assert!(pending.contains(&a[0]));
    assert_eq!(store.retry_event(&a[0], last + 200).unwrap().map(|e| e.status()), Some(EventStatus::Failed));
    store.mark_delivered(&a[1], last + 200).unwrap();
    let again = store.claim_event(last + 200, LEASE).unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (a[0].as_str(), 3));
    assert!(matches!(store.record_failed_attempt(&a[0], 3, last + 300, "HTTP 500").unwrap(), Retry::At(_)));
    assert_eq!(store.retry_event("evt_nope", 0).unwrap(), None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn lists_all_or_pending_newest_first() {
    let (store, dir) = temp_store();
    let a = order_with_events(&store, "A", 100, &["order.paid", "refund.succeeded"]);
    store.mark_delivered(&a[0], 200).unwrap();
    let all: Vec<String> = store.list_pay_events(false, 10).unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(all, [a[1].clone(), a[0].clone()]);
    let pending: Vec<String> = store.list_pay_events(true, 10).unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(pending, [a[1].clone()]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_bell_wakes_a_waiter_and_bounds_the_wait() {
    let bell = Arc::new(Bell::default());
    let t = std::time::Instant::now();
    bell.wait(Duration::from_millis(50));
    assert!(t.elapsed() >= Duration::from_millis(50));
    let b = bell.clone();
    let waiter = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        b.wait(Duration::from_secs(30));
        t.elapsed()
    });
    std::thread::sleep(Duration::from_millis(50));
    bell.ring();
    assert!(waiter.join().unwrap() < Duration::from_secs(20));
}
