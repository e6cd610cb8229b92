use std::sync::{Arc, Barrier};

use super::*;
use crate::secrets::Secret;
use crate::store::{Caller, NewLogin, Terms};

fn temp_store() -> (Sqlite, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("wxlogin-orders-{}", crate::secrets::random_id(6)));
    (Sqlite::open(&dir.join("wxlogin.db")).unwrap(), dir)
}

/// A user of app "main" with `openid`; returns its id.
fn user(store: &Sqlite, openid: &str, n: u8) -> i64 {
    store
        .record_login(&NewLogin {
            app: "main",
            openid,
            unionid: None,
            session_key: &Secret::new("k"),
            code_hash: [n; 32],
            token_hash: [n; 32],
            terms: Terms { now: 1000, ttl: 100, max_lifetime: 1000, max_per_user: 50 },
            caller: Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) },
        })
        .unwrap()
        .user
        .id
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

fn created(store: &Sqlite, o: &NewOrder) -> Order {
    match store.create_order(o).unwrap() {
        Created::New(order) => order,
        other => panic!("expected a new order, got {other:?}"),
    }
}

/// WeChat Pay's transaction ids are unique: this one is made of the order's.
fn payment(no: &str, amount: i64) -> Payment<'_> {
    Payment { out_trade_no: no, transaction_id: no, amount_total: amount, paid_at: 1500 }
}

fn kinds(store: &Sqlite, no: &str) -> Vec<String> {
    store.order_events(no).unwrap().into_iter().map(|e| e.kind).collect()
}

