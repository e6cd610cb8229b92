//! Orders, refunds and the webhook outbox on PostgreSQL, through the store's facade, as
//! the SQLite store tests check them; and what only several instances can break: two
//! `Store`s on one database (two instances) applying the same payment, refunding the
//! same order and draining the same outbox at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Barrier};

use wxlogin::config::DatabaseConfig;
use wxlogin::secrets::Secret;
use wxlogin::store::{
    Applied, Backlog, Created, EventStatus, NewOrder, NewRefund, Order, OrderState, OutboxEvent, Payment,
    RefundApplied, RefundCreated, RefundResult, RefundState, Retry, Store, StoreError, GIVE_UP_AFTER,
};

use crate::pg_cluster::{fresh_database, psql};

fn connect(url: &str) -> Store {
    let db = DatabaseConfig { url: Some(Secret::new(url)), ..Default::default() };
    Store::connect(&db).unwrap_or_else(|e| panic!("connect: {e}"))
}

/// A fresh database and two instances on it.
fn two_instances() -> (String, Arc<Store>, Arc<Store>) {
    let url = fresh_database();
    let (a, b) = (Arc::new(connect(&url)), Arc::new(connect(&url)));
    warm(&a, &b);
    (url, a, b)
}

/// Opens 4 connections in each store's pool, so that threads released at once race in
/// the database rather than in connecting: each of 8 threads holds a lock (and with it a
/// connection) until all hold one.
fn warm(a: &Arc<Store>, b: &Arc<Store>) {
    at_once(a, b, 8, |store, i| {
        let _held = store.token_refresh_lock(&format!("warm{i}")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
    });
}

/// A user of app "main" with `openid` (written with psql: the store's login is another
/// part of the engine); returns its id.
fn user(url: &str, openid: &str) -> i64 {
    let out = psql(
        url,
        &format!(
            "INSERT INTO users (app, openid, created_at, last_login_at) VALUES ('main', '{openid}', 1000, 1000) \
             RETURNING id"
        ),
    );
    out.trim().parse().unwrap_or_else(|e| panic!("user id {out:?}: {e}"))
}

fn new_order<'a>(no: &'a str, user_id: i64, openid: &'a str, created_at: i64) -> NewOrder<'a> {
    NewOrder {
        out_trade_no: no,
        app: "main",
        user_id,
        openid,
        product: Some("vip30"),
        description: "VIP, 30 days",
        amount: 990,
        attach: None,
        created_at,
        expires_at: created_at + 7200,
    }
}

fn created(store: &Store, o: &NewOrder) -> Order {
    match store.create_order(o).unwrap() {
        Created::New(order) => order,
        other => panic!("expected a new order, got {other:?}"),
    }
}

fn payment(no: &str, amount: i64) -> Payment<'_> {
    Payment { out_trade_no: no, transaction_id: no, amount_total: amount, paid_at: 1500 }
}

fn kinds(store: &Store, no: &str) -> Vec<String> {
    store.order_events(no).unwrap().into_iter().map(|e| e.kind).collect()
}

fn nos(orders: Vec<Order>) -> Vec<String> {
    orders.into_iter().map(|o| o.out_trade_no).collect()
}

