//! Hostile clients, on raw sockets.
//!
//! Each test is a plain function taking the address of a running server, so that it can be
//! pointed at any server built on our tiny_http (the in-test one in `main.rs`, or wxlogin
//! itself). They assume only that the server answers a request for any path (even an
//! unknown one) with some HTTP response. Each checks that the server answered the hostile
//! request sensibly, or closed the connection, within a bounded time, and then that it still
//! answers a normal request (`assert_alive`).
//!
//! Timing: most take well under a second. `slow_header` takes about the server's
//! `header_timeout` (it gives up after 14 s); `body_never_sent` and `body_sent_slowly` take
//! about the server's `read_timeout` (they give up after 40 s): start the server with short
//! limits (e.g. 2 s) to keep them quick.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to answer a request it can answer at once.
const PROMPT: Duration = Duration::from_secs(5);

/// What came back for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP response with this status.
    Status(u16),
    /// The connection was closed (or reset) without a response.
    Closed,
    /// Nothing within the time allowed.
    TimedOut,
}

impl Outcome {
    fn is_status_in(self, range: std::ops::RangeInclusive<u16>) -> bool {
        matches!(self, Outcome::Status(s) if range.contains(&s))
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, PROMPT).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream.set_read_timeout(Some(PROMPT)).unwrap();
    stream.set_write_timeout(Some(PROMPT)).unwrap();
    stream
}

/// Sends `bytes`, ignoring errors: the server may close the connection in the middle of a
/// hostile request, which is what some tests expect.
pub fn send(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    stream.write_all(bytes).is_ok()
}

