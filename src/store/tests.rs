use super::*;
use crate::secrets::Secret;

fn temp_store() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("wxlogin-store-{}", crate::secrets::random_id(6)));
    (Store::open(&dir.join("sub/wxlogin.db")).unwrap(), dir)
}

fn login(store: &Store, openid: &str, unionid: Option<&str>, code: u8, token: u8, now: i64) -> LoginOutcome {
    store
        .record_login(&NewLogin {
            app: "main",
            openid,
            unionid,
            session_key: &Secret::new(format!("key-{code}")),
            code_hash: [code; 32],
            token_hash: [token; 32],
            terms: Terms { now, ttl: 100, max_lifetime: 1000 },
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

#[test]
fn replay_finds_a_recent_code_only() {
    let (store, dir) = temp_store();
    let a = login(&store, "o1", None, 7, 1, 1000);
    let terms = Terms { now: 1030, ttl: 100, max_lifetime: 1000 };
    let again = store.replay_login("main", &[7; 32], 60, &terms, || [9; 32]).unwrap().unwrap();
    assert_eq!((again.user.id, again.new_user), (a.user.id, true));
    let late = Terms { now: 1100, ..terms };
    assert!(store.replay_login("main", &[7; 32], 60, &late, || [10; 32]).unwrap().is_none());
    assert!(store.replay_login("other", &[7; 32], 60, &terms, || [11; 32]).unwrap().is_none());
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

fn login_n(store: &Store, i: u32) {
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
            terms: Terms { now: 1_000, ttl: 100, max_lifetime: 1_000 },
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
