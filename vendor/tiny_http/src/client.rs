use ascii::AsciiString;

use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::{is_token_char, HTTPVersion, Header, HeaderField, Method};
use crate::request::{BodyOptions, RequestCreationError};
use crate::util::{Deadline, RefinedTcpStream};
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{Limits, Request, Response, StatusCode};

/// The longest the rest of a body too large to be read is discarded before the connection
/// is closed (`discard_rest`).
const LINGER: Duration = Duration::from_secs(2);

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: Option<SocketAddr>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // set to true when the last request's body was too large to be read: what the client
    // still sends of it is discarded for a while before the connection is closed
    linger: bool,

    // true if the connection goes through SSL
    secure: bool,

    limits: Limits,

    // when the connection was accepted (the first request's head is due within
    // `header_timeout` of it)
    accepted_at: Instant,

    // true until the first request has been read
    first_request: bool,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    /// Answer with this status (in this HTTP version), then close the connection: after a
    /// malformed or refused head we cannot know where the next request would start.
    Reject(StatusCode, HTTPVersion),
    /// Close the connection without answering (the client left, timed out while idle, or
    /// the previous request left the stream out of step).
    Close,
}

/// Error while reading one line of a request head.
enum LineError {
    /// The head is longer than `max_head_bytes`.
    TooLong,
    TimedOut,
    Closed,
}

fn reject(code: u16, version: &HTTPVersion) -> ReadError {
    ReadError::Reject(StatusCode(code), version.clone())
}

/// Reads a line of the request head, ending in LF (a CR before it is dropped), consuming at
/// most `*budget` bytes (line end included) and deducting them.
fn read_line<R: BufRead>(reader: &mut R, budget: &mut usize) -> Result<Vec<u8>, LineError> {
    let mut line = Vec::new();
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(ref e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(ref e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                return Err(LineError::TimedOut)
            }
            Err(_) => return Err(LineError::Closed),
        };
        if available.is_empty() {
            return Err(LineError::Closed);
        }
        let (len, complete) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if len > *budget {
            return Err(LineError::TooLong);
        }
        *budget -= len;
        line.extend_from_slice(&available[..len]);
        reader.consume(len);
        if complete {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Option<HTTPVersion> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return None,
    };

    Some(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &[u8]) -> Option<(Method, String, HTTPVersion)> {
    // visible ASCII and spaces only: no control characters, no raw non-ASCII bytes
    if !line.iter().all(|&b| (b' '..=b'~').contains(&b)) {
        return None;
    }
    let line = std::str::from_utf8(line).ok()?.trim();
    let mut parts = line.split(' ');

    let method = parts.next()?;
    let path = parts.next()?;
    let version = parse_http_version(parts.next()?)?;
    if parts.next().is_some()
        || method.is_empty()
        || !method.bytes().all(is_token_char)
        || path.is_empty()
    {
        return None;
    }

    Some((method.parse().ok()?, path.to_owned(), version))
}

/// Parses a header line ("Name: value").
fn parse_header(line: &[u8]) -> Option<Header> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
        return None;
    }
    // field-value: visible ASCII, spaces and tabs (tiny_http keeps values as ASCII strings,
    // so `obs-text` bytes are refused too)
    if !value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return None;
    }
    let value = {
        let start = value
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(value.len());
        let end = value
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(start, |i| i + 1);
        &value[start..end]
    };
    Some(Header {
        field: HeaderField::from_bytes(name.to_vec()).ok()?,
        value: AsciiString::from_ascii(value.to_vec()).ok()?,
    })
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        read_socket: RefinedTcpStream,
        remote_addr: Option<SocketAddr>,
        limits: Limits,
    ) -> ClientConnection {
        let secure = read_socket.secure();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().expect("SequentialReaderBuilder never ends");

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            linger: false,
            secure,
            limits,
            accepted_at: Instant::now(),
            first_request: true,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the request head, bounded in size (`max_head_bytes`, `max_headers`) and time
    /// (`header_timeout`), and leaves the stream ready for reading the body.
    fn read_head(&mut self) -> Result<(Method, String, HTTPVersion, Vec<Header>), ReadError> {
        let limits = self.limits;
        let v11 = HTTPVersion(1, 1);

        // Wait until the previous request's body has been read (always by this thread, in
        // `new_request`, so this does not wait).
        let reader = self
            .next_header_source
            .inner_mut()
            .map_err(|_| ReadError::Close)?;

        // The first request is due within `header_timeout` of the connection's acceptance; a
        // keep-alive connection may then stay idle for a read timeout before the next one.
        let idle_deadline = if self.first_request {
            self.first_request = false;
            self.accepted_at
                .checked_add(limits.header_timeout)
                .map_or(Deadline::None, Deadline::At)
        } else {
            Deadline::None
        };
        reader.get_mut().set_deadline(idle_deadline);
        match reader.fill_buf() {
            Ok(available) if !available.is_empty() => (),
            // closed, or idle for too long: nothing to answer
            _ => return Err(ReadError::Close),
        }
        if let Deadline::None = idle_deadline {
            if let Some(at) = Instant::now().checked_add(limits.header_timeout) {
                reader.get_mut().set_deadline(Deadline::At(at));
            }
        }

        let mut budget = limits.max_head_bytes;
        let line_error = |e: LineError, in_request_line: bool, version: &HTTPVersion| match e {
            LineError::TooLong if in_request_line => reject(414, version),
            LineError::TooLong => reject(431, version),
            LineError::TimedOut => reject(408, version),
            LineError::Closed => ReadError::Close,
        };

        // the request line (RFC 9112 allows ignoring empty lines before it)
        let line = loop {
            let line = read_line(reader, &mut budget).map_err(|e| line_error(e, true, &v11))?;
            if !line.is_empty() {
                break line;
            }
        };
        let (method, path, version) = parse_request_line(&line).ok_or_else(|| reject(400, &v11))?;
        if version > (1, 1) {
            return Err(reject(505, &v11));
        }

        // the headers
        let mut headers = Vec::new();
        loop {
            let line =
                read_line(reader, &mut budget).map_err(|e| line_error(e, false, &version))?;
            if line.is_empty() {
                break;
            }
            if headers.len() >= limits.max_headers {
                return Err(reject(431, &version));
            }
            headers.push(parse_header(&line).ok_or_else(|| reject(400, &version))?);
        }

        // The body (if any) must arrive within a read timeout of its first read, whatever
        // the headers say (`Connection: upgrade` included: this server never upgrades).
        reader
            .get_mut()
            .set_deadline(Deadline::After(limits.read_timeout));

        Ok((method, path, version, headers))
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        let (method, path, version, headers) = self.read_head()?;

        // building the writer for the request
        let writer = self
            .sink
            .next()
            .expect("SequentialWriterBuilder never ends");

        // follow-up for next potential request
        let mut data_source = self
            .source
            .next()
            .expect("SequentialReaderBuilder never ends");
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            self.remote_addr,
            data_source,
            writer,
            BodyOptions {
                preread_limit: self.limits.preread_body_bytes,
            },
        )
        .map(|new| {
            if new.close_after {
                self.no_more_requests = true;
                self.linger = true;
            }
            new.request
        })
        .map_err(|e| match e {
            RequestCreationError::CreationIoError(e) => match e.kind() {
                ErrorKind::TimedOut | ErrorKind::WouldBlock => reject(408, &version),
                ErrorKind::InvalidData => reject(400, &version),
                _ => ReadError::Close,
            },
            RequestCreationError::ExpectationFailed => reject(417, &version),
            RequestCreationError::BadRequest => reject(400, &version),
            RequestCreationError::NotImplemented => reject(501, &version),
        })
    }
}