#[test]
fn orders_are_created_paid_closed_and_listed_as_on_sqlite() {
    let (url, store, _) = two_instances();
    let uid = user(&url, "o1");
    let uid2 = user(&url, "o2");

    let first = created(&store, &new_order("W0001abc", uid, "o1", 1000));
    assert_eq!((first.state, first.amount, first.currency.as_str()), (OrderState::Created, 990, "CNY"));
    assert_eq!((first.product.as_deref(), first.expires_at, first.refunded_amount), (Some("vip30"), 8200, 0));
    assert_eq!(store.order("W0001abc").unwrap(), Some(first.clone()));
    assert_eq!(store.order("nope").unwrap(), None);
    assert!(store.order_events("W0001abc").unwrap().is_empty(), "creating is no event");
    // Idempotent on out_trade_no.
    assert_eq!(store.create_order(&new_order("W0001abc", uid, "o1", 1030)).unwrap(), Created::Same(first.clone()));
    let mut other = new_order("W0001abc", uid, "o1", 1000);
    other.amount = 1;
    assert_eq!(store.create_order(&other).unwrap(), Created::Conflict(first.clone()));
    assert_eq!(store.create_order(&new_order("W0001abc", uid2, "o2", 1000)).unwrap(), Created::Conflict(first));
    // Only an existing user, and only its own payer.
    let e = store.create_order(&new_order("W0002abc", uid2 + 100, "o1", 1000)).unwrap_err();
    assert!(matches!(e, StoreError::Refused(_)), "{e}");
    let e = store.create_order(&new_order("W0002abc", uid, "o2", 1000)).unwrap_err();
    assert!(matches!(e, StoreError::Refused(_)), "{e}");
    assert_eq!(store.order("W0002abc").unwrap(), None);

    // Prepay.
    store.set_prepay("W0001abc", "wx1", 1001).unwrap();
    store.set_prepay("W0001abc", "wx2", 9000).unwrap();
    let o = store.order("W0001abc").unwrap().unwrap();
    assert_eq!((o.prepay_id.as_deref(), o.prepay_at), (Some("wx2"), Some(9000)));
    assert!(matches!(store.set_prepay("nope", "wx3", 1), Err(StoreError::Refused(_))));

    // Payments that do not fit record nothing.
    assert_eq!(store.apply_payment(&payment("nope", 990), 1501).unwrap(), Applied::Unknown);
    assert_eq!(store.apply_payment(&payment("W0001abc", 1), 1501).unwrap(), Applied::AmountMismatch(o.clone()));
    // Paid once, with one event.
    let Applied::Paid(paid) = store.apply_payment(&payment("W0001abc", 990), 1501).unwrap() else { panic!("paid") };
    assert_eq!(
        (paid.state, paid.transaction_id.as_deref(), paid.paid_at),
        (OrderState::Paid, Some("W0001abc"), Some(1500))
    );
    assert_eq!(store.order("W0001abc").unwrap().as_ref(), Some(&paid));
    assert_eq!(store.apply_payment(&payment("W0001abc", 990), 1600).unwrap(), Applied::AlreadyPaid(paid.clone()));
    let events = store.order_events("W0001abc").unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!((e.kind.as_str(), e.seq, e.created_at), ("order.paid", 1, 1501));
    assert_eq!((e.delivered_at, e.attempts, e.next_attempt_at), (None, 0, 1501));
    assert!(e.id.starts_with("evt_") && e.id.len() > 20, "{}", e.id);
    let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(
        (data["state"].as_str(), data["amount"].as_i64(), data["user_id"].as_i64()),
        (Some("paid"), Some(990), Some(uid))
    );
    assert!(data.get("openid").is_none());
    assert_eq!(store.close_order("W0001abc", 2000).unwrap(), Some(paid), "paid: returned as is");

    // Closing: idempotent, one event; a closed order takes no payment.
    assert_eq!(store.close_order("nope", 2000).unwrap(), None);
    created(&store, &new_order("W0003abc", uid, "o1", 1100));
    let closed = store.close_order("W0003abc", 2000).unwrap().unwrap();
    assert_eq!(closed.state, OrderState::Closed);
    assert_eq!(store.close_order("W0003abc", 3000).unwrap(), Some(closed.clone()));
    assert_eq!(store.apply_payment(&payment("W0003abc", 990), 2001).unwrap(), Applied::NotPayable(closed));
    assert_eq!(kinds(&store, "W0003abc"), ["order.closed"]);
    assert_eq!(kinds(&store, "W0001abc"), ["order.paid"]);

    // A user's orders, newest first, in pages; the operator's list; the counts.
    created(&store, &new_order("W0004abc", uid, "o1", 1200));
    created(&store, &new_order("B0000001", uid2, "o2", 1200));
    assert_eq!(nos(store.orders_of_user(uid, None, 2).unwrap()), ["W0004abc", "W0003abc"]);
    assert_eq!(nos(store.orders_of_user(uid, Some("W0003abc"), 5).unwrap()), ["W0001abc"]);
    assert!(store.orders_of_user(uid, Some("B0000001"), 5).unwrap().is_empty(), "another user's order is no cursor");
    assert!(store.orders_of_user(uid, Some("nope"), 5).unwrap().is_empty());
    assert_eq!(nos(store.list_orders(None, None, 10).unwrap()), ["B0000001", "W0004abc", "W0003abc", "W0001abc"]);
    assert_eq!(nos(store.list_orders(None, None, 1).unwrap()), ["B0000001"]);
    assert_eq!(nos(store.list_orders(Some(OrderState::Created), Some(uid), 10).unwrap()), ["W0004abc"]);
    assert_eq!(nos(store.list_orders(Some(OrderState::Paid), None, 10).unwrap()), ["W0001abc"]);
    assert_eq!(nos(store.list_orders(None, Some(uid2), 10).unwrap()), ["B0000001"]);
    let counts: Vec<(String, i64)> = [("created", 2), ("paid", 1), ("closed", 1), ("refunded", 0)]
        .iter()
        .map(|(s, n)| (s.to_string(), *n))
        .collect();
    assert_eq!(store.order_counts().unwrap(), counts);
}

