use super::*;
use crate::secrets::Secret;

fn temp_store() -> (Sqlite, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("wxlogin-store-{}", crate::secrets::random_id(6)));
    (Sqlite::open(&dir.join("sub/wxlogin.db")).unwrap(), dir)
}

fn login(store: &Sqlite, openid: &str, unionid: Option<&str>, code: u8, token: u8, now: i64) -> LoginOutcome {
    store
        .record_login(&NewLogin {
            app: "main",
            openid,
            unionid,
            session_key: &Secret::new(format!("key-{code}")),
            code_hash: [code; 32],
            token_hash: [token; 32],
            terms: terms_at(now),
            caller: local(),
        })
        .unwrap()
}

#[test]
fn the_file_and_its_folder_are_created_in_wal_mode() {
    let (store, dir) = temp_store();
    assert!(dir.join("sub/wxlogin.db").exists());
    let mode: String = store.read(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)).unwrap();
    assert_eq!(mode, "wal");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn logins_upsert_keep_unionid_and_replace_the_session_key() {
    let (store, dir) = temp_store();
    let a = login(&store, "o1", Some("u1"), 1, 1, 1000);
    assert!(a.new_user);
    assert_eq!(a.expires_at, 1100);
    let b = login(&store, "o1", None, 2, 2, 2000);
    assert!(!b.new_user);
    assert_eq!(b.user.id, a.user.id);
    assert_eq!(b.user.unionid.as_deref(), Some("u1"), "a login without unionid keeps the known one");
    assert_eq!(store.session_key(a.user.id).unwrap().unwrap().expose(), "key-2", "newest key wins");
    let c = login(&store, "o1", Some("u2"), 3, 3, 3000);
    assert_eq!(c.user.unionid.as_deref(), Some("u2"), "a different unionid replaces the known one");
    assert_eq!(c.user.last_login_at, 3000);
    assert_eq!(store.user(a.user.id).unwrap().unwrap(), c.user, "the login answers the stored row");
    let days: i64 = store.read(|c| Ok(c.query_row("SELECT sum(logins) FROM login_days", [], |r| r.get(0))?)).unwrap();
    assert_eq!(days, 3);
    let _ = std::fs::remove_dir_all(dir);
}

fn local() -> Caller {
    Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) }
}

fn terms_at(now: i64) -> Terms {
    Terms { now, ttl: 100, max_lifetime: 1000, max_per_user: 50 }
}

/// A replay of code `code` by `caller` at `now`, with token hash `[token; 32]`.
fn replay(store: &Sqlite, code: u8, caller: &Caller, now: i64, token: u8) -> Replay {
    store.replay_login("main", &[code; 32], caller, 60, &terms_at(now), &mut || [token; 32]).unwrap()
}

fn answered(r: Replay) -> LoginOutcome {
    match r {
        Replay::Answered(o) => o,
        other => panic!("expected a replay, got {other:?}"),
    }
}

#[test]
fn replay_finds_a_recent_code_only() {
    let (store, dir) = temp_store();
    let a = login(&store, "o1", None, 7, 1, 1000);
    let again = answered(replay(&store, 7, &local(), 1030, 9));
    assert_eq!((again.user.id, again.new_user), (a.user.id, true));
    assert!(matches!(replay(&store, 7, &local(), 1100, 10), Replay::NotFound));
    let other = store.replay_login("other", &[7; 32], &local(), 60, &terms_at(1030), &mut || [11; 32]).unwrap();
    assert!(matches!(other, Replay::NotFound));
    let _ = std::fs::remove_dir_all(dir);
}

fn login_as(store: &Sqlite, openid: &str, code: u8, token: u8, caller: Caller, terms: Terms) -> LoginOutcome {
    store
        .record_login(&NewLogin {
            app: "main",
            openid,
            unionid: None,
            session_key: &Secret::new("k"),
            code_hash: [code; 32],
            token_hash: [token; 32],
            terms,
            caller,
        })
        .unwrap()
}

