//! The access log: one line per request, formatted and written by a thread of its own.
//!
//! Through env_logger each line cost a worker a format and a `write(2)` to stderr under
//! its lock, about 14% of a session check. Here a worker only pushes a small record
//! onto a list; the writer thread takes the whole list every [`TICK`], formats it into
//! one buffer and writes it with one call. A full list drops lines (counted, and said
//! in the log) rather than make a worker wait; a clean stop writes every line queued.
//!
//! Lines look like env_logger's (`[time LEVEL target] message`), under the target
//! [`TARGET`], so `RUST_LOG` turns them on and off as before
//! (`RUST_LOG=info,wxlogin::access=off` keeps the rest of the log).

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The log target of access lines.
pub const TARGET: &str = "wxlogin::access";
/// How often the writer wakes to write what has queued.
const TICK: Duration = Duration::from_millis(50);
/// Lines queued at most between two writes (about 100 bytes each); beyond, lines are
/// dropped. At [`TICK`] that is over 1.3 million lines a second.
const MAX_QUEUED: usize = 65_536;

/// One request, as the access log needs it; formatted later, on the writer thread.
pub struct Line {
    pub at: SystemTime,
    pub level: log::Level,
    pub method: &'static str,
    pub path: String,
    pub status: u16,
    pub elapsed: Duration,
    pub request_id: String,
}

/// The handle workers push lines to; dropping it writes what is queued and stops the thread.
pub struct AccessLog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Vec<Line>>,
    stop: AtomicBool,
    wake: Condvar,
    dropped: AtomicU64,
}

impl AccessLog {
    /// Starts the writer thread. `out` is stderr in the server, a buffer in tests.
    pub fn start(out: Box<dyn std::io::Write + Send>) -> std::io::Result<AccessLog> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new().name("access-log".into()).spawn(move || writer(&s, out))?;
        Ok(AccessLog { shared, thread: Some(thread) })
    }

    /// Whether lines at `level` would be written at all: the check a worker makes before
    /// it builds a [`Line`], so that a server logging only errors pays nothing.
    pub fn enabled(level: log::Level) -> bool {
        log::log_enabled!(target: TARGET, level)
    }

    /// Queues a line; never waits for the writer, never blocks on stderr.
    pub fn push(&self, line: Line) {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() >= MAX_QUEUED {
            drop(queue);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.push(line);
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer(s: &Shared, mut out: Box<dyn std::io::Write + Send>) {
    let mut text = String::new();
    let mut taken = Vec::new();
    loop {
        let stopping = {
            let queue = s.queue.lock().unwrap_or_else(|p| p.into_inner());
            let (mut queue, _) = s
                .wake
                .wait_timeout_while(queue, TICK, |_| !s.stop.load(Ordering::SeqCst))
                .unwrap_or_else(|p| p.into_inner());
            std::mem::swap(&mut *queue, &mut taken);
            s.stop.load(Ordering::SeqCst)
        };
        text.clear();
        for line in taken.drain(..) {
            format_line(&mut text, &line);
        }
        let dropped = s.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                text,
                "[{} WARN  {TARGET}] {dropped} access line(s) dropped: the log could not keep up",
                Rfc3339(SystemTime::now())
            );
        }
        if !text.is_empty() {
            // A failing stderr must not stop the server; there is nowhere to report it.
            let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
        }
        if stopping {
            return;
        }
    }
}

/// `[2026-12-02T16:43:48.123Z INFO  wxlogin::access] GET /v1/session 200 0.3ms rid=...`
fn format_line(text: &mut String, l: &Line) {
    let _ = writeln!(
        text,
        "[{} {:<5} {TARGET}] {} {} {} {:.1}ms rid={}",
        Rfc3339(l.at),
        l.level,
        l.method,
        l.path,
        l.status,
        l.elapsed.as_secs_f64() * 1000.0,
        l.request_id
    );
}

/// A UTC time as env_logger prints it with millisecond precision.
struct Rfc3339(SystemTime);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (y, m, d) = crate::civil::civil_from_days((secs / 86_400) as i64);
        let s = secs % 86_400;
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s / 60 % 60, s % 60, since.subsec_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back after the log is dropped.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(i: usize) -> Line {
        Line {
            at: UNIX_EPOCH + Duration::from_millis(1_764_693_828_123),
            level: log::Level::Info,
            method: "GET",
            path: format!("/v1/session/{i}"),
            status: 200,
            elapsed: Duration::from_micros(310),
            request_id: format!("rid{i}"),
        }
    }

    #[test]
    fn dates_match_the_calendar() {
        assert_eq!(
            Rfc3339(UNIX_EPOCH + Duration::from_millis(1_764_693_828_123)).to_string(),
            "2025-12-02T16:43:48.123Z"
        );
    }

    #[test]
    fn a_line_reads_as_env_logger_would_print_it() {
        let mut text = String::new();
        format_line(&mut text, &line(7));
        assert_eq!(text, "[2025-12-02T16:43:48.123Z INFO  wxlogin::access] GET /v1/session/7 200 0.3ms rid=rid7\n");
    }

    #[test]
    fn every_queued_line_is_written_in_order_by_a_clean_stop() {
        let sink = Sink::default();
        let log = AccessLog::start(Box::new(sink.clone())).unwrap();
        for i in 0..10_000 {
            log.push(line(i));
        }
        drop(log);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let ids: Vec<&str> = text.lines().map(|l| l.rsplit("rid=").next().unwrap()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().enumerate().all(|(i, id)| *id == format!("rid{i}")));
    }
}