#[test]
fn unpaid_orders_are_queried_with_backoff_until_they_expire() {
    let (url, store, _) = two_instances();
    let uid = user(&url, "o1");
    let mut o = new_order("W0001abc", uid, "o1", 1000);
    o.expires_at = 1000 + 86_400;
    let o = created(&store, &o);
    let due = |now| store.orders_due_for_query(now, 10).unwrap().len();
    let next_query = || psql(&url, "SELECT queries, next_query_at FROM orders WHERE out_trade_no = 'W0001abc'");
    assert_eq!((due(1059), due(1060)), (0, 1), "first query 60 s after creation");
    let mut now = 1060;
    let mut intervals = Vec::new();
    for _ in 0..7 {
        store.note_queried("W0001abc", now).unwrap();
        assert_eq!(due(now), 0, "just asked");
        let next: i64 = next_query().trim().split('|').nth(1).unwrap().parse().unwrap();
        assert_eq!((due(next - 1), due(next)), (0, 1));
        intervals.push(next - now);
        now = next;
    }
    assert_eq!(intervals, [120, 240, 480, 960, 1800, 1800, 1800]);
    // Past its expiry an order is no longer queried: it is closed (expired_orders).
    assert_eq!(due(o.expires_at - 1), 1);
    assert_eq!(due(o.expires_at), 0);
    assert!(store.expired_orders(o.expires_at - 1, 10).unwrap().is_empty());
    assert_eq!(nos(store.expired_orders(o.expires_at, 10).unwrap()), ["W0001abc"]);
    created(&store, &new_order("W0002abc", uid, "o1", 900));
    assert_eq!(nos(store.expired_orders(100_000, 10).unwrap()), ["W0002abc", "W0001abc"], "oldest expiry first");
    assert_eq!(nos(store.expired_orders(100_000, 1).unwrap()), ["W0002abc"]);
    // Queries of an order that left `created` change nothing.
    store.close_order("W0001abc", now).unwrap();
    store.note_queried("W0001abc", now).unwrap();
    assert_eq!(next_query().trim(), "7|");
    assert_eq!(nos(store.expired_orders(100_000, 10).unwrap()), ["W0002abc"]);
}