impl ClientConnection {
    /// A lingering close, after a body too large to be read: discards what the client still
    /// sends, at most `preread_body_bytes` of it and for at most `LINGER` (or the read
    /// timeout, if shorter), while the response is written. A client still sending its
    /// body then reads the response rather than a reset (closing a socket with unread data
    /// sends a RST). Runs on the connection's own thread: no worker waits for it.
    fn discard_rest(&mut self) {
        let limit = self.limits.preread_body_bytes;
        let wait = self.limits.read_timeout.min(LINGER);
        let reader = match self.next_header_source.inner_mut() {
            Ok(reader) => reader,
            Err(_) => return,
        };
        if let Some(at) = Instant::now().checked_add(wait) {
            reader.get_mut().set_deadline(Deadline::At(at));
        }
        let mut buf = [0u8; 4096];
        let mut discarded = 0;
        while discarded < limit {
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(read) => discarded += read,
                Err(ref e) if e.kind() == ErrorKind::Interrupted => (),
                Err(_) => return,
            }
        }
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            if std::mem::take(&mut self.linger) {
                self.discard_rest();
            }
            return None;
        }

        let rq = match self.read() {
            Ok(rq) => rq,
            Err(ReadError::Reject(status, version)) => {
                self.no_more_requests = true;
                let mut writer = self
                    .sink
                    .next()
                    .expect("SequentialWriterBuilder never ends");
                let response = Response::new_empty(status);
                if response
                    .raw_print(&mut writer, version, &[], true, None)
                    .is_ok()
                {
                    writer.flush().ok();
                }
                return None;
            }
            Err(ReadError::Close) => {
                self.no_more_requests = true;
                return None;
            }
        };

        // updating the status of the connection
        let connection_header = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str());

        let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

        match lowercase {
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
            Some(ref val)
                if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
            {
                self.no_more_requests = true
            }
            None if *rq.http_version() <= HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };

        // returning the request
        Some(rq)
    }
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line(b"GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line(b"GET /hello").is_none());
        assert!(super::parse_request_line(b"qsd qsd qsd").is_none());
        assert!(super::parse_request_line(b"GET /\xff HTTP/1.1").is_none());
        assert!(super::parse_request_line(b"GET /a\x00 HTTP/1.1").is_none());
        assert!(super::parse_request_line(b"GET / HTTP/1.1 x").is_none());
        assert!(super::parse_request_line(b"G(T / HTTP/1.1").is_none());
    }

    #[test]
    fn test_parse_header() {
        let h = super::parse_header(b"Content-Type:  text/plain \t").unwrap();
        assert!(h.field.equiv("content-type"));
        assert_eq!(h.value.as_str(), "text/plain");
        assert_eq!(super::parse_header(b"Empty:").unwrap().value.as_str(), "");
        assert!(super::parse_header(b"No colon").is_none());
        assert!(super::parse_header(b"Bad Name: x").is_none());
        assert!(super::parse_header(b": x").is_none());
        assert!(super::parse_header(b"X: caf\xc3\xa9").is_none());
        assert!(super::parse_header(b"X: a\rb").is_none());
    }

    #[test]
    fn test_read_line_budget() {
        let mut input = &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..];
        let mut budget = 100;
        assert_eq!(
            super::read_line(&mut input, &mut budget).ok().unwrap(),
            b"GET / HTTP/1.1"
        );
        assert_eq!(budget, 84);
        let mut budget = 3;
        assert!(matches!(
            super::read_line(&mut input, &mut budget),
            Err(super::LineError::TooLong)
        ));
    }
}
