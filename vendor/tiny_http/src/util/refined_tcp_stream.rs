use std::collections::HashMap;
use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::connection::Connection;
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    // Both halves share the socket: one file descriptor per connection.
    Http(Arc<Connection>),
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    Https(SslStream),
}

impl Clone for Stream {
    fn clone(&self) -> Self {
        match self {
            Stream::Http(connection) => Stream::Http(connection.clone()),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => Stream::Https(ssl_stream.clone()),
        }
    }
}

impl From<Connection> for Stream {
    fn from(connection: Connection) -> Self {
        Stream::Http(Arc::new(connection))
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => true,
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(connection) => connection.shutdown(how),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(connection) => (&**connection).read(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(connection) => (&**connection).write(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(connection) => (&**connection).flush(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

/// One of the server's `max_connections` slots, held for as long as the connection is open
/// (both halves of the socket share it, so it is released when the socket is closed, even if
/// a request outlives the connection's thread). With it, the connection's place in its
/// address's count (`max_connections_per_ip`), if that is limited.
pub(crate) struct ConnectionSlot {
    active: Arc<AtomicUsize>,
    _per_ip: Option<PerIpTicket>,
}

impl ConnectionSlot {
    pub(crate) fn new(active: Arc<AtomicUsize>, per_ip: Option<PerIpTicket>) -> ConnectionSlot {
        active.fetch_add(1, Ordering::AcqRel);
        ConnectionSlot {
            active,
            _per_ip: per_ip,
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open connections per client address, for `max_connections_per_ip`: one map entry per
/// address with connections open (so at most `max_connections` entries), O(1) per connection
/// under one mutex. IPv6 addresses count per /64, the smallest block a client usually gets:
/// one host can use any address of it.
pub(crate) struct PerIpConnections {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place in `PerIpConnections`, given back when dropped.
pub(crate) struct PerIpTicket {
    table: Arc<PerIpConnections>,
    key: IpAddr,
}

impl PerIpConnections {
    pub(crate) fn new(max: usize) -> Arc<PerIpConnections> {
        Arc::new(PerIpConnections {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// The key `ip` counts under: IPv4 (also when mapped into IPv6) as is, IPv6 its /64.
    fn key(ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
            v4 => v4,
        }
    }

    /// Counts one more connection from `ip`, or `None` if it has `max` open already.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<PerIpTicket> {
        let key = Self::key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PerIpTicket {
            table: Arc::clone(self),
            key,
        })
    }

    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(&Self::key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for PerIpTicket {
    fn drop(&mut self) {
        let mut counts = self
            .table
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A deadline for the current phase of reading from a connection (a request head, a body).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deadline {
    /// Only the per-read timeout applies.
    None,
    /// Starts at the next read from the socket (so time spent waiting in the server's queue,
    /// before anyone reads, does not count).
    After(Duration),
    /// Reads fail with `TimedOut` once this instant has passed.
    At(Instant),
}

/// Timeouts of the read half of a plain (non-TLS) connection.
///
/// The socket's `SO_RCVTIMEO` is set to a short `tick`; a read that times out is retried until
/// the per-read timeout or the phase deadline has passed. This enforces a *total* deadline
/// (e.g. for a request head sent one byte at a time) without a `setsockopt` call per read.
pub(crate) struct ReadTimer {
    read_timeout: Duration,
    tick: Duration,
    deadline: Deadline,
}

impl ReadTimer {
    pub(crate) fn new(read_timeout: Duration, tick: Duration) -> ReadTimer {
        ReadTimer {
            read_timeout,
            tick,
            deadline: Deadline::None,
        }
    }
}

fn is_timeout(err: &IoError) -> bool {
    // SO_RCVTIMEO expiring is reported as EAGAIN (WouldBlock) on Unix, as TimedOut on Windows.
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

pub struct RefinedTcpStream {
    stream: Stream,
    close_read: bool,
    close_write: bool,
    timer: Option<ReadTimer>,
    _slot: Option<Arc<ConnectionSlot>>,
}

impl RefinedTcpStream {
    /// Splits a stream into its read half and its write half.
    ///
    /// `timer` (read half only) must match the `SO_RCVTIMEO` already set on the socket.
    pub(crate) fn new<S>(
        stream: S,
        timer: Option<ReadTimer>,
        slot: Option<ConnectionSlot>,
    ) -> (RefinedTcpStream, RefinedTcpStream)
    where
        S: Into<Stream>,
    {
        let stream: Stream = stream.into();
        let slot = slot.map(Arc::new);

        let (read, write) = (stream.clone(), stream);

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            timer,
            _slot: slot.clone(),
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            timer: None,
            _slot: slot,
        };

        (read, write)
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    /// Sets the deadline for the reads to come (no effect without a timer).
    pub(crate) fn set_deadline(&mut self, deadline: Deadline) {
        if let Some(timer) = self.timer.as_mut() {
            timer.deadline = deadline;
        }
    }

    fn timed_read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let timer = match self.timer.as_mut() {
            Some(timer) => timer,
            None => return self.stream.read(buf),
        };
        if let Deadline::After(duration) = timer.deadline {
            timer.deadline = match Instant::now().checked_add(duration) {
                Some(at) => Deadline::At(at),
                None => Deadline::None,
            };
        }
        let mut blocked_since: Option<Instant> = None;
        loop {
            if let Deadline::At(at) = timer.deadline {
                if Instant::now() >= at {
                    return Err(IoError::new(ErrorKind::TimedOut, "deadline exceeded"));
                }
            }
            match self.stream.read(buf) {
                Err(ref e) if is_timeout(e) => {
                    // One tick passed without data; the read began about a tick before this.
                    let now = Instant::now();
                    let since = *blocked_since
                        .get_or_insert_with(|| now.checked_sub(timer.tick).unwrap_or(now));
                    if now.duration_since(since) >= timer.read_timeout {
                        return Err(IoError::new(ErrorKind::TimedOut, "read timed out"));
                    }
                }
                result => return result,
            }
        }
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.timed_read(buf)
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod per_ip_tests {
    use super::PerIpConnections;
    use std::net::IpAddr;

    #[test]
    fn counts_per_address_and_gives_back_on_drop() {
        let table = PerIpConnections::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = table.try_take(a).unwrap();
        let _second = table.try_take(a).unwrap();
        assert!(table.try_take(a).is_none());
        // the same address mapped into IPv6 is the same client
        assert!(table.try_take("::ffff:10.0.0.1".parse().unwrap()).is_none());
        assert!(table.try_take(b).is_some());
        drop(first);
        assert_eq!(table.open(a), 1);
        assert!(table.try_take(a).is_some());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let table = PerIpConnections::new(1);
        let _held = table.try_take("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(table
            .try_take("2001:db8:1:2:ffff::9".parse().unwrap())
            .is_none());
        assert!(table.try_take("2001:db8:1:3::1".parse().unwrap()).is_some());
    }
}