/// Runs `f(store, i)` on `threads` threads released at once, alternating the two stores.
fn at_once<T: Send + 'static>(
    a: &Arc<Store>,
    b: &Arc<Store>,
    threads: usize,
    f: impl Fn(&Store, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (barrier, f) = (barrier.clone(), f.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f(&store, i)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn one_payment_sent_to_two_instances_at_once_applies_once() {
    let (url, a, b) = two_instances();
    let uid = user(&url, "o1");
    for round in 0..5 {
        let no = format!("W{round:07}");
        created(&a, &new_order(&no, uid, "o1", 1000));
        let results = {
            let no = no.clone();
            at_once(&a, &b, 8, move |store, _| store.apply_payment(&payment(&no, 990), 1500).unwrap())
        };
        let paid = results.iter().filter(|r| matches!(r, Applied::Paid(_))).count();
        let already = results.iter().filter(|r| matches!(r, Applied::AlreadyPaid(_))).count();
        assert_eq!((paid, already), (1, 7), "{results:?}");
        let events = b.order_events(&no).unwrap();
        assert_eq!(events.iter().map(|e| (e.kind.as_str(), e.seq)).collect::<Vec<_>>(), [("order.paid", 1)]);
    }
    // A payment on one instance racing a close on the other: one wins, with one event.
    for round in 0..5 {
        let no = format!("R{round:07}");
        created(&a, &new_order(&no, uid, "o1", 1000));
        let results = {
            let no = no.clone();
            at_once(&a, &b, 2, move |store, i| {
                if i == 0 {
                    matches!(store.apply_payment(&payment(&no, 990), 1500).unwrap(), Applied::Paid(_))
                } else {
                    store.close_order(&no, 1500).unwrap().unwrap().state == OrderState::Closed
                }
            })
        };
        let (paid, closed) = (results[0], results[1]);
        assert!(paid != closed, "exactly one of pay and close wins: {results:?}");
        assert_eq!(kinds(&a, &no), [if paid { "order.paid" } else { "order.closed" }]);
    }
}

/// A paid order `W0001abc` of 990 fen.
fn paid_order(url: &str, store: &Store) {
    let uid = user(url, "o1");
    created(store, &new_order("W0001abc", uid, "o1", 1000));
    assert!(matches!(store.apply_payment(&payment("W0001abc", 990), 1100).unwrap(), Applied::Paid(_)));
}

fn new_refund(no: &str, amount: i64) -> NewRefund<'_> {
    NewRefund { out_refund_no: no, out_trade_no: "W0001abc", amount, reason: Some("why"), created_at: 2000 }
}

fn result(no: &str, state: RefundState) -> RefundResult<'_> {
    RefundResult { out_refund_no: no, refund_id: "R1", state, succeeded_at: Some(2100) }
}

