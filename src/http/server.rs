//! The listener, the workers, the WeChat lane, panic isolation and graceful shutdown.
//!
//! `workers + wechat_workers` threads all take requests from tiny_http and answer them
//! where they are, but at most `wechat_workers` of them may be inside a route that can
//! wait on WeChat at once: those hold a slot of the WeChat lane. A WeChat-bound request
//! that finds every slot taken waits in a bounded queue, which a thread takes from
//! before it gives its slot back; when the queue is full it is answered 503 at once. So
//! a hung WeChat holds at most `wechat_workers` threads, and `workers` threads are always
//! left for the session checks; and a login normally runs on the thread that read it,
//! with no hand-off to another thread (a wake-up and a context switch per login: the
//! login benchmark did about 6% more without it).

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::request::{client_ip, request_id};
use super::router::{self, Found, Lane, Route};
use super::{Method, Req, Resp};
use crate::app::App;
use crate::error::ApiError;

/// How long workers wait for a request before looking at the stop flag again.
const POLL: Duration = Duration::from_millis(100);
/// The longest a graceful shutdown waits for in-flight requests (the contract allows 10 s).
const DRAIN_LIMIT: Duration = Duration::from_secs(8);

pub struct RunningServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    http: tiny_http::Server,
    app: Arc<App>,
    in_flight: AtomicUsize,
    lane: WeChatLane,
    stop_workers: AtomicBool,
}

/// The WeChat lane: how many slots are taken, and the requests waiting for one. One
/// mutex over both, so that a request is queued only while every slot is taken, and
/// every slot holder looks at the queue before it lets its slot go: none is stranded.
struct WeChatLane {
    state: Mutex<LaneState>,
    slots: usize,
}

struct LaneState {
    busy: usize,
    waiting: VecDeque<Job>,
}

enum Admit {
    /// A slot is the caller's: run the job, then [`WeChatLane::next`].
    Run(Job),
    Queued,
    /// Every slot taken and the queue full.
    Full(Job),
}

impl WeChatLane {
    fn admit(&self, job: Job) -> Admit {
        let mut st = self.lock();
        if st.busy < self.slots {
            st.busy += 1;
            Admit::Run(job)
        } else if st.waiting.len() < self.slots {
            st.waiting.push_back(job);
            Admit::Queued
        } else {
            Admit::Full(job)
        }
    }

