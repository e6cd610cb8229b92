use std::time::Duration;

/// Bounds on what one client can make the server do.
///
/// Every field has a default (see [`Limits::default`]); set only those you need:
///
/// ```no_run
/// use std::time::Duration;
/// let limits = tiny_http::Limits {
///     header_timeout: Duration::from_secs(5),
///     ..tiny_http::Limits::default()
/// };
/// let server = tiny_http::Server::http_with_limits("127.0.0.1:8080", limits).unwrap();
/// ```
///
/// Durations shorter than one millisecond are taken as one millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest one read from a client may wait for data (default 30 s). It also bounds,
    /// in total, the reading of one request body, counted from the first read of it (so a
    /// client sending its body one byte at a time is cut off), and the time an idle
    /// keep-alive connection is kept open.
    ///
    /// A request whose body times out gets `408 Request Timeout` if it was still being read
    /// by the server, and the connection is closed.
    pub read_timeout: Duration,

    /// The longest one write to a client may block (default 30 s); a response that cannot be
    /// written in time makes `Request::respond` return an error.
    pub write_timeout: Duration,

    /// The time allowed for receiving a whole request head (request line and headers),
    /// counted from its first byte, or from the connection's acceptance for its first
    /// request (default 10 s). A client too slow gets `408 Request Timeout` and is
    /// disconnected.
    pub header_timeout: Duration,

    /// The largest request head (request line and headers, line ends included) accepted
    /// (default 16 KiB). Longer heads get `414 URI Too Long` (when the request line alone is
    /// too long) or `431 Request Header Fields Too Large`, and the connection is closed.
    pub max_head_bytes: usize,

    /// The most header fields accepted in one request (default 100). More get
    /// `431 Request Header Fields Too Large`, and the connection is closed.
    pub max_headers: usize,

    /// The most connections open at once (default 1024). Connections beyond it get a
    /// `503 Service Unavailable` and are closed at once. A connection counts until its
    /// socket is closed, including while its last request is being answered.
    pub max_connections: usize,

    /// The most connections open at once from one client IP address (default 0: no limit).
    /// Connections beyond it get the same `503 Service Unavailable` as past
    /// `max_connections`. Behind a reverse proxy every connection comes from the proxy's
    /// address: leave it at 0 there and limit clients in the proxy.
    pub max_connections_per_ip: usize,

    /// The largest request body read (default 16 KiB). A body up to this size (declared by
    /// `Content-Length`, or chunked) is read whole by the connection's own thread, under the
    /// body deadline, before the request is handed out by `Server::recv`, so that the
    /// threads answering requests never wait on a client (`100 Continue` is sent by the
    /// connection's thread too). A late body gets `408 Request Timeout`. A larger body is
    /// never read: `Request::body_length` gives its declared length (a chunked one shows
    /// as one byte more than this limit), reading it fails, and the connection is closed
    /// after the response. Each connection holds at most this much body in memory.
    pub preread_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_connections: 1024,
            max_connections_per_ip: 0,
            preread_body_bytes: 16 * 1024,
        }
    }
}

impl Limits {
    /// The limits with durations raised to at least one millisecond (a zero timeout means
    /// "none" to the OS, and is rejected by `set_read_timeout`).
    pub(crate) fn sanitized(mut self) -> Limits {
        let min = Duration::from_millis(1);
        self.read_timeout = self.read_timeout.max(min);
        self.write_timeout = self.write_timeout.max(min);
        self.header_timeout = self.header_timeout.max(min);
        self
    }

    /// The socket read timeout actually set: reads wake up at least this often to check the
    /// per-read timeout and the head and body deadlines, which are therefore enforced within
    /// about this much.
    pub(crate) fn read_tick(&self) -> Duration {
        let shortest = self.read_timeout.min(self.header_timeout);
        (shortest / 4).clamp(Duration::from_millis(1), Duration::from_secs(1))
    }
}