#[test]
fn refunds_are_idempotent_bounded_and_applied_once() {
    let (url, store, _) = two_instances();
    let uid = user(&url, "o9");
    created(&store, &new_order("U0001abc", uid, "o9", 1000));
    let unpaid = NewRefund { out_trade_no: "U0001abc", ..new_refund("R-0", 1) };
    assert!(matches!(store.create_refund(&unpaid).unwrap(), RefundCreated::NotPaid(_)));
    paid_order(&url, &store);

    let RefundCreated::New(r) = store.create_refund(&new_refund("R-1", 600)).unwrap() else { panic!("new") };
    assert_eq!(
        (r.state, r.refund_id.as_deref(), r.amount, r.reason.as_deref()),
        (RefundState::Processing, None, 600, Some("why"))
    );
    assert_eq!(store.create_refund(&new_refund("R-1", 600)).unwrap(), RefundCreated::Same(r.clone()));
    assert_eq!(store.create_refund(&new_refund("R-1", 500)).unwrap(), RefundCreated::Conflict(r.clone()));
    assert_eq!(store.create_refund(&new_refund("R-2", 391)).unwrap(), RefundCreated::TooMuch { left: 390 });
    assert!(matches!(store.create_refund(&new_refund("R-2", 390)).unwrap(), RefundCreated::New(_)));
    assert_eq!(store.create_refund(&new_refund("R-3", 1)).unwrap(), RefundCreated::TooMuch { left: 0 });
    let other = NewRefund { out_trade_no: "nope", ..new_refund("R-4", 1) };
    assert_eq!(store.create_refund(&other).unwrap(), RefundCreated::NoOrder);
    assert_eq!(store.refund("R-1").unwrap(), Some(r));
    assert_eq!(store.refund("R-9").unwrap(), None);

    // Due for a query a minute after creation, then backing off; final ones no longer.
    assert!(store.refunds_due_for_query(2059, 10).unwrap().is_empty());
    assert_eq!(store.refunds_due_for_query(2060, 10).unwrap().len(), 2);
    store.note_refund_queried("R-1", 2060).unwrap();

    // A closed refund frees its money; an accepted one is not forgotten.
    let closed = store.apply_refund(&result("R-2", RefundState::Closed), 2060).unwrap();
    assert!(
        matches!(closed, RefundApplied::Changed(ref r) if r.state == RefundState::Closed && r.refund_id.as_deref() == Some("R1"))
    );
    assert!(!store.forget_refund("R-2").unwrap());
    assert!(matches!(store.create_refund(&new_refund("R-3", 390)).unwrap(), RefundCreated::New(_)));
    assert!(store.forget_refund("R-3").unwrap());
    assert_eq!(store.refund("R-3").unwrap(), None);
    let due: Vec<String> =
        store.refunds_due_for_query(2180, 10).unwrap().into_iter().map(|r| r.out_refund_no).collect();
    assert_eq!(due, ["R-1"], "R-1 next at 2060 + 120; R-2 final");
    assert!(store.refunds_due_for_query(2179, 10).unwrap().is_empty());

    // Results: abnormal, then succeeded; a duplicate changes nothing.
    assert!(matches!(
        store.apply_refund(&result("R-1", RefundState::Abnormal), 2100).unwrap(),
        RefundApplied::Changed(_)
    ));
    let RefundApplied::Changed(done) = store.apply_refund(&result("R-1", RefundState::Succeeded), 2200).unwrap() else {
        panic!("changed")
    };
    assert_eq!((done.state, done.succeeded_at), (RefundState::Succeeded, Some(2100)));
    assert!(matches!(
        store.apply_refund(&result("R-1", RefundState::Succeeded), 2300).unwrap(),
        RefundApplied::Unchanged(_)
    ));
    assert!(matches!(
        store.apply_refund(&result("R-1", RefundState::Closed), 2300).unwrap(),
        RefundApplied::Unchanged(_)
    ));
    assert_eq!(store.apply_refund(&result("R-9", RefundState::Succeeded), 2300).unwrap(), RefundApplied::Unknown);
    let o = store.order("W0001abc").unwrap().unwrap();
    assert_eq!((o.state, o.refunded_amount), (OrderState::Paid, 600));
    let RefundCreated::New(_) = store.create_refund(&new_refund("R-5", 390)).unwrap() else { panic!("new") };
    store.apply_refund(&result("R-5", RefundState::Succeeded), 2400).unwrap();
    let o = store.order("W0001abc").unwrap().unwrap();
    assert_eq!((o.state, o.refunded_amount), (OrderState::Refunded, 990));
    assert!(matches!(store.apply_payment(&payment("W0001abc", 990), 2500).unwrap(), Applied::AlreadyPaid(_)));
    let events = store.order_events("W0001abc").unwrap();
    let got: Vec<(i64, &str)> = events.iter().map(|e| (e.seq, e.kind.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "order.paid"),
            (2, "refund.failed"),
            (3, "refund.failed"),
            (4, "refund.succeeded"),
            (5, "refund.succeeded")
        ]
    );
    let refunds: Vec<String> =
        store.refunds_of_order("W0001abc").unwrap().into_iter().map(|r| r.out_refund_no).collect();
    assert_eq!(refunds, ["R-1", "R-2", "R-5"]);
}