    /// Called with a slot held and its job done: the next waiting job (the slot stays
    /// the caller's), or None with the slot given back.
    fn next(&self) -> Option<Job> {
        let mut st = self.lock();
        let job = st.waiting.pop_front();
        if job.is_none() {
            st.busy -= 1;
        }
        job
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request on its way to the WeChat lane.
struct Job {
    rq: tiny_http::Request,
    route: &'static Route,
    meta: Meta,
}

/// What is known of a request before its handler runs.
struct Meta {
    started: Instant,
    request_id: String,
    method: Method,
    path: String,
    query: String,
}

/// Counts a request as in flight for as long as it lives, panics included.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> InFlight<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RunningServer {
    /// Binds `app.config.server.listen` and starts both lanes.
    pub fn start(app: Arc<App>) -> std::io::Result<RunningServer> {
        let cfg = &app.config.server;
        let limits = tiny_http::Limits {
            read_timeout: Duration::from_secs(cfg.read_timeout_seconds),
            header_timeout: Duration::from_secs(cfg.header_timeout_seconds),
            max_connections: cfg.max_connections,
            ..tiny_http::Limits::default()
        };
        let http = tiny_http::Server::http_with_limits(cfg.listen.as_str(), limits)
            .map_err(|e| std::io::Error::other(format!("cannot listen on {}: {e}", cfg.listen)))?;
        let addr = http.server_addr().to_ip().ok_or_else(|| std::io::Error::other("the listener has no IP address"))?;
        let lane = WeChatLane {
            state: Mutex::new(LaneState { busy: 0, waiting: VecDeque::new() }),
            slots: cfg.wechat_workers,
        };
        let (workers, wechat_workers) = (cfg.workers, cfg.wechat_workers);
        let shared =
            Arc::new(Shared { http, app, in_flight: AtomicUsize::new(0), lane, stop_workers: AtomicBool::new(false) });
        let mut threads = Vec::with_capacity(workers + wechat_workers);
        for i in 0..workers + wechat_workers {
            let s = shared.clone();
            threads.push(spawn(format!("http-{i}"), move || worker(&s))?);
        }
        Ok(RunningServer { addr, shared, threads })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn app(&self) -> &Arc<App> {
        &self.shared.app
    }

    /// Stops taking new work (new requests get 503 `unavailable`), lets in-flight
    /// requests finish (at most [`DRAIN_LIMIT`]), then stops the workers and the listener.
    pub fn shutdown(self) {
        let shared = &self.shared;
        shared.app.begin_shutdown();
        let deadline = Instant::now() + DRAIN_LIMIT;
        while shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = shared.in_flight.load(Ordering::SeqCst);
        if left > 0 {
            log::warn!("shutdown: {left} request(s) still running after {DRAIN_LIMIT:?}; stopping anyway");
        }
        shared.stop_workers.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).stack_size(256 * 1024).spawn(f)
}

fn worker(s: &Shared) {
    while !s.stop_workers.load(Ordering::SeqCst) {
        match s.http.recv_timeout(POLL) {
            Ok(Some(rq)) => {
                // Our own code outside the handler should not panic either; if it does,
                // the worker must live on.
                if catch_unwind(AssertUnwindSafe(|| dispatch(s, rq))).is_err() {
                    log::error!("a request panicked outside its handler; the worker continues");
                }
            }
            Ok(None) => {}
            Err(e) => {
                log::warn!("accepting a request failed: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

fn dispatch(s: &Shared, rq: tiny_http::Request) {
    let meta = meta_of(&rq);
    if s.app.is_stopping() {
        return finish(s, rq, Resp::from_error(&ApiError::Unavailable("the server is shutting down")), "-", &meta);
    }
    let route = match router::find(meta.method, &meta.path) {
        Found::Route(r) => r,
        Found::NotFound => return finish(s, rq, Resp::from_error(&ApiError::NotFound), "unmatched", &meta),
        Found::MethodNotAllowed(allow) => {
            return finish(s, rq, Resp::from_error(&ApiError::MethodNotAllowed { allow }), "unmatched", &meta)
        }
    };
    if route.lane == Lane::Local {
        let _guard = InFlight::new(&s.in_flight);
        return run(s, rq, route, meta);
    }
    // Released by whichever thread runs the job, now or once a slot is free.
    s.in_flight.fetch_add(1, Ordering::SeqCst);
    match s.lane.admit(Job { rq, route, meta }) {
        Admit::Run(job) => run_in_lane(s, job),
        Admit::Queued => {}
        Admit::Full(job) => {
            s.in_flight.fetch_sub(1, Ordering::SeqCst);
            let busy = ApiError::Unavailable("every WeChat worker is busy; retry shortly");
            finish(s, job.rq, Resp::from_error(&busy), job.route.name, &job.meta);
        }
    }
}

/// Runs `job` with a slot of the WeChat lane held, then whatever queued for one meanwhile.
fn run_in_lane(s: &Shared, first: Job) {
    let mut next = Some(first);
    while let Some(job) = next {
        if catch_unwind(AssertUnwindSafe(|| run(s, job.rq, job.route, job.meta))).is_err() {
            log::error!("a request panicked outside its handler; the worker continues");
        }
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
        next = s.lane.next();
    }
}

fn meta_of(rq: &tiny_http::Request) -> Meta {
    let sent_id = rq.headers().iter().find(|h| h.field.equiv("X-Request-Id")).map(|h| h.value.as_str());
    let (path, query) = rq.url().split_once('?').unwrap_or((rq.url(), ""));
    Meta {
        started: Instant::now(),
        request_id: request_id(sent_id),
        method: Method::parse(rq.method().as_str()),
        path: path.to_string(),
        query: query.to_string(),
    }
}

/// Reads the body (bounded), runs the handler with panics caught, and answers.
fn run(s: &Shared, mut rq: tiny_http::Request, route: &'static Route, meta: Meta) {
    let body = if route.reads_body {
        match read_body(&mut rq, s.app.config.server.max_body_bytes) {
            Ok(b) => b,
            Err(e) => return finish(s, rq, Resp::from_error(&e), route.name, &meta),
        }
    } else {
        Vec::new()
    };
    let req = to_req(s, &rq, body, &meta);
    let resp = call_handler(&s.app, route, &req);
    finish(s, rq, resp, route.name, &meta);
}

/// Runs a handler with its panics caught: a bug answers 500 and the worker lives on.
pub fn call_handler(app: &App, route: &Route, req: &Req) -> Resp {
    match catch_unwind(AssertUnwindSafe(|| (route.handler)(app, req))) {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            // The operator needs the reason for a failure that is not the client's fault.
            if e.status() >= 500 {
                log::warn!("{} rid={}: {} {}: {}", route.name, req.request_id, e.status(), e.code(), e.message());
            }
            Resp::from_error(&e)
        }
        Err(_) => {
            log::error!("handler for {} panicked (request {})", route.name, req.request_id);
            Resp::from_error(&ApiError::Internal)
        }
    }
}

fn read_body(rq: &mut tiny_http::Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    if rq.body_length().is_some_and(|n| n > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let mut body = Vec::with_capacity(rq.body_length().unwrap_or(0).min(limit));
    // Chunked bodies declare no length: the take() is the real limit.
    rq.as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| ApiError::InvalidRequest("The request body could not be read (cut short or too slow).".into()))?;
    if body.len() > limit {
        return Err(ApiError::BodyTooLarge { limit });
    }
    Ok(body)
}

fn to_req(s: &Shared, rq: &tiny_http::Request, body: Vec<u8>, meta: &Meta) -> Req {
    let headers: Vec<(String, String)> = rq
        .headers()
        .iter()
        .map(|h| (h.field.as_str().as_str().to_ascii_lowercase(), h.value.as_str().to_string()))
        .collect();
    let peer = rq.remote_addr().map(|a| a.ip());
    let xff = headers.iter().find(|(k, _)| k == "x-forwarded-for").map(|(_, v)| v.as_str());
    Req {
        method: meta.method,
        path: meta.path.clone(),
        query: meta.query.clone(),
        client_ip: client_ip(peer, xff, s.app.config.server.trust_forwarded_for),
        peer_is_loopback: peer.is_some_and(|ip| ip.is_loopback() || ip.to_canonical().is_loopback()),
        request_id: meta.request_id.clone(),
        headers,
        body,
    }
}

/// Writes the response, the access log line and the metrics.
fn finish(s: &Shared, rq: tiny_http::Request, mut resp: Resp, route: &'static str, meta: &Meta) {
    let status = resp.status;
    let extra = std::mem::take(&mut resp.headers);
    let (content_type, bytes) = resp.into_bytes();
    let mut out = tiny_http::Response::from_data(bytes).with_status_code(status);
    let mut add = |name: &str, value: &str| {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            out.add_header(h);
        }
    };
    if let Some(ct) = content_type {
        add("Content-Type", ct);
    }
    add("X-Request-Id", &meta.request_id);
    for (name, value) in &extra {
        add(name, value);
    }
    if let Err(e) = rq.respond(out) {
        log::debug!("writing the response to request {} failed: {e}", meta.request_id);
    }
    let elapsed = meta.started.elapsed();
    s.app.metrics.request(route, status, elapsed);
    let level = if status >= 500 { log::Level::Warn } else { log::Level::Info };
    log::log!(
        level,
        "{} {} {status} {:.1}ms rid={}",
        method_name(meta.method),
        meta.path,
        elapsed.as_secs_f64() * 1000.0,
        meta.request_id
    );
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Other => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics(_: &App, _: &Req) -> Result<Resp, ApiError> {
        panic!("a bug")
    }

    #[test]
    fn a_panicking_handler_answers_500_internal() {
        let dir = std::env::temp_dir().join(format!("wxlogin-panic-{}", crate::secrets::random_id(6)));
        let text = "[[apps]]\nname = \"main\"\nappid = \"wx1234567890\"\nsecret = \"s\"\n";
        let config = crate::config::parse(text, &dir, &|_| None).unwrap();
        let app = App::open(config).unwrap();
        let route = Route { name: "/panic", lane: Lane::Local, reads_body: false, handler: panics };
        let resp = call_handler(&app, &route, &Req::new(Method::Get, "/panic"));
        assert_eq!(resp.status, 500);
        let (_, body) = resp.into_bytes();
        assert!(String::from_utf8(body).unwrap().contains("\"internal\""));
        // The thread that ran it is still here to run the next one.
        assert_eq!(call_handler(&app, &route, &Req::new(Method::Get, "/panic")).status, 500);
        let _ = std::fs::remove_dir_all(dir);
    }
}
