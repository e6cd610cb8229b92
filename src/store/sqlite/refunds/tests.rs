use std::sync::{Arc, Barrier};

use super::*;
use crate::secrets::Secret;
use crate::store::{Caller, Created, NewLogin, NewOrder, Payment, Terms};

/// A store with one order `W0001abc` of 990 fen, paid unless `paid` is false.
fn store_with_order(paid: bool) -> (Sqlite, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("wxlogin-refunds-{}", crate::secrets::random_id(6)));
    let store = Sqlite::open(&dir.join("wxlogin.db")).unwrap();
    let uid = store
        .record_login(&NewLogin {
            app: "main",
            openid: "o1",
            unionid: None,
            session_key: &Secret::new("k"),
            code_hash: [1; 32],
            token_hash: [1; 32],
            terms: Terms { now: 1000, ttl: 100, max_lifetime: 1000, max_per_user: 50 },
            caller: Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) },
        })
        .unwrap()
        .user
        .id;
    let o = NewOrder {
        out_trade_no: "W0001abc",
        app: "main",
        user_id: uid,
        openid: "o1",
        product: None,
        description: "VIP",
        amount: 990,
        attach: None,
        created_at: 1000,
        expires_at: 8200,
    };
    assert!(matches!(store.create_order(&o).unwrap(), Created::New(_)));
    if paid {
        let p = Payment { out_trade_no: "W0001abc", transaction_id: "T1", amount_total: 990, paid_at: 1100 };
        store.apply_payment(&p, 1100).unwrap();
    }
    (store, dir)
}

fn new(no: &str, amount: i64) -> NewRefund<'_> {
    NewRefund { out_refund_no: no, out_trade_no: "W0001abc", amount, reason: Some("why"), created_at: 2000 }
}

fn result(no: &str, state: RefundState) -> RefundResult<'_> {
    RefundResult { out_refund_no: no, refund_id: "R1", state, succeeded_at: Some(2100) }
}

fn kinds(store: &Sqlite) -> Vec<String> {
    store.order_events("W0001abc").unwrap().into_iter().map(|e| e.kind).collect()
}