#[test]
fn refunds_from_two_instances_at_once_never_exceed_the_order_and_apply_once() {
    let (url, a, b) = two_instances();
    // Eight different refunds of 600 of a 990 order: one fits.
    let uid = user(&url, "o2");
    for round in 0..5 {
        let no = format!("V{round:07}");
        created(&a, &new_order(&no, uid, "o2", 1000));
        assert!(matches!(a.apply_payment(&payment(&no, 990), 1100).unwrap(), Applied::Paid(_)));
        let made = at_once(&a, &b, 8, move |store, i| {
            let refund_no = format!("R-{no}-{i}");
            let refund = NewRefund { out_trade_no: &no, ..new_refund(&refund_no, 600) };
            store.create_refund(&refund).unwrap()
        });
        assert_eq!(made.iter().filter(|r| matches!(r, RefundCreated::New(_))).count(), 1, "{made:?}");
        assert!(
            made.iter().all(|r| matches!(r, RefundCreated::New(_) | RefundCreated::TooMuch { left: 390 })),
            "{made:?}"
        );
    }
    paid_order(&url, &a);
    a.create_refund(&new_refund("R-first", 600)).unwrap();
    // The same refund sent to both instances eight times at once: made once.
    let made = at_once(&a, &b, 8, |store, _| store.create_refund(&new_refund("R-same", 390)).unwrap());
    assert_eq!(made.iter().filter(|r| matches!(r, RefundCreated::New(_))).count(), 1, "{made:?}");
    assert_eq!(made.iter().filter(|r| matches!(r, RefundCreated::Same(_))).count(), 7, "{made:?}");
    assert_eq!(a.refunds_of_order("W0001abc").unwrap().len(), 2);
    // Its success reported to both at once: counted once, one event.
    let applied =
        at_once(&a, &b, 8, |store, _| store.apply_refund(&result("R-same", RefundState::Succeeded), 2100).unwrap());
    assert_eq!(applied.iter().filter(|r| matches!(r, RefundApplied::Changed(_))).count(), 1, "{applied:?}");
    assert_eq!(b.order("W0001abc").unwrap().unwrap().refunded_amount, 390);
    let events = a.order_events("W0001abc").unwrap();
    let got: Vec<(i64, &str)> = events.iter().map(|e| (e.seq, e.kind.as_str())).collect();
    assert_eq!(got, [(1, "order.paid"), (2, "refund.succeeded")]);
}

/// An order `no` of a fresh user, with events of `kinds` written at `created_at`, 1 s
/// apart, due then; returns their ids in `seq` order.
fn order_with_events(url: &str, store: &Store, no: &str, created_at: i64, kinds: &[&str]) -> Vec<String> {
    let openid = format!("o-{no}");
    let uid = user(url, &openid);
    let mut o = new_order(no, uid, &openid, created_at);
    o.amount = 1;
    created(store, &o);
    let ids: Vec<String> = (0..kinds.len()).map(|i| format!("evt_{no}_{i}")).collect();
    let values: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let at = created_at + i as i64;
            format!("('{}', '{no}', {}, '{kind}', {at}, '{{}}', {at})", ids[i], i + 1)
        })
        .collect();
    psql(
        url,
        &format!(
            "INSERT INTO pay_events (id, out_trade_no, seq, type, created_at, data, next_attempt_at) VALUES {}",
            values.join(", ")
        ),
    );
    ids
}

const LEASE: i64 = 20;

fn claim(store: &Store, now: i64) -> Option<String> {
    store.claim_event(now, LEASE).unwrap().map(|e| e.id)
}

