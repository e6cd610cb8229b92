//! The PostgreSQL engine's users, logins, replays, sessions, purge and stats, through the
//! `Store` facade, with two `Store`s on one database standing for two instances.

use std::net::IpAddr;
use std::sync::Arc;

use wxlogin::config::DatabaseConfig;
use wxlogin::secrets::Secret;
use wxlogin::store::{
    AppStats, Caller, CodeClaim, LoginOutcome, Lookup, NewLogin, Replay, Store, Terms, KEEP_EXPIRED_SECONDS,
    MAX_CODE_REPLAYS,
};

use crate::pg_cluster::{fresh_database, psql};

fn connect(url: &str) -> Store {
    Store::connect(&DatabaseConfig { url: Some(Secret::new(url)), ..Default::default() }).expect("connects")
}

/// Two instances on one new database, and its URL.
fn two_instances() -> (Store, Store, String) {
    let url = fresh_database();
    (connect(&url), connect(&url), url)
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

fn local() -> Caller {
    Caller { key_hash: None, ip: ip(1) }
}

fn terms_at(now: i64) -> Terms {
    Terms { now, ttl: 100, max_lifetime: 1000, max_per_user: 50 }
}

struct Login<'a> {
    app: &'a str,
    openid: &'a str,
    unionid: Option<&'a str>,
    code: u8,
    token: u8,
    caller: Caller,
    terms: Terms,
}

impl Login<'_> {
    fn on(&self, store: &Store) -> LoginOutcome {
        store
            .record_login(&NewLogin {
                app: self.app,
                openid: self.openid,
                unionid: self.unionid,
                session_key: &Secret::new(format!("key-{}", self.code)),
                code_hash: [self.code; 32],
                token_hash: [self.token; 32],
                terms: self.terms,
                caller: self.caller,
            })
            .expect("login")
    }
}

fn login<'a>(openid: &'a str, code: u8, token: u8, now: i64) -> Login<'a> {
    Login { app: "main", openid, unionid: None, code, token, caller: local(), terms: terms_at(now) }
}

/// A replay of code `code` by `caller` at `now` (a 60 s window), with token hash `[token; 32]`.
fn replay(store: &Store, code: u8, caller: &Caller, now: i64, token: u8) -> Replay {
    replay_with(store, code, caller, &terms_at(now), token)
}

fn replay_with(store: &Store, code: u8, caller: &Caller, terms: &Terms, token: u8) -> Replay {
    store.replay_login("main", &[code; 32], caller, 60, terms, &mut || [token; 32]).expect("replay")
}

fn answered(r: Replay) -> LoginOutcome {
    match r {
        Replay::Answered(o) => o,
        other => panic!("expected a replay, got {other:?}"),
    }
}

fn refused(r: Replay) -> bool {
    matches!(r, Replay::Refused)
}

fn live(store: &Store, token: u8, now: i64) -> bool {
    matches!(store.lookup_session(&[token; 32], now).expect("lookup"), Lookup::Live(_))
}

