//! tiny_http's own limits, on a bare tiny_http server with short limits: the connection
//! caps and the body pre-read. The hostile requests themselves run against wxlogin in
//! `hardening.rs`.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tiny_http::{Limits, Method, Request, Response, Server};

use crate::hostile;

const MAX_BODY: usize = 64 * 1024;

/// A running server; stopped when dropped.
struct TestServer {
    addr: SocketAddr,
    server: Arc<Server>,
    workers: Vec<JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for _ in &self.workers {
            self.server.unblock();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn short_limits() -> Limits {
    Limits { header_timeout: Duration::from_secs(2), read_timeout: Duration::from_secs(2), ..Limits::default() }
}

fn start(limits: Limits) -> TestServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(Server::from_listener_with_limits(listener, None, limits).unwrap());
    let workers = (0..2)
        .map(|_| {
            let server = Arc::clone(&server);
            thread::spawn(move || {
                for request in server.incoming_requests() {
                    handle(request);
                }
            })
        })
        .collect();
    TestServer { addr, server, workers }
}

/// POST: 413 past 64 KiB (declared, or read), 400 if the body cannot be read, else 200.
/// Anything else: 200.
fn handle(mut request: Request) {
    let status = if *request.method() == Method::Post {
        if request.body_length().is_some_and(|l| l > MAX_BODY) {
            413
        } else {
            let mut body = Vec::new();
            match request.as_reader().take(MAX_BODY as u64 + 1).read_to_end(&mut body) {
                Ok(_) if body.len() > MAX_BODY => 413,
                Ok(_) => 200,
                Err(_) => 400,
            }
        }
    } else {
        200
    };
    let _ = request.respond(Response::from_string("{}").with_status_code(status));
}

#[test]
fn default_limits_serve_plain_requests() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(Server::from_listener(listener, None).unwrap());
    let worker = {
        let server = Arc::clone(&server);
        thread::spawn(move || {
            for request in server.incoming_requests() {
                handle(request);
            }
        })
    };
    hostile::assert_alive(addr);
    server.unblock();
    worker.join().unwrap();
}

/// Past `max_connections`, new connections are refused at once, and served again once
/// connections close.
#[test]
fn connections_over_the_limit_are_refused() {
    let server = start(Limits { max_connections: 4, ..short_limits() });
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    // the accept thread counts them as it accepts them
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.server.num_connections() < 4 {
        assert!(Instant::now() < deadline, "connections not counted");
        thread::sleep(Duration::from_millis(10));
    }

    let mut extra = TcpStream::connect(server.addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answer = String::new();
    let _ = extra.read_to_string(&mut answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 503"), "over the limit: {answer:?}");

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.server.num_connections() > 0 {
        assert!(Instant::now() < deadline, "closed connections still counted");
        thread::sleep(Duration::from_millis(10));
    }
    hostile::assert_alive(server.addr);
}

/// A body up to `preread_body_bytes` is read before the handler sees the request, so one
/// left unread costs nothing and the connection is reused; a larger one is never read: the
/// handler's read fails at once, and the connection is closed after one answer.
#[test]
fn bodies_are_read_first_or_never() {
    use std::io::Write;
    let server = start(short_limits());

    // a 10000-byte body ignored by a GET handler, then a second request on the connection
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut request = b"GET /a HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\n".to_vec();
    request.resize(request.len() + 10000, b'x');
    request.extend_from_slice(b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(&request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");

    // a 20000-byte body (over the 16 KiB default), sent in part: not read, so the handler's
    // read fails (400 here) at once; then the connection is closed (after a lingering
    // discard of what the client still sends), the rest never taken for a request
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let mut request = b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n".to_vec();
    request.resize(request.len() + 100, b'x');
    stream.write_all(&request).unwrap();
    assert_eq!(hostile::read_outcome(&mut stream, Duration::from_secs(5)), hostile::Outcome::Status(400));
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    stream.write_all(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1"), "{:?}", String::from_utf8_lossy(&rest));
    assert!(started.elapsed() < Duration::from_secs(4), "not closed: {:?}", started.elapsed());
}

/// A body too large to be read, sent whole (8 MiB, more than the socket buffers hold): the
/// server answers without reading it, but discards what comes for a while before closing,
/// so the client can finish sending and read the answer rather than a reset.
#[test]
fn a_body_too_large_sent_whole_still_gets_its_answer() {
    use std::io::Write;
    const PREREAD: usize = 8 << 20;
    let server = start(Limits { preread_body_bytes: PREREAD, ..short_limits() });
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut request = format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", PREREAD + 10).into_bytes();
    request.resize(request.len() + PREREAD + 10, b'x');
    stream.write_all(&request).expect("the whole body sent, not a reset");
    // (a reset may follow the answer: the server discards at most the pre-read size)
    assert_eq!(hostile::read_outcome(&mut stream, Duration::from_secs(5)), hostile::Outcome::Status(413));
}

/// `max_connections_per_ip`: past it, a new connection from the same address gets 503.
#[test]
fn connections_per_address_over_the_limit_are_refused() {
    let server = start(Limits { max_connections_per_ip: 3, ..short_limits() });
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    let mut extra = TcpStream::connect(server.addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answer = String::new();
    let _ = extra.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "over the limit: {answer:?}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.server.num_connections() > 0 {
        assert!(Instant::now() < deadline, "closed connections still counted");
        thread::sleep(Duration::from_millis(10));
    }
    hostile::assert_alive(server.addr);
}