#[test]
fn replays_answer_only_the_first_caller_and_at_most_three_times() {
    let (store, dir) = temp_store();
    let ip = |last: u8| std::net::IpAddr::from([10, 0, 0, last]);
    let keyed = Caller { key_hash: Some([42; 32]), ip: ip(1) };
    login_as(&store, "o1", 1, 1, keyed, terms_at(1000));
    // With a key, the key decides: another key, or none, from the same address is refused.
    assert!(matches!(replay(&store, 1, &Caller { key_hash: Some([43; 32]), ..keyed }, 1001, 2), Replay::Refused));
    assert!(matches!(replay(&store, 1, &Caller { key_hash: None, ..keyed }, 1001, 3), Replay::Refused));
    // Refused attempts do not count: the first caller still has three, from anywhere.
    for (i, token) in [4u8, 5, 6].into_iter().enumerate() {
        answered(replay(&store, 1, &Caller { ip: ip(9 + i as u8), ..keyed }, 1002, token));
    }
    assert!(matches!(replay(&store, 1, &keyed, 1003, 7), Replay::Refused), "a fourth");
    assert!(matches!(store.lookup_session(&[7; 32], 1003).unwrap(), Lookup::Unknown));
    assert!(matches!(store.lookup_session(&[3; 32], 1003).unwrap(), Lookup::Unknown));

    // Without a key, the client IP decides.
    let plain = Caller { key_hash: None, ip: ip(1) };
    login_as(&store, "o2", 2, 20, plain, terms_at(1000));
    assert!(matches!(replay(&store, 2, &Caller { ip: ip(2), ..plain }, 1001, 21), Replay::Refused));
    answered(replay(&store, 2, &plain, 1001, 22));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn concurrent_replays_spend_no_more_than_three() {
    let (store, dir) = temp_store();
    login(&store, "o1", None, 1, 1, 1000);
    let store = std::sync::Arc::new(store);
    let threads: Vec<_> = (0..12u8)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || matches!(replay(&store, 1, &local(), 1001, 100 + i), Replay::Answered(_)))
        })
        .collect();
    let answered = threads.into_iter().map(|t| t.join().unwrap()).filter(|a| *a).count();
    assert_eq!(answered, MAX_CODE_REPLAYS as usize);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn revoking_sessions_ends_the_replays_of_their_codes() {
    let (store, dir) = temp_store();
    let a = login(&store, "o1", None, 1, 1, 1000);
    login(&store, "o2", None, 2, 2, 1000);
    assert_eq!(store.revoke_sessions(Some(a.user.id)).unwrap(), 1);
    assert!(matches!(replay(&store, 1, &local(), 1001, 3), Replay::Refused));
    answered(replay(&store, 2, &local(), 1001, 4));
    assert_eq!(store.revoke_sessions(None).unwrap(), 2);
    assert!(matches!(replay(&store, 2, &local(), 1001, 5), Replay::Refused));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_login_beyond_the_cap_ends_the_least_recently_used_sessions() {
    let (store, dir) = temp_store();
    let capped = |now| Terms { max_per_user: 3, ..terms_at(now) };
    let live = |store: &Sqlite, token: u8| matches!(store.lookup_session(&[token; 32], 1010).unwrap(), Lookup::Live(_));
    for (i, now) in [1000, 1001, 1002].into_iter().enumerate() {
        login_as(&store, "o1", 10 + i as u8, 1 + i as u8, local(), capped(now));
    }
    login_as(&store, "o2", 20, 20, local(), capped(1002));
    // The oldest session is used (slid), then two more logins: the unused ones go.
    store.touch_session(&[1; 32], 1003, 100).unwrap();
    login_as(&store, "o1", 13, 4, local(), capped(1004));
    assert!(!live(&store, 2) && live(&store, 1) && live(&store, 3));
    // A replay is a login too, and keeps to the cap.
    answered(store.replay_login("main", &[13; 32], &local(), 60, &capped(1005), &mut || [5; 32]).unwrap());
    let alive: Vec<u8> = (1..=5).filter(|t| live(&store, *t)).collect();
    assert_eq!(alive, [1, 4, 5]);
    assert!(live(&store, 20), "another user's sessions are not counted");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sessions_expire_slide_and_purge() {
    let (store, dir) = temp_store();
    login(&store, "o1", None, 1, 5, 1000);
    assert!(matches!(store.lookup_session(&[5; 32], 1050).unwrap(), Lookup::Live(_)));
    assert!(matches!(store.lookup_session(&[5; 32], 1100).unwrap(), Lookup::Expired));
    assert!(matches!(store.lookup_session(&[6; 32], 1050).unwrap(), Lookup::Unknown));
    assert_eq!(store.touch_session(&[5; 32], 1090, 100).unwrap(), 1190);
    assert_eq!(store.touch_session(&[5; 32], 1980, 100).unwrap(), 1190, "an expired session is not revived");
    assert_eq!(store.purge(1190 + KEEP_EXPIRED_SECONDS + 1, 60).unwrap(), 2, "the session and the used code");
    assert!(matches!(store.lookup_session(&[5; 32], 1050).unwrap(), Lookup::Unknown));
    let _ = std::fs::remove_dir_all(dir);
}

fn login_n(store: &Sqlite, i: u32) {
    let b = i.to_be_bytes();
    let hash = |tag: u8| {
        let mut h = [tag; 32];
        h[..4].copy_from_slice(&b);
        h
    };
    store
        .record_login(&NewLogin {
            app: "main",
            openid: &format!("o{}", i % 1_000),
            unionid: None,
            session_key: &Secret::new("k"),
            code_hash: hash(1),
            token_hash: hash(2),
            terms: Terms { now: 1_000, ttl: 100, max_lifetime: 1_000, max_per_user: 50 },
            caller: Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) },
        })
        .expect("login");
}

/// Frames in the WAL since it last started over.
fn wal_frames(path: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(path).expect("opens");
    c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1)).expect("reads")
}

#[test]
fn folding_the_wal_beside_a_stream_of_logins_lets_it_start_over() {
    let (store, dir) = temp_store();
    let db = dir.join("sub/wxlogin.db");
    for i in 0..800 {
        login_n(&store, i);
    }
    // Thousands of frames, under the writer's own checkpoint threshold (10,000).
    let before = (std::fs::metadata(db.with_extension("db-wal")).expect("a WAL").len() / (4096 + 24)) as i64;
    assert!(before > 1_000, "{before} frames");
    let store = std::sync::Arc::new(store);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            // At most 100 (some 600 frames), so that the check below cannot be swamped.
            for i in 1_000_000..1_000_100 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                login_n(&store, i);
            }
        })
    };
    store.fold_wal().expect("folds");
    // The first write after the fold starts the WAL over from its beginning.
    login_n(&store, 999_999);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().expect("the writer did not fail");
    let after = wal_frames(&db);
    assert!(after < before / 2, "the WAL did not start over: {after} frames after the fold, {before} before");
    let _ = std::fs::remove_dir_all(dir);
}