fn count(url: &str, sql: &str) -> i64 {
    psql(url, sql).trim().parse().unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[test]
fn logins_upsert_the_user_keep_unionid_and_replace_the_session_key() {
    let (a, b, url) = two_instances();
    let first = Login { unionid: Some("u1"), ..login("o1", 1, 1, 1000) }.on(&a);
    assert!(first.new_user);
    assert_eq!(first.expires_at, 1100);
    let second = login("o1", 2, 2, 2000).on(&b);
    assert!(!second.new_user, "the other instance finds the user");
    assert_eq!(second.user.id, first.user.id);
    assert_eq!(second.user.unionid.as_deref(), Some("u1"), "a login without unionid keeps the known one");
    assert_eq!(a.session_key(first.user.id).expect("reads").expect("a key").expose(), "key-2", "newest key wins");
    let third = Login { unionid: Some("u2"), ..login("o1", 3, 3, 3000) }.on(&a);
    assert_eq!(third.user.unionid.as_deref(), Some("u2"), "a different unionid replaces the known one");
    assert_eq!((third.user.created_at, third.user.last_login_at), (1000, 3000));
    assert_eq!(b.user(first.user.id).expect("reads"), Some(third.user.clone()), "the login answers the stored row");
    assert!(b.session_key(first.user.id + 1000).expect("reads").is_none());
    let next = login("o2", 4, 4, 3500).on(&b);
    assert_eq!((next.new_user, next.user.id), (true, first.user.id + 1), "returning logins spend no ids");

    // The first login of one user on both instances at once makes one user.
    let stores = Arc::new([a, b]);
    let racers: Vec<_> = (0..8u8)
        .map(|i| {
            let stores = stores.clone();
            std::thread::spawn(move || login("o-race", 100 + i, 100 + i, 4000).on(&stores[usize::from(i % 2)]))
        })
        .collect();
    let outcomes: Vec<LoginOutcome> = racers.into_iter().map(|t| t.join().expect("no racer failed")).collect();
    assert_eq!(outcomes.iter().filter(|o| o.new_user).count(), 1, "exactly one login created the user");
    assert!(outcomes.iter().all(|o| o.user.id == outcomes[0].user.id));
    let [a, b] = &*stores;

    let other = Login { app: "shop", ..login("o1", 9, 9, 5000) }.on(b);
    assert!(other.new_user, "an openid is a user per app");
    let ids: Vec<i64> = a.user_by_openid("o1").expect("reads").iter().map(|u| u.id).collect();
    assert_eq!(ids, [first.user.id, other.user.id]);
    let main: Vec<String> = a.list_users(Some("main"), 10).expect("reads").into_iter().map(|u| u.openid).collect();
    assert_eq!(main, ["o-race", "o2", "o1"], "newest first, of the app asked");
    let newest = b.list_users(None, 1).expect("reads");
    assert_eq!((newest.len(), newest[0].id), (1, other.user.id));
    assert_eq!(a.list_users(None, -1).expect("reads").len(), 4, "a negative limit is none, as on SQLite");
    // Each instance writes its counts within a second, and at once when it stops.
    for s in stores.iter() {
        s.checkpoint().expect("writes the pending login counts");
    }
    assert_eq!(count(&url, "SELECT sum(logins) FROM login_days WHERE day = '1970-01-01'"), 3 + 1 + 8 + 1);
}

#[test]
fn a_login_keeps_its_code_claim_and_records_the_code() {
    let (a, b, url) = two_instances();
    assert_eq!(a.claim_code("main", &[1; 32], 1000, 900).expect("claims"), CodeClaim::Won);
    assert_eq!(b.code_claim("main", &[1; 32], 940).expect("reads"), CodeClaim::Held);
    login("o1", 1, 1, 1000).on(&a);
    assert_eq!(b.code_claim("main", &[1; 32], 940).expect("reads"), CodeClaim::Used);
    assert_eq!(count(&url, "SELECT count(*) FROM code_claims"), 1, "the claim stays for the replay window");
    assert_eq!(
        psql(&url, "SELECT new_user, client_ip, key_hash IS NULL, replays FROM used_codes").trim(),
        "1|10.0.0.1|t|0"
    );
}

#[test]
fn replays_answer_the_first_caller_at_most_three_times_across_instances() {
    let (a, b, _url) = two_instances();
    let keyed = Caller { key_hash: Some([42; 32]), ip: ip(1) };
    let user = Login { caller: keyed, ..login("o1", 1, 1, 1000) }.on(&a).user;
    // With a key, the key decides: another key, or none, from the same address is refused.
    assert!(refused(replay(&b, 1, &Caller { key_hash: Some([43; 32]), ..keyed }, 1001, 2)));
    assert!(refused(replay(&b, 1, &Caller { key_hash: None, ..keyed }, 1001, 3)));
    // Refused attempts do not count: the first caller has three, spent on either instance.
    for (i, token) in [4u8, 5, 6].into_iter().enumerate() {
        let store = if i % 2 == 0 { &a } else { &b };
        let again = answered(replay(store, 1, &Caller { ip: ip(9 + i as u8), ..keyed }, 1002, token));
        assert_eq!((again.user.id, again.new_user, again.expires_at), (user.id, true, 1102));
        assert!(live(if i % 2 == 0 { &b } else { &a }, token, 1003), "the replay's session verifies on the other");
    }
    assert!(refused(replay(&b, 1, &keyed, 1003, 7)), "a fourth");
    assert!(refused(replay(&a, 1, &keyed, 1003, 7)), "a fourth, on the other instance");
    assert!(!live(&a, 7, 1003) && !live(&a, 3, 1003) && !live(&a, 2, 1003));

    // Without a key, the client IP decides (a caller's key then changes nothing).
    let plain = Caller { key_hash: None, ip: ip(1) };
    Login { caller: plain, ..login("o2", 2, 20, 1000) }.on(&b);
    assert!(refused(replay(&a, 2, &Caller { ip: ip(2), ..plain }, 1001, 21)));
    answered(replay(&a, 2, &plain, 1001, 22));
    answered(replay(&b, 2, &Caller { key_hash: Some([44; 32]), ..plain }, 1001, 23));

    // Outside the window, or in another app: WeChat decides.
    assert!(matches!(replay(&a, 2, &plain, 1060, 24), Replay::NotFound));
    let other = a.replay_login("shop", &[2; 32], &plain, 60, &terms_at(1001), &mut || [25; 32]).expect("replay");
    assert!(matches!(other, Replay::NotFound));
    // A returning user's replay says so.
    Login { caller: plain, ..login("o2", 3, 26, 1010) }.on(&a);
    assert!(!answered(replay(&b, 3, &plain, 1011, 27)).new_user);
    // Logins and replays are counted: 3 logins, 3 + 2 + 1 replays (b's written as it stops).
    b.checkpoint().expect("writes b's pending login counts");
    assert_eq!(a.stats(1011).expect("stats").logins_today, 9);
}

#[test]
fn racing_replays_on_two_instances_spend_exactly_three() {
    let (a, b, _url) = two_instances();
    login("o1", 1, 1, 1000).on(&a);
    let stores = Arc::new([a, b]);
    let threads: Vec<_> = (0..8u8)
        .map(|i| {
            let stores = stores.clone();
            std::thread::spawn(move || {
                matches!(replay(&stores[usize::from(i % 2)], 1, &local(), 1001, 100 + i), Replay::Answered(_))
            })
        })
        .collect();
    let answered = threads.into_iter().map(|t| t.join().expect("no thread failed")).filter(|a| *a).count();
    assert_eq!(answered, MAX_CODE_REPLAYS as usize);
    assert_eq!(stores[1].live_sessions(1001).expect("counts"), 1 + MAX_CODE_REPLAYS);
}

#[test]
fn sessions_verify_slide_expire_and_end_on_the_other_instance() {
    let (a, b, _url) = two_instances();
    let user = login("o1", 1, 5, 1000).on(&a).user;
    match b.lookup_session(&[5; 32], 1050).expect("lookup") {
        Lookup::Live(s) => {
            assert_eq!(s.user, user);
            assert_eq!((s.created_at, s.last_seen_at, s.expires_at, s.max_expires_at), (1000, 1000, 1100, 2000));
        }
        _ => panic!("a session made on A verifies on B"),
    }
    assert!(matches!(b.lookup_session(&[5; 32], 1100).expect("lookup"), Lookup::Expired));
    assert!(matches!(b.lookup_session(&[6; 32], 1050).expect("lookup"), Lookup::Unknown));

    // Not due yet (30 s after the login): nothing is written.
    assert_eq!(b.touch_session(&[5; 32], 1030, 100).expect("touch"), 1100);
    assert_eq!(b.touch_session(&[5; 32], 1090, 100).expect("touch"), 1190, "due: slid");
    match a.lookup_session(&[5; 32], 1150).expect("lookup") {
        Lookup::Live(s) => assert_eq!((s.last_seen_at, s.expires_at), (1090, 1190)),
        _ => panic!("the slide made on B holds on A"),
    }
    // The other instance, sliding at once, finds it done.
    assert_eq!(a.touch_session(&[5; 32], 1091, 100).expect("touch"), 1190);
    assert_eq!(a.touch_session(&[5; 32], 1980, 100).expect("touch"), 1190, "an expired session is not revived");
    assert_eq!(a.touch_session(&[6; 32], 1980, 100).expect("touch"), 1980, "no session: now");

    // Never past the absolute cap.
    Login { terms: Terms { max_lifetime: 150, ..terms_at(1000) }, ..login("o1", 2, 6, 1000) }.on(&b);
    assert_eq!(a.touch_session(&[6; 32], 1090, 100).expect("touch"), 1150);

    assert!(b.delete_session(&[6; 32]).expect("deletes"));
    assert!(matches!(a.lookup_session(&[6; 32], 1100).expect("lookup"), Lookup::Unknown));
    assert!(!a.delete_session(&[6; 32]).expect("deletes"), "already gone");

    // Revoking one user ends its sessions everywhere and spends its codes' replays.
    let other = login("o2", 3, 7, 1000).on(&a);
    login("o2", 4, 8, 1001).on(&a);
    login("o3", 5, 9, 1001).on(&b);
    assert_eq!(b.revoke_sessions(Some(other.user.id)).expect("revokes"), 2);
    assert!(!live(&a, 7, 1002) && !live(&a, 8, 1002) && live(&a, 9, 1002));
    assert!(refused(replay(&a, 3, &local(), 1002, 10)));
    answered(replay(&a, 5, &local(), 1002, 11));
    // Everyone's: the expired one (5) counted too.
    assert_eq!(a.revoke_sessions(None).expect("revokes"), 3);
    assert!(!live(&b, 9, 1003) && !live(&b, 11, 1003));
    assert!(refused(replay(&b, 5, &local(), 1003, 12)));
}

#[test]
fn a_login_beyond_the_cap_ends_the_least_recently_used_sessions() {
    let (a, b, _url) = two_instances();
    let capped = |now| Terms { max_per_user: 3, ..terms_at(now) };
    for (i, now) in [1000, 1001, 1002].into_iter().enumerate() {
        Login { terms: capped(now), ..login("o1", 10 + i as u8, 1 + i as u8, now) }.on(if i == 1 { &b } else { &a });
    }
    Login { terms: capped(1002), ..login("o2", 20, 20, 1002) }.on(&b);
    // The oldest session is used (slid, on B), then two more logins: the unused ones go.
    assert_eq!(b.touch_session(&[1; 32], 1070, 100).expect("touch"), 1170);
    Login { terms: capped(1071), ..login("o1", 13, 4, 1071) }.on(&a);
    assert!(!live(&b, 2, 1075) && live(&b, 1, 1075) && live(&b, 3, 1075));
    // A replay is a login too, and keeps to the cap.
    answered(replay_with(&b, 13, &local(), &capped(1072), 5));
    let alive: Vec<u8> = (1..=5).filter(|t| live(&a, *t, 1075)).collect();
    assert_eq!(alive, [1, 4, 5]);
    assert!(live(&a, 20, 1075), "another user's sessions are not counted");
}

#[test]
fn sessions_are_listed_and_stats_counted_per_app() {
    let (a, b, _url) = two_instances();
    let now = 1_700_000_000;
    let o1 = login("o-1", 1, 0xab, now).on(&a).user;
    login("o-1", 2, 0xcd, now + 1).on(&b);
    login("o-2", 3, 3, now).on(&a);
    Login { app: "shop", ..login("o-3", 4, 4, now - 3 * 86_400) }.on(&b);

    let listed = b.list_sessions(o1.id, now + 2).expect("lists");
    let shown: Vec<(&str, i64, i64, i64)> =
        listed.iter().map(|s| (s.token_hash_prefix.as_str(), s.user_id, s.created_at, s.expires_at)).collect();
    assert_eq!(shown, [("cdcdcdcd", o1.id, now + 1, now + 101), ("abababab", o1.id, now, now + 100)]);
    assert_eq!(a.list_sessions(o1.id, now + 100).expect("lists").len(), 1, "expired ones are not listed");
    assert_eq!(a.live_sessions(now).expect("counts"), 3);

    // b's logins are counted once b writes them (within a second, or as it stops).
    b.checkpoint().expect("writes b's pending login counts");
    let s = a.stats(now).expect("stats");
    assert_eq!((s.users, s.live_sessions, s.logins_today), (3, 3, 3));
    assert_eq!(s.by_app[0], AppStats { app: "main".into(), users: 2, live_sessions: 3, logins_today: 3 });
    assert_eq!(s.by_app[1], AppStats { app: "shop".into(), users: 1, live_sessions: 0, logins_today: 0 });
    assert_eq!(s.by_app.len(), 2);
}

#[test]
fn profile_and_phone_updates_change_only_what_is_given() {
    let (a, b, _url) = two_instances();
    let id = login("o1", 1, 1, 1000).on(&a).user.id;
    let u = b.update_profile(id, Some("Ann"), None, Some(2)).expect("updates").expect("a user");
    assert_eq!((u.nickname.as_deref(), u.avatar_url.as_deref(), u.gender), (Some("Ann"), None, Some(2)));
    let u = a.update_profile(id, None, Some("https://a/b.png"), None).expect("updates").expect("a user");
    assert_eq!(
        (u.nickname.as_deref(), u.avatar_url.as_deref(), u.gender),
        (Some("Ann"), Some("https://a/b.png"), Some(2))
    );
    let u = b.update_phone(id, "13800000000", Some("86")).expect("updates").expect("a user");
    assert_eq!((u.phone_number.as_deref(), u.country_code.as_deref()), (Some("13800000000"), Some("86")));
    let u = a.update_phone(id, "13900000000", None).expect("updates").expect("a user");
    assert_eq!((u.phone_number.as_deref(), u.country_code.as_deref()), (Some("13900000000"), Some("86")));
    assert_eq!(b.user(id).expect("reads"), Some(u.clone()));
    // A later login leaves them alone.
    assert_eq!(login("o1", 2, 2, 1001).on(&b).user.nickname.as_deref(), Some("Ann"));
    assert!(a.update_profile(id + 1, Some("x"), None, None).expect("updates").is_none());
    assert!(a.update_phone(id + 1, "1", None).expect("updates").is_none());
}

#[test]
fn purge_removes_old_sessions_codes_and_claims_only() {
    let (a, b, url) = two_instances();
    let p = 1100 + KEEP_EXPIRED_SECONDS + 1;
    login("o1", 1, 1, 1000).on(&a);
    login("o1", 2, 2, p - 10).on(&b);
    for (code, at) in [(50u8, p - 700), (51, p - 500), (53, p - 1000)] {
        assert_eq!(a.claim_code("main", &[code; 32], at, 0).expect("claims"), CodeClaim::Won);
    }
    let claims = || count(&url, "SELECT count(*) FROM code_claims");
    // A long window: the old session and code go, no claim is that old.
    assert_eq!(b.purge(p, 3600).expect("purges"), 2, "the expired session and the old code");
    assert!(matches!(a.lookup_session(&[1; 32], 1050).expect("lookup"), Lookup::Unknown));
    assert!(live(&a, 2, p));
    assert_eq!(claims(), 3);
    // A short one: claims older than 10 minutes go, never a younger one.
    assert_eq!(a.purge(p, 60).expect("purges"), 2, "the claims of 700 and 1000 s ago");
    assert_eq!(psql(&url, "SELECT claimed_at FROM code_claims").trim(), (p - 500).to_string());
    answered(replay(&b, 2, &local(), p, 3));
    assert_eq!(b.purge(p, 60).expect("purges"), 0);
}
