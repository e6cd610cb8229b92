//! Every crafted request of `hostile.rs`, sent with raw sockets to a real wxlogin server:
//! none may crash it, hang it or make it balloon, and it answers normally afterwards.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::hostile;
use crate::support::TestServer;

/// wxlogin with short socket deadlines, so that the slow-client cases take seconds.
fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.server.header_timeout_seconds = 2;
        c.server.read_timeout_seconds = 2;
    })
}

macro_rules! hostile_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let s = server();
            hostile::$name(s.addr());
            // And the server still does its real work.
            let (token, _) = s.login("after");
            assert_eq!(s.get("/v1/session", Some(&token)).status, 200);
        }
    )*};
}

hostile_tests!(
    content_length_huge,
    content_length_u64_max,
    huge_header_line,
    huge_request_line,
    many_headers,
    non_ascii_header,
    conflicting_body_lengths,
    http2_preface,
    chunked_body_too_long,
    chunked_size_overflow,
    many_half_sent_requests,
    slow_header,
    body_never_sent,
    unread_body_never_sent,
    body_sent_slowly,
    pipelined_flood,
    transfer_encoding_not_just_chunked,
    chunk_size_with_whitespace,
    chunked_bare_lf,
);

#[test]
fn a_declared_body_over_the_limit_is_413_without_reading_it() {
    use std::io::Write;
    let s = server();
    let mut stream = std::net::TcpStream::connect(s.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000000000\r\n\r\nabc").unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    hostile::assert_alive(s.addr());
}

// Attacks on the worker lanes, against wxlogin with its DEFAULT timeouts (30 s read, 10 s
// head) and the test's 4 local workers: a worker that waits on a client shows as session
// checks taking seconds. Each attack ends by dropping its sockets.

/// The longest a session check may take while an attack runs (the broken code took 5-30 s).
const CHECK_BOUND: Duration = Duration::from_secs(2);

/// 20 session checks, each answered 200 within [`CHECK_BOUND`].
fn session_checks_stay_fast(s: &TestServer, token: &str, during: &str) {
    for i in 0..20 {
        let started = Instant::now();
        let r = crate::support::try_send(&s.url("/v1/session"), "GET", Some(token), None, &[])
            .unwrap_or_else(|e| panic!("{during}: session check {i} failed after {:?}: {e}", started.elapsed()));
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{during}: session check {i}: {}", r.text);
        assert!(took < CHECK_BOUND, "{during}: session check {i} took {took:?}");
    }
}

/// Opens `n` connections that each send `request`, and keeps them open.
fn attack(s: &TestServer, n: usize, request: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut stream = hostile::connect(s.addr());
            hostile::send(&mut stream, request);
            stream
        })
        .collect()
}

fn patch_me_head(token: &str, extra: &str) -> String {
    format!(
        "PATCH /v1/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\n{extra}\r\n"
    )
}

/// Item 1: `Connection: upgrade` made the body the raw stream, with no end and no deadline.
/// Now it is framed by its Content-Length like any request: answered at once, then closed.
#[test]
fn connection_upgrade_requests_are_framed_like_any_other() {
    let s = TestServer::start();
    let (token, _) = s.login("victim");
    let body = r#"{"nickname":"mallory"}"#;
    let request = patch_me_head(
        &token,
        &format!("Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: {}\r\n", body.len()),
    ) + body;
    let mut held = attack(&s, 32, request.as_bytes());
    session_checks_stay_fast(&s, &token, "32 upgrade requests");
    for stream in &mut held {
        let outcome = hostile::read_outcome(stream, Duration::from_secs(5));
        assert_eq!(outcome, hostile::Outcome::Status(200), "an upgrade request");
        // and then closed: nothing more is read from it as a body or a request
        let mut rest = Vec::new();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(stream.read_to_end(&mut rest).is_ok(), "not closed after the answer");
    }
    assert_eq!(s.get("/v1/me", Some(&token)).json()["nickname"], "mallory");
}

