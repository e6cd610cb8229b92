//! Every crafted request of `hostile.rs`, sent with raw sockets to a real wxlogin server:
//! none may crash it, hang it or make it balloon, and it answers normally afterwards.

use std::time::Duration;

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
);

#[test]
fn a_declared_body_over_the_limit_is_413_without_reading_it() {
    use std::io::{Read, Write};
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