#[test]
fn events_go_oldest_first_in_order_within_an_order_across_instances() {
    let (url, a, b) = two_instances();
    let x = order_with_events(&url, &a, "X", 101, &["order.paid", "refund.succeeded"]);
    let y = order_with_events(&url, &a, "Y", 100, &["order.paid"]);
    assert_eq!(claim(&a, 1000).as_deref(), Some(y[0].as_str()));
    assert!(a.mark_delivered(&y[0], 1000).unwrap());
    let first = a.claim_event(1000, LEASE).unwrap().unwrap();
    assert_eq!((first.id.as_str(), first.attempts, first.next_attempt_at), (x[0].as_str(), 1, 1000 + LEASE));
    // A holds X's first event: B gets nothing, not X's second, while the lease runs.
    assert_eq!(claim(&b, 1000), None, "X's second must wait while X's first is out");
    assert_eq!(claim(&b, 1000 + LEASE - 1), None);
    // The lease ran out: B takes it over as the next attempt; A's attempt is stale.
    let again = b.claim_event(1000 + LEASE, LEASE).unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (x[0].as_str(), 2));
    assert_eq!(a.record_failed_attempt(&x[0], 1, 1000 + LEASE + 1, "timeout").unwrap(), Retry::Stale);
    assert_eq!(a.pay_event(&x[0]).unwrap().unwrap().next_attempt_at, 1000 + 2 * LEASE);
    assert!(b.mark_delivered(&x[0], 1041).unwrap());
    assert!(!a.mark_delivered(&x[0], 1042).unwrap(), "delivered once");
    assert_eq!(claim(&a, 1041).as_deref(), Some(x[1].as_str()));
    assert_eq!(a.pay_event(&x[0]).unwrap().unwrap().status(), EventStatus::Delivered);
    assert_eq!(a.pay_event("evt_nope").unwrap(), None);
}

#[test]
fn two_instances_draining_the_outbox_hand_each_event_out_once_per_attempt_in_order() {
    let (url, a, b) = two_instances();
    let mut all = Vec::new();
    for i in 0..15 {
        all.extend(order_with_events(
            &url,
            &a,
            &format!("O{i:02}"),
            100 + i,
            &["order.paid", "refund.succeeded", "refund.failed"],
        ));
    }
    let got = at_once(&a, &b, 8, |store, _| {
        let mut got: Vec<OutboxEvent> = Vec::new();
        while let Some(e) = store.claim_event(1000, 3600).unwrap() {
            // Every earlier event of its order is delivered by now: none is handed out early.
            let earlier = store.order_events(&e.out_trade_no).unwrap();
            let early: Vec<&OutboxEvent> =
                earlier.iter().filter(|p| p.seq < e.seq && p.status() != EventStatus::Delivered).collect();
            assert!(early.is_empty(), "{} handed out before {early:?}", e.id);
            assert!(store.mark_delivered(&e.id, 1000).unwrap(), "{} delivered twice", e.id);
            got.push(e);
        }
        got
    });
    let got: Vec<OutboxEvent> = got.into_iter().flatten().collect();
    assert!(got.iter().all(|e| e.attempts == 1), "one attempt each");
    let mut ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    ids.sort();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event was handed out twice");
    let mut expected: Vec<&str> = all.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(ids, expected, "every event handed out exactly once");
    assert_eq!(a.outbox_backlog().unwrap(), Backlog { pending: 0, oldest_created_at: None, failed: 0 });

    // Leased, not delivered: after the lease, each is handed out once more (attempt 2).
    let more: Vec<String> =
        (0..6).flat_map(|i| order_with_events(&url, &a, &format!("P{i}"), 200, &["order.paid"])).collect();
    let first = at_once(&a, &b, 8, |store, _| {
        let mut got = Vec::new();
        while let Some(e) = store.claim_event(2000, 100).unwrap() {
            got.push((e.id, e.attempts));
        }
        got
    });
    let second = at_once(&a, &b, 8, |store, _| {
        let mut got = Vec::new();
        while let Some(e) = store.claim_event(2100, 100).unwrap() {
            got.push((e.id, e.attempts));
        }
        got
    });
    for (attempt, got) in [(1, first), (2, second)] {
        let mut counted: BTreeMap<String, i64> = BTreeMap::new();
        for (id, attempts) in got.into_iter().flatten() {
            assert_eq!(attempts, attempt, "{id}");
            *counted.entry(id).or_default() += 1;
        }
        assert!(counted.values().all(|n| *n == 1), "attempt {attempt}: {counted:?}");
        assert_eq!(counted.keys().cloned().collect::<Vec<_>>(), more, "attempt {attempt}");
    }
}