/// Item 1, aimed at `/v1/login`: the same requests held the WeChat lane (8 workers here)
/// until their clients left, so a real login got 503. Now each is answered at once.
#[test]
fn connection_upgrade_logins_do_not_fill_the_wechat_lane() {
    let s = TestServer::start();
    let body = r#"{"code":"not-a-real-code"}"#;
    let request = format!(
        "POST /v1/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut held = attack(&s, 32, request.as_bytes());
    // each answered (401 for the bad code, or 503 when 32 at once overflow the lane's
    // queue), though its client keeps the connection open
    for stream in &mut held {
        let outcome = hostile::read_outcome(stream, Duration::from_secs(5));
        assert!(matches!(outcome, hostile::Outcome::Status(401 | 503)), "an upgrade login: {outcome:?}");
    }
    // and the lane is free again for real logins
    for i in 0..5 {
        let started = Instant::now();
        let r = s.post("/v1/login", None, &serde_json::json!({"code": s.code(&format!("user{i}"))}));
        assert_eq!(r.status, 200, "login {i} after 32 upgrade logins: {}", r.text);
        assert!(started.elapsed() < CHECK_BOUND, "login {i} took {:?}", started.elapsed());
    }
}

/// Item 2: 16 connections send a head declaring a body that does not (all) come: session
/// checks must stay fast. The old code read such a body in a local worker, for up to the
/// read timeout; now the connection's own thread reads it.
fn body_withheld(request: impl FnOnce(&str) -> Vec<u8>, what: &str) -> (TestServer, Vec<TcpStream>) {
    let s = TestServer::start();
    let (token, _) = s.login("victim");
    let held = attack(&s, 16, &request(&token));
    session_checks_stay_fast(&s, &token, what);
    (s, held)
}

/// `Content-Length: 20000` (over the old 16 KiB pre-read) and no body.
#[test]
fn a_declared_body_never_sent_holds_no_worker() {
    let head = |token: &str| patch_me_head(token, "Content-Length: 20000\r\n").into_bytes();
    body_withheld(head, "16 heads declaring 20000 bytes");
}

/// `Expect: 100-continue`: the connection's thread says Continue, then waits for the body.
#[test]
fn a_body_after_100_continue_never_sent_holds_no_worker() {
    let head = |token: &str| patch_me_head(token, "Content-Length: 1000\r\nExpect: 100-continue\r\n").into_bytes();
    let (_s, mut held) = body_withheld(head, "16 heads expecting 100-continue");
    for stream in &mut held {
        assert_eq!(hostile::read_outcome(stream, Duration::from_secs(5)), hostile::Outcome::Status(100));
    }
}

/// A chunked body cut short: 17000 bytes of a 20000-byte chunk (past the old pre-read).
#[test]
fn a_chunked_body_cut_short_holds_no_worker() {
    let head = |token: &str| {
        let mut request = patch_me_head(token, "Transfer-Encoding: chunked\r\n").into_bytes();
        request.extend_from_slice(b"4e20\r\n");
        request.resize(request.len() + 17000, b' ');
        request
    };
    body_withheld(head, "16 chunked bodies cut short");
}

/// Item 2: a body over `max_body_bytes`, declared or chunked, sent in part and then held:
/// 413 `body_too_large` at once (no worker reads it), and the connection is closed.
#[test]
fn bodies_over_the_limit_are_refused_without_reading_them() {
    let s = TestServer::start();
    let (token, _) = s.login("victim");
    let mut declared = patch_me_head(&token, "Content-Length: 70000\r\n").into_bytes();
    declared.extend_from_slice(&[b' '; 100]);
    let mut chunked = patch_me_head(&token, "Transfer-Encoding: chunked\r\n").into_bytes();
    chunked.extend_from_slice(b"11170\r\n"); // 70000
    chunked.resize(chunked.len() + 66000, b' ');
    for (what, request) in [("a declared 70000-byte body", &declared), ("a 70000-byte chunk", &chunked)] {
        let mut held = attack(&s, 8, request);
        session_checks_stay_fast(&s, &token, what);
        for stream in &mut held {
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 413"), "{what}: {answer}");
            assert!(answer.contains("body_too_large"), "{what}: {answer}");
        }
    }
}

/// Item 5: one address may hold `server.max_connections_per_ip` (64) connections; the next
/// gets 503 and is closed. Others, and that address once it lets go, are served.
#[test]
fn connections_per_address_are_capped() {
    let s = TestServer::start();
    let held: Vec<TcpStream> = (0..64).map(|_| hostile::connect(s.addr())).collect();
    let mut extra = hostile::connect(s.addr());
    let mut answer = String::new();
    let _ = extra.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "the 65th connection from 127.0.0.1: {answer:?}");
    drop(held);
    // the slots are given back as the server sees the connections close
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = hostile::connect(s.addr());
        hostile::send(&mut stream, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        match hostile::read_outcome(&mut stream, Duration::from_secs(5)) {
            hostile::Outcome::Status(200) => break,
            other => assert!(Instant::now() < deadline, "after letting go: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Item 5: behind a proxy (`trust_forwarded_for`) every connection is the proxy's: no cap.
#[test]
fn connections_per_address_are_not_capped_behind_a_proxy() {
    let s = TestServer::start_with(|c| c.server.trust_forwarded_for = true);
    let _held: Vec<TcpStream> = (0..80).map(|_| hostile::connect(s.addr())).collect();
    let mut stream = hostile::connect(s.addr());
    hostile::send(&mut stream, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(hostile::read_outcome(&mut stream, Duration::from_secs(5)), hostile::Outcome::Status(200));
}
