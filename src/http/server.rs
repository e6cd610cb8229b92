//! The listener, the two worker lanes, panic isolation and graceful shutdown.
//!
//! Local workers pull requests from tiny_http and answer everything that stays on this
//! machine. A request whose route may wait on WeChat is handed to the WeChat lane
//! through a bounded queue; when the queue is full it is answered 503 at once, so a
//! hung WeChat costs at most the WeChat lane, never the session checks.

use std::collections::VecDeque;
use std::io::{Cursor, Read};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::access_log::{self, AccessLog};
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
    lane: LaneQueue,
    stop_workers: AtomicBool,
    access_log: AccessLog,
}

/// The WeChat lane's bounded queue. A plain deque under a mutex, with one condvar: a
/// job wakes exactly one idle worker. (std's channel behind a shared `Mutex<Receiver>`
/// woke two: the worker waiting in `recv` and, once it let go, the next one in line for
/// the mutex.)
struct LaneQueue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
    capacity: usize,
}

impl LaneQueue {
    /// Queues `job`, or gives it back when the queue is full.
    fn push(&self, job: Job) -> Result<(), Box<Job>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.len() >= self.capacity {
            return Err(Box::new(job));
        }
        jobs.push_back(job);
        drop(jobs);
        self.ready.notify_one();
        Ok(())
    }

    /// The next job, or None after [`POLL`] without one.
    fn pop(&self) -> Option<Job> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let (mut jobs, _) =
            self.ready.wait_timeout_while(jobs, POLL, |j| j.is_empty()).unwrap_or_else(|p| p.into_inner());
        jobs.pop_front()
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
            // Behind a proxy every connection comes from the proxy: the cap would cap it,
            // not a client. The proxy's own limit (nginx `limit_conn`) is the place there.
            max_connections_per_ip: if cfg.trust_forwarded_for { 0 } else { cfg.max_connections_per_ip },
            // Every body a handler may read arrives whole before a worker sees the request,
            // so no worker ever waits on a client; larger ones are never read (413, close).
            preread_body_bytes: cfg.max_body_bytes,
            ..tiny_http::Limits::default()
        };
        let http = tiny_http::Server::http_with_limits(cfg.listen.as_str(), limits)
            .map_err(|e| std::io::Error::other(format!("cannot listen on {}: {e}", cfg.listen)))?;
        let addr = http.server_addr().to_ip().ok_or_else(|| std::io::Error::other("the listener has no IP address"))?;
        let lane = LaneQueue { jobs: Mutex::new(VecDeque::new()), ready: Condvar::new(), capacity: cfg.wechat_workers };
        let (workers, wechat_workers) = (cfg.local_workers(), cfg.wechat_workers);
        let access_log = AccessLog::start(Box::new(std::io::stderr()))?;
        let shared = Arc::new(Shared {
            http,
            app,
            in_flight: AtomicUsize::new(0),
            lane,
            stop_workers: AtomicBool::new(false),
            access_log,
        });
        let mut threads = Vec::with_capacity(workers + wechat_workers);
        for i in 0..workers {
            let s = shared.clone();
            threads.push(spawn(format!("http-{i}"), move || local_worker(&s))?);
        }
        for i in 0..wechat_workers {
            let s = shared.clone();
            threads.push(spawn(format!("wechat-{i}"), move || wechat_worker(&s))?);
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

fn local_worker(s: &Shared) {
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

fn wechat_worker(s: &Shared) {
    while !s.stop_workers.load(Ordering::SeqCst) {
        if let Some(job) = s.lane.pop() {
            if catch_unwind(AssertUnwindSafe(|| run(s, job.rq, job.route, job.meta))).is_err() {
                log::error!("a request panicked outside its handler; the worker continues");
            }
            s.in_flight.fetch_sub(1, Ordering::SeqCst);
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
    // The WeChat lane's worker releases this count when it is done with the job.
    s.in_flight.fetch_add(1, Ordering::SeqCst);
    if let Err(job) = s.lane.push(Job { rq, route, meta }) {
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
        let busy = ApiError::Unavailable("every WeChat worker is busy; retry shortly");
        finish(s, job.rq, Resp::from_error(&busy), job.route.name, &job.meta);
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
fn finish(s: &Shared, rq: tiny_http::Request, resp: Resp, route: &'static str, meta: &Meta) {
    let (status, out) = match to_tiny(resp, &meta.request_id) {
        Ok(built) => built,
        // Fail closed: an identity header (`X-OpenId` of /v1/auth) left out of a 200 could
        // pass for "no identity" at the proxy; a 500 cannot.
        Err(name) => {
            log::error!("rid={}: header {name} has characters no header may carry; answering 500", meta.request_id);
            let internal = Resp::from_error(&ApiError::Internal);
            let status = internal.status;
            let (_, bytes) = internal.into_bytes();
            (status, tiny_http::Response::from_data(bytes).with_status_code(status))
        }
    };
    if let Err(e) = rq.respond(out) {
        log::debug!("writing the response to request {} failed: {e}", meta.request_id);
    }
    let elapsed = meta.started.elapsed();
    s.app.metrics.request(route, status, elapsed);
    let level = if status >= 500 { log::Level::Warn } else { log::Level::Info };
    if AccessLog::enabled(level) {
        s.access_log.push(access_log::Line {
            at: std::time::SystemTime::now(),
            level,
            method: method_name(meta.method),
            path: meta.path.clone(),
            status,
            elapsed,
            request_id: meta.request_id.clone(),
        });
    }
}

type TinyResponse = tiny_http::Response<Cursor<Vec<u8>>>;

/// The response as tiny_http's, with its status; or the name of a header whose value
/// cannot be sent (control characters from upstream data that slipped through: they would
/// split the response, and the vendored tiny_http refuses them too).
fn to_tiny(mut resp: Resp, request_id: &str) -> Result<(u16, TinyResponse), String> {
    let status = resp.status;
    let extra = std::mem::take(&mut resp.headers);
    let (content_type, bytes) = resp.into_bytes();
    let mut out = tiny_http::Response::from_data(bytes).with_status_code(status);
    let fixed = content_type.map(|ct| ("Content-Type", ct)).into_iter().chain([("X-Request-Id", request_id)]);
    let extra = extra.iter().map(|(name, value)| (*name, value.as_str()));
    for (name, value) in fixed.chain(extra) {
        let header = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).map_err(|()| name.to_string())?;
        out.add_header(header);
    }
    Ok((status, out))
}

pub(super) fn method_name(m: Method) -> &'static str {
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
    fn a_header_value_with_control_characters_is_refused_by_name() {
        let resp = Resp::empty(200).header("X-User-Id", "1").header("X-OpenId", "o\r\nSet-Cookie: x=1");
        assert_eq!(to_tiny(resp, "rid").err().as_deref(), Some("X-OpenId"));
        let (status, out) = to_tiny(Resp::empty(200).header("X-OpenId", "o_Ab-9"), "rid").unwrap();
        assert_eq!(status, 200);
        assert!(out.headers().iter().any(|h| h.field.equiv("X-OpenId") && h.value.as_str() == "o_Ab-9"));
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