#[test]
fn failed_attempts_back_off_are_given_up_and_retried() {
    let (url, store, other) = two_instances();
    let a = order_with_events(&url, &store, "A", 100, &["order.paid", "refund.succeeded"]);
    let b = order_with_events(&url, &store, "B", 101, &["order.paid"]);
    assert_eq!(claim(&store, 1000).as_deref(), Some(a[0].as_str()));
    assert_eq!(store.record_failed_attempt(&a[0], 2, 1000, "HTTP 500").unwrap(), Retry::Stale, "not its attempt");
    assert_eq!(other.record_failed_attempt(&a[0], 1, 1000, "HTTP 500").unwrap(), Retry::At(1010));
    // One order's failing event does not hold back another order.
    assert_eq!(claim(&other, 1005).as_deref(), Some(b[0].as_str()));
    assert!(other.mark_delivered(&b[0], 1005).unwrap());
    assert_eq!(claim(&store, 1005), None);
    assert_eq!(claim(&store, 1010).as_deref(), Some(a[0].as_str()));
    let e = store.pay_event(&a[0]).unwrap().unwrap();
    assert_eq!((e.attempts, e.last_error.as_deref(), e.status()), (2, Some("HTTP 500"), EventStatus::Pending));
    assert_eq!(
        store.record_failed_attempt(&a[0], 2, 1010, "HTTP 502").unwrap(),
        Retry::At(1030),
        "20 s after the second"
    );

    // Three days of failures: given up, and no longer holds back its order.
    let last = 100 + GIVE_UP_AFTER;
    let e = store.claim_event(last - 1, LEASE).unwrap().unwrap();
    assert_eq!(e.id, a[0]);
    assert!(matches!(store.record_failed_attempt(&a[0], 3, last - 1, "HTTP 503").unwrap(), Retry::At(_)));
    let e = store.claim_event(last + 100, LEASE).unwrap().unwrap();
    assert_eq!(store.record_failed_attempt(&e.id, e.attempts, last + 100, "timeout").unwrap(), Retry::GaveUp);
    let dead = store.pay_event(&a[0]).unwrap().unwrap();
    assert_eq!(
        (dead.status(), dead.last_error.as_deref(), dead.failed_at),
        (EventStatus::Failed, Some("timeout"), Some(last + 100))
    );
    assert_eq!(store.outbox_backlog().unwrap(), Backlog { pending: 1, oldest_created_at: Some(101), failed: 1 });
    assert_eq!(claim(&store, last + 100).as_deref(), Some(a[1].as_str()));
    assert!(store.mark_delivered(&a[1], last + 100).unwrap());

    // Listed newest first; pending ones are those not delivered, failed included.
    let all: Vec<String> = store.list_pay_events(false, 10).unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(all, [b[0].clone(), a[1].clone(), a[0].clone()]);
    assert_eq!(store.list_pay_events(false, 1).unwrap().len(), 1);
    let pending: Vec<String> = store.list_pay_events(true, 10).unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(pending, [a[0].clone()]);

    // Retried by hand: due at once, three more days before it is given up again.
    assert_eq!(store.retry_event(&a[0], last + 200).unwrap().map(|e| e.status()), Some(EventStatus::Failed));
    assert_eq!(store.outbox_backlog().unwrap(), Backlog { pending: 1, oldest_created_at: Some(100), failed: 0 });
    let again = other.claim_event(last + 200, LEASE).unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (a[0].as_str(), 5));
    assert!(matches!(store.record_failed_attempt(&a[0], 5, last + 300, "HTTP 500").unwrap(), Retry::At(_)));
    assert_eq!(store.retry_event("evt_nope", 0).unwrap(), None);
    // A delivered event retried is sent again.
    assert_eq!(store.retry_event(&a[1], last + 400).unwrap().map(|e| e.status()), Some(EventStatus::Delivered));
    assert_eq!(store.pay_event(&a[1]).unwrap().unwrap().status(), EventStatus::Pending);
}