#[test]
fn a_new_order_is_created_and_read_back() {
    let (store, dir) = temp_store();
    let uid = user(&store, "o1", 1);
    let o = created(&store, &new_order("W0001abc", uid, "o1", 1000));
    let expected = Order {
        out_trade_no: "W0001abc".into(),
        app: "main".into(),
        user_id: uid,
        openid: "o1".into(),
        product: Some("vip30".into()),
        description: "VIP, 30 days".into(),
        amount: 990,
        currency: "CNY".into(),
        attach: None,
        state: OrderState::Created,
        transaction_id: None,
        paid_at: None,
        expires_at: 8200,
        refunded_amount: 0,
        created_at: 1000,
        prepay_id: None,
        prepay_at: None,
    };
    assert_eq!(o, expected);
    assert_eq!(store.order("W0001abc").unwrap(), Some(expected));
    assert_eq!(store.order("nope").unwrap(), None);
    assert!(store.order_events("W0001abc").unwrap().is_empty(), "creating is no event");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn creating_is_idempotent_on_out_trade_no() {
    let (store, dir) = temp_store();
    let uid = user(&store, "o1", 1);
    let first = created(&store, &new_order("W0001abc", uid, "o1", 1000));
    // A retry later, same parameters (the same lifetime): the same order.
    assert_eq!(store.create_order(&new_order("W0001abc", uid, "o1", 1030)).unwrap(), Created::Same(first.clone()));
    let mut other = new_order("W0001abc", uid, "o1", 1000);
    other.amount = 1;
    assert_eq!(store.create_order(&other).unwrap(), Created::Conflict(first.clone()));
    let mut other = new_order("W0001abc", uid, "o1", 1000);
    other.attach = Some("x");
    assert_eq!(store.create_order(&other).unwrap(), Created::Conflict(first.clone()));
    let mut other = new_order("W0001abc", uid, "o1", 1000);
    other.expires_at += 1;
    assert_eq!(store.create_order(&other).unwrap(), Created::Conflict(first.clone()));
    let uid2 = user(&store, "o2", 2);
    assert_eq!(store.create_order(&new_order("W0001abc", uid2, "o2", 1000)).unwrap(), Created::Conflict(first));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_order_must_name_an_existing_user_and_its_payer() {
    let (store, dir) = temp_store();
    let uid = user(&store, "o1", 1);
    let e = store.create_order(&new_order("W0001abc", uid + 100, "o1", 1000)).unwrap_err();
    assert!(matches!(e, StoreError::Refused(_)), "{e}");
    let e = store.create_order(&new_order("W0001abc", uid, "someone-else", 1000)).unwrap_err();
    assert!(matches!(e, StoreError::Refused(_)), "{e}");
    assert_eq!(store.order("W0001abc").unwrap(), None);
    // The foreign key itself: a user with orders cannot be deleted from under them.
    created(&store, &new_order("W0001abc", uid, "o1", 1000));
    let e = store.write(|tx| Ok(tx.execute("DELETE FROM users WHERE id = ?1", [uid])?)).unwrap_err();
    assert!(e.to_string().contains("FOREIGN KEY"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn prepay_is_recorded_and_replaced() {
    let (store, dir) = temp_store();
    let uid = user(&store, "o1", 1);
    created(&store, &new_order("W0001abc", uid, "o1", 1000));
    store.set_prepay("W0001abc", "wx201410272009395522657a690389285100", 1001).unwrap();
    let o = store.order("W0001abc").unwrap().unwrap();
    assert_eq!((o.prepay_id.as_deref(), o.prepay_at), (Some("wx201410272009395522657a690389285100"), Some(1001)));
    store.set_prepay("W0001abc", "wx2", 9000).unwrap();
    let o = store.order("W0001abc").unwrap().unwrap();
    assert_eq!((o.prepay_id.as_deref(), o.prepay_at), (Some("wx2"), Some(9000)));
    assert!(matches!(store.set_prepay("nope", "wx3", 1), Err(StoreError::Refused(_))));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_users_orders_come_newest_first_in_pages() {
    let (store, dir) = temp_store();
    let (a, b) = (user(&store, "o1", 1), user(&store, "o2", 2));
    for i in 0..5 {
        created(&store, &new_order(&format!("A{i:07}"), a, "o1", 1000 + i));
    }
    created(&store, &new_order("B0000000", b, "o2", 1000));
    let nos = |v: Vec<Order>| v.into_iter().map(|o| o.out_trade_no).collect::<Vec<_>>();
    assert_eq!(nos(store.orders_of_user(a, None, 3).unwrap()), ["A0000004", "A0000003", "A0000002"]);
    assert_eq!(nos(store.orders_of_user(a, Some("A0000002"), 3).unwrap()), ["A0000001", "A0000000"]);
    assert!(store.orders_of_user(a, Some("A0000000"), 3).unwrap().is_empty());
    assert!(store.orders_of_user(a, Some("B0000000"), 3).unwrap().is_empty(), "another user's order is no cursor");
    assert!(store.orders_of_user(a, Some("nope"), 3).unwrap().is_empty());
    assert_eq!(nos(store.orders_of_user(b, None, 100).unwrap()), ["B0000000"]);
    assert!(store.orders_of_user(b + 1, None, 100).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_payment_is_applied_once_with_one_event() {
    let (store, dir) = temp_store();
    let uid = user(&store, "o1", 1);
    created(&store, &new_order("W0001abc", uid, "o1", 1000));
    let Applied::Paid(paid) = store.apply_payment(&payment("W0001abc", 990), 1501).unwrap() else { panic!() };
    assert_eq!(paid.state, OrderState::Paid);
    assert_eq!(paid.transaction_id.as_deref(), Some("W0001abc"));
    assert_eq!(paid.paid_at, Some(1500));
    assert_eq!(store.order("W0001abc").unwrap().as_ref(), Some(&paid));
    // The duplicate (WeChat re-delivers) changes nothing and writes no event.
    assert_eq!(store.apply_payment(&payment("W0001abc", 990), 1600).unwrap(), Applied::AlreadyPaid(paid.clone()));
    let events = store.order_events("W0001abc").unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!((e.kind.as_str(), e.seq, e.created_at), ("order.paid", 1, 1501));
    assert_eq!((e.delivered_at, e.attempts, e.next_attempt_at), (None, 0, 1501), "written, not delivered");
    assert!(e.id.starts_with("evt_") && e.id.len() > 20, "{}", e.id);
    let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(data["state"], "paid");
    assert_eq!(data["out_trade_no"], "W0001abc");
    assert_eq!(data["amount"], 990);
    assert_eq!(data["user_id"], uid);
    assert_eq!(data["refunds"], serde_json::json!([]));
    assert!(data.get("openid").is_none(), "not part of the contract's Order");
    // Paid orders are no longer queried nor expire.
    assert!(store.orders_due_for_query(5000, 10).unwrap().is_empty());
    assert!(store.expired_orders(100_000, 10).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn payments_that_do_not_fit_record_nothing() {
    let (store, dir) = temp_store();
    let uid = user(&store, "o1", 1);
    assert_eq!(store.apply_payment(&payment("nope", 990), 1501).unwrap(), Applied::Unknown);
    let order = created(&store, &new_order("W0001abc", uid, "o1", 1000));
    assert_eq!(store.apply_payment(&payment("W0001abc", 1), 1501).unwrap(), Applied::AmountMismatch(order.clone()));
    assert_eq!(store.order("W0001abc").unwrap(), Some(order.clone()));
    assert!(store.order_events("W0001abc").unwrap().is_empty());
    // Closed here, then WeChat Pay reports it paid: not applied, but returned.
    let closed = store.close_order("W0001abc", 2000).unwrap().unwrap();
    assert_eq!(store.apply_payment(&payment("W0001abc", 990), 2001).unwrap(), Applied::NotPayable(closed.clone()));
    assert_eq!(store.order("W0001abc").unwrap(), Some(closed));
    assert_eq!(kinds(&store, "W0001abc"), ["order.closed"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_expired_but_unclosed_order_still_takes_its_payment() {
    let (store, dir) = temp_store();
    let uid = user(&store, "o1", 1);
    created(&store, &new_order("W0001abc", uid, "o1", 1000));
    assert!(matches!(store.apply_payment(&payment("W0001abc", 990), 100_000).unwrap(), Applied::Paid(_)));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn closing_is_idempotent_and_leaves_paid_orders_alone() {
    let (store, dir) = temp_store();
    let uid = user(&store, "o1", 1);
    assert_eq!(store.close_order("nope", 2000).unwrap(), None);
    created(&store, &new_order("W0001abc", uid, "o1", 1000));
    let closed = store.close_order("W0001abc", 2000).unwrap().unwrap();
    assert_eq!(closed.state, OrderState::Closed);
    assert_eq!(store.close_order("W0001abc", 3000).unwrap(), Some(closed.clone()), "closed again: unchanged");
    let events = store.order_events("W0001abc").unwrap();
    assert_eq!(events.len(), 1, "one event for one close");
    assert_eq!((events[0].kind.as_str(), events[0].created_at), ("order.closed", 2000));
    let data: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(data["state"], "closed");
    assert!(store.orders_due_for_query(5000, 10).unwrap().is_empty());
    assert!(store.expired_orders(100_000, 10).unwrap().is_empty());

    created(&store, &new_order("W0002abc", uid, "o1", 1000));
    let Applied::Paid(paid) = store.apply_payment(&payment("W0002abc", 990), 1500).unwrap() else { panic!() };
    assert_eq!(store.close_order("W0002abc", 2000).unwrap(), Some(paid), "paid: returned as is");
    assert_eq!(kinds(&store, "W0002abc"), ["order.paid"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_refunded_state_reads_back_and_is_already_paid() {
    let (store, dir) = temp_store();
    let uid = user(&store, "o1", 1);
    created(&store, &new_order("W0001abc", uid, "o1", 1000));
    store.apply_payment(&payment("W0001abc", 990), 1500).unwrap();
    // Part 2 makes this transition; the store must already read it.
    store.write(|tx| Ok(tx.execute("UPDATE orders SET state = 'refunded', refunded_amount = 990", [])?)).unwrap();
    let o = store.order("W0001abc").unwrap().unwrap();
    assert_eq!((o.state, o.refunded_amount), (OrderState::Refunded, 990));
    assert!(matches!(store.apply_payment(&payment("W0001abc", 990), 1600).unwrap(), Applied::AlreadyPaid(_)));
    assert_eq!(store.close_order("W0001abc", 1700).unwrap(), Some(o));
    assert_eq!(store.list_orders(Some(OrderState::Refunded), None, 10).unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn queries_back_off_from_one_minute_to_half_an_hour_until_expiry() {
    let (store, dir) = temp_store();
    let uid = user(&store, "o1", 1);
    let mut o = new_order("W0001abc", uid, "o1", 1000);
    o.expires_at = 1000 + 86_400;
    created(&store, &o);
    let due = |now| store.orders_due_for_query(now, 10).unwrap().len();
    assert_eq!((due(1059), due(1060)), (0, 1), "first query 60 s after creation");
    let mut now = 1060;
    let mut intervals = Vec::new();
    for _ in 0..7 {
        store.note_queried("W0001abc", now).unwrap();
        assert_eq!(due(now), 0, "just asked");
        let next: i64 = store.read(|c| Ok(c.query_row("SELECT next_query_at FROM orders", [], |r| r.get(0))?)).unwrap();
        assert_eq!((due(next - 1), due(next)), (0, 1));
        intervals.push(next - now);
        now = next;
    }
    assert_eq!(intervals, [120, 240, 480, 960, 1800, 1800, 1800]);
    // Past its expiry an order is no longer queried: it is closed (expired_orders).
    assert_eq!(due(o.expires_at - 1), 1);
    assert_eq!(due(o.expires_at), 0);
    assert_eq!(store.expired_orders(o.expires_at, 10).unwrap().len(), 1);
    // Queries of an order that left `created` change nothing.
    store.close_order("W0001abc", now).unwrap();
    store.note_queried("W0001abc", now).unwrap();
    let (queries, next): (i64, Option<i64>) = store
        .read(|c| Ok(c.query_row("SELECT queries, next_query_at FROM orders", [], |r| Ok((r.get(0)?, r.get(1)?)))?))
        .unwrap();
    assert_eq!((queries, next), (7, None));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn due_and_expired_orders_come_most_urgent_first_and_bounded() {
    let (store, dir) = temp_store();
    let uid = user(&store, "o1", 1);
    for (no, at) in [("W0000003", 1002), ("W0000001", 1000), ("W0000002", 1001)] {
        created(&store, &new_order(no, uid, "o1", at));
    }
    let nos = |v: Vec<Order>| v.into_iter().map(|o| o.out_trade_no).collect::<Vec<_>>();
    assert_eq!(nos(store.orders_due_for_query(2000, 10).unwrap()), ["W0000001", "W0000002", "W0000003"]);
    assert_eq!(nos(store.orders_due_for_query(2000, 2).unwrap()), ["W0000001", "W0000002"]);
    store.note_queried("W0000001", 2000).unwrap();
    assert_eq!(nos(store.orders_due_for_query(2000, 10).unwrap()), ["W0000002", "W0000003"]);
    assert!(store.expired_orders(8200, 10).unwrap().len() == 1, "expiry is inclusive");
    assert_eq!(nos(store.expired_orders(9000, 10).unwrap()), ["W0000001", "W0000002", "W0000003"]);
    assert_eq!(nos(store.expired_orders(9000, 1).unwrap()), ["W0000001"]);
    assert!(store.expired_orders(8199, 10).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn orders_are_listed_by_state_and_user() {
    let (store, dir) = temp_store();
    let (a, b) = (user(&store, "o1", 1), user(&store, "o2", 2));
    created(&store, &new_order("A0000001", a, "o1", 1000));
    created(&store, &new_order("A0000002", a, "o1", 1001));
    created(&store, &new_order("B0000001", b, "o2", 1002));
    store.apply_payment(&payment("A0000001", 990), 1500).unwrap();
    store.close_order("B0000001", 1500).unwrap();
    let nos = |v: Vec<Order>| v.into_iter().map(|o| o.out_trade_no).collect::<Vec<_>>();
    assert_eq!(nos(store.list_orders(None, None, 10).unwrap()), ["B0000001", "A0000002", "A0000001"]);
    assert_eq!(nos(store.list_orders(None, None, 1).unwrap()), ["B0000001"]);
    assert_eq!(nos(store.list_orders(Some(OrderState::Paid), None, 10).unwrap()), ["A0000001"]);
    assert_eq!(nos(store.list_orders(Some(OrderState::Created), None, 10).unwrap()), ["A0000002"]);
    assert_eq!(nos(store.list_orders(Some(OrderState::Closed), Some(b), 10).unwrap()), ["B0000001"]);
    assert!(store.list_orders(Some(OrderState::Closed), Some(a), 10).unwrap().is_empty());
    assert_eq!(nos(store.list_orders(None, Some(a), 10).unwrap()), ["A0000002", "A0000001"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn events_of_one_order_are_numbered_in_order() {
    let (store, dir) = temp_store();
    let uid = user(&store, "o1", 1);
    created(&store, &new_order("W0000001", uid, "o1", 1000));
    created(&store, &new_order("W0000002", uid, "o1", 1000));
    store.close_order("W0000001", 1100).unwrap();
    store.apply_payment(&payment("W0000002", 990), 1100).unwrap();
    // A later event of the same order (part 2's refunds) gets the next number.
    let order = store.order("W0000001").unwrap().unwrap();
    store.write(|tx| insert_event(tx, "refund.failed", &order, 1200)).unwrap();
    let seqs: Vec<(i64, String)> =
        store.order_events("W0000001").unwrap().into_iter().map(|e| (e.seq, e.kind)).collect();
    assert_eq!(seqs, [(1, "order.closed".to_string()), (2, "refund.failed".to_string())]);
    assert_eq!(store.order_events("W0000002").unwrap()[0].seq, 1);
    assert!(store.order_events("nope").unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn states_round_trip_through_their_names() {
    for s in [OrderState::Created, OrderState::Paid, OrderState::Closed, OrderState::Refunded] {
        assert_eq!(OrderState::parse(s.as_str()), Some(s));
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
    assert_eq!(OrderState::parse("PAID"), None);
}

#[test]
fn concurrent_payments_of_one_order_apply_once() {
    let (store, dir) = temp_store();
    let store = Arc::new(store);
    let uid = user(&store, "o1", 1);
    for round in 0..10 {
        let no = format!("W{round:07}");
        created(&store, &new_order(&no, uid, "o1", 1000));
        let threads = 4;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (store, barrier, no) = (Arc::clone(&store), Arc::clone(&barrier), no.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.apply_payment(&payment(&no, 990), 1500).unwrap()
                })
            })
            .collect();
        let results: Vec<Applied> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let paid = results.iter().filter(|r| matches!(r, Applied::Paid(_))).count();
        let already = results.iter().filter(|r| matches!(r, Applied::AlreadyPaid(_))).count();
        assert_eq!((paid, already), (1, threads - 1), "{results:?}");
        assert_eq!(kinds(&store, &no), ["order.paid"]);
    }
    // A payment racing a close: exactly one of them wins, with exactly one event.
    for round in 0..10 {
        let no = format!("R{round:07}");
        created(&store, &new_order(&no, uid, "o1", 1000));
        let barrier = Arc::new(Barrier::new(2));
        let pay = {
            let (store, barrier, no) = (Arc::clone(&store), Arc::clone(&barrier), no.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.apply_payment(&payment(&no, 990), 1500).unwrap()
            })
        };
        barrier.wait();
        let closed = store.close_order(&no, 1500).unwrap().unwrap();
        let applied = pay.join().unwrap();
        match applied {
            Applied::Paid(_) => {
                assert_eq!(closed.state, OrderState::Paid);
                assert_eq!(kinds(&store, &no), ["order.paid"]);
            }
            Applied::NotPayable(_) => {
                assert_eq!(closed.state, OrderState::Closed);
                assert_eq!(kinds(&store, &no), ["order.closed"]);
            }
            other => panic!("{other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
