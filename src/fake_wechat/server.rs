//! The HTTP side: a tiny_http listener and a pool of worker threads.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::Value;

use super::api::Method;
use super::clock::Clock;
use super::pay::{self, api::Headers, PayFake};
use super::reply::Reply;
use super::router::route;
use super::state::{Shared, State};
use super::{FakeOptions, FakePayOptions};

/// Enough threads that injected latency or a "hang" does not hold everyone else up:
/// with 100 ms of latency, 160 workers answer up to 1,600 calls a second, more than the
/// WeChat lane of any wxlogin the benchmark runs, so the fake is never the bottleneck.
const WORKERS: usize = 160;
const MAX_BODY_BYTES: u64 = 1 << 20;
/// How often idle workers look whether the fake is stopping.
const POLL: Duration = Duration::from_millis(100);

/// A running fake `api.weixin.qq.com`. Dropping it stops it, as `stop` does.
pub struct FakeWeChat {
    shared: Arc<Shared>,
    addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
    server: Option<Arc<tiny_http::Server>>,
}

impl FakeWeChat {
    /// Binds `listen` ("127.0.0.1:0" picks a free port) and serves on background threads.
    pub fn start(listen: &str, opts: FakeOptions) -> io::Result<FakeWeChat> {
        let limits = tiny_http::Limits { preread_body_bytes: MAX_BODY_BYTES as usize, ..tiny_http::Limits::default() };
        let server =
            tiny_http::Server::http_with_limits(listen, limits).map_err(|e| match e.downcast::<io::Error>() {
                Ok(io) => io::Error::new(io.kind(), format!("cannot listen on {listen}: {io}")),
                Err(e) => io::Error::other(format!("cannot listen on {listen}: {e}")),
            })?;
        let addr =
            server.server_addr().to_ip().ok_or_else(|| io::Error::other(format!("{listen} is not an IP address")))?;
        let server = Arc::new(server);
        let clock = Clock::default();
        let apps = opts.apps.iter().map(|(appid, _)| appid.clone()).collect();
        let pay = PayFake::new(opts.pay.clone().unwrap_or_else(FakePayOptions::test), apps, clock.clone());
        let mut fake = FakeWeChat {
            shared: Arc::new(Shared::new(State::new(&opts), clock, pay)),
            addr,
            workers: Vec::with_capacity(WORKERS),
            server: Some(Arc::clone(&server)),
        };
        for i in 0..WORKERS {
            let server = Arc::clone(&server);
            let shared = Arc::clone(&fake.shared);
            // On failure `fake` is dropped, which stops the workers already running.
            let handle = thread::Builder::new()
                .name(format!("fake-wechat-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || work(&server, &shared))?;
            fake.workers.push(handle);
        }
        Ok(fake)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "http://127.0.0.1:PORT": the address to give a client (a fake bound to all
    /// interfaces is reached over loopback).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.reachable_addr())
    }

    fn reachable_addr(&self) -> SocketAddr {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.addr.port())
    }

    /// What `wx.login()` would give `user` of `appid`: the in-process twin of
    /// `POST /__fake/login`. An appid the fake does not know still gets a code, which
    /// jscode2session then refuses with 40013 as WeChat would.
    pub fn login_code(&self, appid: &str, user: &str) -> String {
        let now = self.shared.clock.now();
        let mut state = self.shared.lock();
        let rotate = state.behaviour.rotate_session_key;
        state.sessions.issue_code(appid, user, None, rotate, now).code
    }

    /// The same document as `GET /__fake/stats`.
    pub fn stats(&self) -> Value {
        self.shared.lock().stats(self.shared.clock.now())
    }

    /// Moves the fake's clock forward, to expire codes and tokens without waiting.
    pub fn advance_clock(&self, seconds: i64) {
        self.shared.clock.advance(seconds);
    }

    /// Stops serving: waits for the workers (a pending "hang" is cut short) and for the
    /// port to be released, so that a test can start a new fake on the same address.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for FakeWeChat {
    fn drop(&mut self) {
        self.shared.stop();
        self.shared.pay.stop();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        // The last reference: dropping it tells tiny_http's accept thread to close the
        // listener, which it does on its own time.
        if let Some(server) = self.server.take() {
            drop(server);
            wait_until_refused(self.reachable_addr());
        }
    }
}

/// Waits (at most about two seconds) until nothing accepts connections on `addr`.
fn wait_until_refused(addr: SocketAddr) {
    for _ in 0..40 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Err(_) => return,
            Ok(probe) => {
                drop(probe);
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Runs the fake in the foreground for `wxlogin fake-wechat`: prints exactly one line
/// `listening on http://ADDR` to stdout (flushed), then serves until the process is
/// killed. The line is how a test harness that spawned the process learns the port
/// when it asked for port 0.
pub fn serve_forever(listen: &str, opts: FakeOptions) -> io::Result<()> {
    let fake = FakeWeChat::start(listen, opts)?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "listening on {}", fake.base_url())?;
        out.flush()?;
    }
    loop {
        thread::park();
    }
}

fn work(server: &tiny_http::Server, shared: &Shared) {
    while !shared.is_stopping() {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => {
                // A bug must cost one request (tiny_http answers 500 for a dropped
                // request), not a worker.
                let _ = catch_unwind(AssertUnwindSafe(|| serve(shared, request)));
            }
            Ok(None) => {}
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn serve(shared: &Shared, mut request: tiny_http::Request) {
    let method = match request.method() {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Post => Method::Post,
        _ => Method::Other,
    };
    let mut body = Vec::new();
    // tiny_http has read every body up to MAX_BODY_BYTES, and never reads a larger one
    let declared_too_large = request.body_length().is_some_and(|n| n as u64 > MAX_BODY_BYTES);
    let read =
        if declared_too_large { Ok(0) } else { request.as_reader().take(MAX_BODY_BYTES + 1).read_to_end(&mut body) };
    let reply = match read {
        Ok(_) if declared_too_large => Reply::fake_error(413, "body larger than 1 MiB"),
        Err(e) => Reply::fake_error(400, &format!("could not read the body: {e}")),
        Ok(_) if body.len() as u64 > MAX_BODY_BYTES => Reply::fake_error(413, "body larger than 1 MiB"),
        Ok(_) if request.url().starts_with("/v3/") => {
            let latency = shared.lock().behaviour.latency;
            shared.pause(latency);
            pay::api::handle(&shared.pay, request.method().as_str(), request.url(), &pay_headers(&request), &body)
        }
        Ok(_) => route(shared, method, request.url(), &body),
    };
    if let Some(delay) = reply.delay {
        shared.pause(delay);
    }
    let mut response = tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
    if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", reply.content_type) {
        response = response.with_header(header);
    }
    for (name, value) in &reply.headers {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response = response.with_header(header);
        }
    }
    let _ = request.respond(response);
}

/// The headers WeChat Pay reads (the last of each, should one repeat).
fn pay_headers(request: &tiny_http::Request) -> Headers {
    let mut h = Headers::default();
    for header in request.headers() {
        let value = Some(header.value.as_str().to_string());
        let field = &header.field;
        if field.equiv("Authorization") {
            h.authorization = value;
        } else if field.equiv("Accept") {
            h.accept = value;
        } else if field.equiv("User-Agent") {
            h.user_agent = value;
        } else if field.equiv("Content-Type") {
            h.content_type = value;
        }
    }
    h
}