#[test]
fn creating_is_idempotent_and_bounded_by_what_is_left() {
    let (store, dir) = store_with_order(true);
    let RefundCreated::New(r) = store.create_refund(&new("R-1", 600)).unwrap() else { panic!("new") };
    assert_eq!((r.state, r.refund_id.as_deref(), r.amount), (RefundState::Processing, None, 600));
    assert_eq!(store.create_refund(&new("R-1", 600)).unwrap(), RefundCreated::Same(r.clone()));
    assert_eq!(store.create_refund(&new("R-1", 500)).unwrap(), RefundCreated::Conflict(r));
    assert_eq!(store.create_refund(&new("R-2", 391)).unwrap(), RefundCreated::TooMuch { left: 390 });
    assert!(matches!(store.create_refund(&new("R-2", 390)).unwrap(), RefundCreated::New(_)));
    assert_eq!(store.create_refund(&new("R-3", 1)).unwrap(), RefundCreated::TooMuch { left: 0 });
    // A closed refund frees its money; a refund WeChat Pay refused outright is forgotten.
    store.apply_refund(&result("R-2", RefundState::Closed), 2200).unwrap();
    assert!(store.forget_refund("R-3").is_ok_and(|f| !f));
    assert!(matches!(store.create_refund(&new("R-3", 390)).unwrap(), RefundCreated::New(_)));
    assert!(store.forget_refund("R-3").unwrap());
    assert_eq!(store.refund("R-3").unwrap(), None);
    let mut other = new("R-4", 1);
    other.out_trade_no = "NOPE0001";
    assert_eq!(store.create_refund(&other).unwrap(), RefundCreated::NoOrder);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_unpaid_order_is_not_refunded() {
    let (store, dir) = store_with_order(false);
    assert!(matches!(store.create_refund(&new("R-1", 1)).unwrap(), RefundCreated::NotPaid(_)));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn results_apply_once_with_their_event_and_a_full_refund_refunds_the_order() {
    let (store, dir) = store_with_order(true);
    store.create_refund(&new("R-1", 490)).unwrap();
    store.create_refund(&new("R-2", 500)).unwrap();
    // A PROCESSING answer only records the refund_id.
    let RefundApplied::Unchanged(r) = store.apply_refund(&result("R-1", RefundState::Processing), 2050).unwrap() else {
        panic!("unchanged")
    };
    assert_eq!(r.refund_id.as_deref(), Some("R1"));
    assert!(matches!(
        store.apply_refund(&result("R-1", RefundState::Succeeded), 2100).unwrap(),
        RefundApplied::Changed(_)
    ));
    assert!(matches!(
        store.apply_refund(&result("R-1", RefundState::Succeeded), 2100).unwrap(),
        RefundApplied::Unchanged(_)
    ));
    assert!(matches!(
        store.apply_refund(&result("R-1", RefundState::Closed), 2100).unwrap(),
        RefundApplied::Unchanged(_)
    ));
    let o = store.order("W0001abc").unwrap().unwrap();
    assert_eq!((o.state, o.refunded_amount), (OrderState::Paid, 490));
    // Abnormal is not final: it may still succeed.
    store.apply_refund(&result("R-2", RefundState::Abnormal), 2200).unwrap();
    store.apply_refund(&result("R-2", RefundState::Succeeded), 2300).unwrap();
    let o = store.order("W0001abc").unwrap().unwrap();
    assert_eq!((o.state, o.refunded_amount), (OrderState::Refunded, 990));
    assert_eq!(kinds(&store), ["order.paid", "refund.succeeded", "refund.failed", "refund.succeeded"]);
    assert_eq!(store.apply_refund(&result("R-9", RefundState::Succeeded), 2300).unwrap(), RefundApplied::Unknown);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_result_applied_from_two_threads_at_once_counts_once() {
    let (store, dir) = store_with_order(true);
    store.create_refund(&new("R-1", 990)).unwrap();
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                matches!(
                    store.apply_refund(&result("R-1", RefundState::Succeeded), 2100).unwrap(),
                    RefundApplied::Changed(_)
                )
            })
        })
        .collect();
    let changed = threads.into_iter().map(|t| t.join().unwrap()).filter(|c| *c).count();
    assert_eq!(changed, 1);
    assert_eq!(store.order("W0001abc").unwrap().unwrap().refunded_amount, 990);
    assert_eq!(kinds(&store), ["order.paid", "refund.succeeded"]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn refunds_not_final_are_due_for_a_query_with_backoff() {
    let (store, dir) = store_with_order(true);
    store.create_refund(&new("R-1", 100)).unwrap();
    store.create_refund(&new("R-2", 100)).unwrap();
    assert!(store.refunds_due_for_query(2059, 10).unwrap().is_empty());
    assert_eq!(store.refunds_due_for_query(2060, 10).unwrap().len(), 2);
    store.note_refund_queried("R-1", 2060).unwrap();
    store.apply_refund(&result("R-2", RefundState::Succeeded), 2060).unwrap();
    assert!(store.refunds_due_for_query(2179, 10).unwrap().is_empty());
    let due = store.refunds_due_for_query(2180, 10).unwrap();
    assert_eq!(due.iter().map(|r| r.out_refund_no.as_str()).collect::<Vec<_>>(), ["R-1"]);
    assert_eq!(store.refunds_of_order("W0001abc").unwrap().len(), 2);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn concurrent_refunds_never_exceed_the_amount() {
    let (store, dir) = store_with_order(true);
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let no = format!("R-{i}");
                matches!(store.create_refund(&new(&no, 600)).unwrap(), RefundCreated::New(_))
            })
        })
        .collect();
    let created = threads.into_iter().map(|t| t.join().unwrap()).filter(|c| *c).count();
    assert_eq!(created, 1);
    assert_eq!(store.refunds_of_order("W0001abc").unwrap().len(), 1);
    std::fs::remove_dir_all(dir).ok();
}