/// Reads a response head, waiting at most `wait`, and returns its status.
pub fn read_outcome(stream: &mut TcpStream, wait: Duration) -> Outcome {
    let deadline = Instant::now() + wait;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Outcome::TimedOut;
        }
        stream.set_read_timeout(Some(left.min(Duration::from_secs(1)))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                if head.windows(2).any(|w| w == b"\r\n") {
                    break;
                }
            }
            Err(ref e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(ref e) if e.kind() == ErrorKind::Interrupted => {}
            // reset: the server closed with our unread data in its buffer
            Err(_) => break,
        }
    }
    parse_status(&head).map_or(Outcome::Closed, Outcome::Status)
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Sends `GET / HTTP/1.1` on a new connection and expects an HTTP status line promptly.
pub fn assert_alive(addr: SocketAddr) {
    let started = Instant::now();
    let mut stream = connect(addr);
    assert!(
        send(&mut stream, b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
        "cannot send a request to {addr}"
    );
    let outcome = read_outcome(&mut stream, PROMPT);
    assert!(matches!(outcome, Outcome::Status(_)), "the server at {addr} no longer answers a plain GET: {outcome:?}");
    assert!(started.elapsed() < PROMPT, "the server at {addr} took {:?} to answer a plain GET", started.elapsed());
}

/// Sends a head declaring a body and a few bytes of it, and checks the server answers (not
/// with a success: it cannot have the body) or closes, promptly. Several times: a request
/// that kills the worker thread handling it shows once the workers are used up.
fn declared_body_not_sent(addr: SocketAddr, content_length: &str) {
    for _ in 0..8 {
        let mut stream = connect(addr);
        let request = format!(
            "POST / HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {content_length}\r\n\r\nabc"
        );
        send(&mut stream, request.as_bytes());
        let outcome = read_outcome(&mut stream, PROMPT);
        assert!(
            outcome == Outcome::Closed || outcome.is_status_in(300..=599),
            "Content-Length {content_length} with a 3-byte body: {outcome:?}"
        );
    }
    assert_alive(addr);
}

/// `Content-Length: 10^15` with a 3-byte body (stock tiny_http 0.12 aborted the process
/// trying to allocate the declared length when the request was dropped).
pub fn content_length_huge(addr: SocketAddr) {
    declared_body_not_sent(addr, "1000000000000000");
}

/// `Content-Length: 2^64-1` with a 3-byte body (stock tiny_http 0.12 panicked with
/// "capacity overflow").
pub fn content_length_u64_max(addr: SocketAddr) {
    declared_body_not_sent(addr, "18446744073709551615");
}

/// A request head that says something the server must refuse: expects a 4xx (or a close).
fn refused_head(addr: SocketAddr, head: &[u8], what: &str) {
    let mut stream = connect(addr);
    send(&mut stream, head);
    let outcome = read_outcome(&mut stream, PROMPT);
    assert!(outcome == Outcome::Closed || outcome.is_status_in(400..=499), "{what}: {outcome:?}");
    drop(stream);
    assert_alive(addr);
}

/// A 200 KB header line.
pub fn huge_header_line(addr: SocketAddr) {
    let mut head = b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: ".to_vec();
    head.resize(head.len() + 200 * 1024, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    refused_head(addr, &head, "a 200 KB header line");
}

/// A 200 KB request line.
pub fn huge_request_line(addr: SocketAddr) {
    let mut head = b"GET /".to_vec();
    head.resize(head.len() + 200 * 1024, b'a');
    head.extend_from_slice(b" HTTP/1.1\r\nHost: test\r\n\r\n");
    refused_head(addr, &head, "a 200 KB request line");
}

/// 1000 small headers (about 16 KB in all).
pub fn many_headers(addr: SocketAddr) {
    let mut head = b"GET / HTTP/1.1\r\nHost: test\r\n".to_vec();
    for i in 0..1000 {
        head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    refused_head(addr, &head, "1000 headers");
}

/// Header bytes that are not ASCII, and control characters.
pub fn non_ascii_header(addr: SocketAddr) {
    refused_head(addr, b"GET / HTTP/1.1\r\nHost: test\r\nX-Name: caf\xc3\xa9\r\n\r\n", "a UTF-8 header value");
    refused_head(addr, b"GET /\xff HTTP/1.1\r\nHost: test\r\n\r\n", "a non-ASCII request target");
    refused_head(addr, b"GET / HTTP/1.1\r\nHost: test\r\nX-A: a\x00b\r\n\r\n", "a NUL in a header value");
}

/// Ambiguous or invalid body lengths (request smuggling material).
pub fn conflicting_body_lengths(addr: SocketAddr) {
    refused_head(addr, b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: abc\r\n\r\n", "a non-numeric Content-Length");
    refused_head(
        addr,
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "a Content-Length over 2^64",
    );
    refused_head(
        addr,
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "two different Content-Lengths",
    );
    refused_head(
        addr,
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "Content-Length and Transfer-Encoding",
    );
    // (501 Not Implemented: see `transfer_encoding_not_just_chunked`)
    refused_head_or_5xx(
        addr,
        b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        "a Transfer-Encoding other than chunked",
    );
}

/// A framing refusal: exactly `status` (not the answer of a route: the request must never
/// reach the application), and the connection closed after it.
fn refused_framing(addr: SocketAddr, request: &[u8], statuses: &[u16], what: &str) {
    let mut stream = connect(addr);
    send(&mut stream, request);
    let mut answer = Vec::new();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    // until the server closes (a refusal closes the connection) or PROMPT has passed
    while started.elapsed() < PROMPT {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(ref e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let status = parse_status(&answer);
    assert!(
        status.is_some_and(|s| statuses.contains(&s)),
        "{what}: expected {statuses:?}, got {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(started.elapsed() < PROMPT, "{what}: the connection was not closed after the refusal");
    assert_eq!(
        String::from_utf8_lossy(&answer).matches("HTTP/1.1 ").count(),
        1,
        "{what}: more than one answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(stream);
    assert_alive(addr);
}

/// `Transfer-Encoding` other than exactly one `chunked`: a coding we do not implement is
/// 501, a malformed list or a repeated header 400 (each seen differently by proxies: request
/// smuggling). Each with a pipelined `GET` after it that must not be answered.
pub fn transfer_encoding_not_just_chunked(addr: SocketAddr) {
    let body = "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: test\r\n\r\n";
    for (te, statuses) in [
        ("Transfer-Encoding: gzip, chunked\r\n", &[501][..]),
        ("Transfer-Encoding: chunked, gzip\r\n", &[501]),
        ("Transfer-Encoding: x-chunked\r\n", &[501]),
        ("Transfer-Encoding: chunked, chunked\r\n", &[400]),
        ("Transfer-Encoding: chunked,\r\n", &[400]),
        ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", &[400]),
    ] {
        let request = format!("POST / HTTP/1.1\r\nHost: test\r\n{te}\r\n{body}");
        refused_framing(addr, request.as_bytes(), statuses, te.trim());
    }
}

/// Chunk-size lines with spaces or tabs around the size: 400, and closed.
pub fn chunk_size_with_whitespace(addr: SocketAddr) {
    for size in ["5 ", " 5", "5\t", "\t5", "5 ;ext=1"] {
        let request = format!(
            "POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
             {size}\r\nhello\r\n0\r\n\r\n"
        );
        refused_framing(addr, request.as_bytes(), &[400], &format!("chunk size {size:?}"));
    }
}

/// Bare LF line ends inside a chunked body (after a size, after chunk data, after the last
/// chunk, in the trailers): 400, and closed.
pub fn chunked_bare_lf(addr: SocketAddr) {
    for body in [
        "5\nhello\r\n0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "5\r\nhello\r\n0\n\r\n",
        "5\r\nhello\r\n0\r\nX-Trailer: 1\n\r\n",
        "5\r\nhello\r\n0\r\n\n",
    ] {
        let request = format!("POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        refused_framing(addr, request.as_bytes(), &[400], &format!("chunked body {body:?}"));
    }
}

/// An HTTP/2 connection preface (stock tiny_http 0.12 wrote its 505 through a writer that
/// waited for the request's own writer: the connection thread hung).
pub fn http2_preface(addr: SocketAddr) {
    refused_head_or_5xx(addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "an HTTP/2 preface");
}

fn refused_head_or_5xx(addr: SocketAddr, head: &[u8], what: &str) {
    let mut stream = connect(addr);
    send(&mut stream, head);
    let outcome = read_outcome(&mut stream, PROMPT);
    assert!(outcome == Outcome::Closed || outcome.is_status_in(400..=599), "{what}: {outcome:?}");
    drop(stream);
    assert_alive(addr);
}

/// A chunked body far past 64 KiB (8 MiB offered): the server must answer or close without
/// reading it all, promptly.
pub fn chunked_body_too_long(addr: SocketAddr) {
    let mut stream = connect(addr);
    send(
        &mut stream,
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
    );
    // Write from another thread: the server may answer (and close) before reading it all.
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let chunk = {
            let mut chunk = b"10000\r\n".to_vec();
            chunk.resize(chunk.len() + 0x10000, b'x');
            chunk.extend_from_slice(b"\r\n");
            chunk
        };
        for _ in 0..128 {
            if !send(&mut writer, &chunk) {
                return;
            }
        }
        send(&mut writer, b"0\r\n\r\n");
    });
    let outcome = read_outcome(&mut stream, PROMPT);
    assert!(outcome == Outcome::Closed || outcome.is_status_in(200..=599), "an 8 MiB chunked body: {outcome:?}");
    let _ = stream.shutdown(Shutdown::Both);
    sender.join().unwrap();
    drop(stream);
    assert_alive(addr);
}

/// A chunk-size line that overflows 64 bits, and one that never ends.
pub fn chunked_size_overflow(addr: SocketAddr) {
    refused_head(
        addr,
        b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
          ffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        "a chunk size of 2^72-1",
    );
    let mut head = b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    head.resize(head.len() + 100 * 1024, b'1');
    refused_head(addr, &head, "a 100 KB chunk-size line");
}

/// 300 connections holding half a request head each: a normal request must still be
/// answered within a second meanwhile.
pub fn many_half_sent_requests(addr: SocketAddr) {
    let held: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut stream = connect(addr);
            send(&mut stream, b"GET / HTTP/1.1\r\nHost: test\r\nX-Half: ");
            stream
        })
        .collect();
    let started = Instant::now();
    assert_alive(addr);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "with 300 half-sent requests open, a plain GET took {:?}",
        started.elapsed()
    );
    drop(held);
    assert_alive(addr);
}

/// A request head sent one byte per second: the server must cut it off (a response, most
/// likely 408, or a close) before the head is complete. Gives up after 14 s, so the server's
/// `header_timeout` must be shorter than about 12 s.
pub fn slow_header(addr: SocketAddr) {
    let started = Instant::now();
    let mut stream = connect(addr);
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let head = b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let pieces = head.iter().cycle().map(std::slice::from_ref);
    let outcome = trickle(&mut stream, pieces, started, Duration::from_secs(14));
    assert!(
        outcome == Outcome::Closed || outcome.is_status_in(400..=499),
        "a head sent one byte per second was not cut off: {outcome:?} after {:?}",
        started.elapsed()
    );
    drop(stream);
    assert_alive(addr);
}

/// Requests that declare a body and never send it, one small and one large (both read by
/// the server's connection thread, in our tiny_http, up to its pre-read limit): meanwhile a normal request
/// must still be answered, and both must be cut off by the server's read timeout (gives up
/// after 40 s).
pub fn body_never_sent(addr: SocketAddr) {
    let mut held: Vec<TcpStream> = ["1000", "50000"]
        .iter()
        .map(|length| {
            let mut stream = connect(addr);
            let request = format!(
                "POST / HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                 Content-Length: {length}\r\n\r\n"
            );
            send(&mut stream, request.as_bytes());
            stream
        })
        .collect();
    assert_alive(addr);
    for stream in &mut held {
        let outcome = read_outcome(stream, Duration::from_secs(40));
        assert!(
            outcome == Outcome::Closed || outcome.is_status_in(400..=599),
            "a body declared and never sent: {outcome:?}"
        );
    }
    drop(held);
    assert_alive(addr);
}

/// Eight GET requests declaring a 50000-byte body that never comes: a server answers a GET
/// without reading a body, and must answer each promptly, and other requests meanwhile (what
/// is left of a body must not be waited for by the threads that answer requests).
pub fn unread_body_never_sent(addr: SocketAddr) {
    let mut held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut stream = connect(addr);
            send(&mut stream, b"GET / HTTP/1.1\r\nHost: test\r\nContent-Length: 50000\r\n\r\n");
            stream
        })
        .collect();
    let started = Instant::now();
    // (all kept open until the end: closing one would end its body early)
    for stream in &mut held {
        let outcome = read_outcome(stream, PROMPT);
        assert!(
            matches!(outcome, Outcome::Status(_) | Outcome::Closed),
            "a GET with an unsent body: {outcome:?} after {:?}",
            started.elapsed()
        );
    }
    assert!(started.elapsed() < PROMPT, "eight GETs with unsent bodies took {:?} to answer", started.elapsed());
    assert_alive(addr);
    drop(held);
}

/// A 50000-byte body sent one 100-byte piece per 100 ms (50 s in all): the server must
/// not wait for all of it, if only by its read timeout (gives up after 40 s).
pub fn body_sent_slowly(addr: SocketAddr) {
    let started = Instant::now();
    let mut stream = connect(addr);
    send(
        &mut stream,
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
          Content-Length: 50000\r\n\r\n",
    );
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let pieces = std::iter::repeat(&[b' '; 100][..]);
    let outcome = trickle(&mut stream, pieces, started, Duration::from_secs(40));
    assert!(
        outcome == Outcome::Closed || outcome.is_status_in(400..=599),
        "a body sent slowly was not cut off: {outcome:?} after {:?}",
        started.elapsed()
    );
    drop(stream);
    assert_alive(addr);
}

/// 2000 pipelined requests written without reading any response: the server must keep
/// answering them in order (or close), and stay alive.
pub fn pipelined_flood(addr: SocketAddr) {
    let mut stream = connect(addr);
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let one = b"GET /pipelined HTTP/1.1\r\nHost: test\r\n\r\n";
        let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 2000).collect();
        send(&mut writer, &batch);
    });
    let outcome = read_outcome(&mut stream, PROMPT);
    assert!(outcome != Outcome::TimedOut, "pipelined requests: no answer to the first one");
    let _ = stream.shutdown(Shutdown::Both);
    sender.join().unwrap();
    drop(stream);
    assert_alive(addr);
}

/// Sends `pieces` one at a time, looking for an answer after each (the stream's read
/// timeout sets the pace), until the server answers or closes, or `give_up` has passed
/// since `started` (then `TimedOut`: the server let a slow client hold on).
fn trickle<'a>(
    stream: &mut TcpStream,
    pieces: impl Iterator<Item = &'a [u8]>,
    started: Instant,
    give_up: Duration,
) -> Outcome {
    for piece in pieces {
        if started.elapsed() > give_up {
            break;
        }
        if !send(stream, piece) {
            return Outcome::Closed;
        }
        let mut buf = [0u8; 1024];
        match stream.read(&mut buf) {
            Ok(0) => return Outcome::Closed,
            Ok(n) => return parse_status(&buf[..n]).map_or(Outcome::Closed, Outcome::Status),
            Err(ref e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Outcome::Closed,
        }
    }
    Outcome::TimedOut
}
