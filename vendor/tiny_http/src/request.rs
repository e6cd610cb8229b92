use std::io::Error as IoError;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use std::convert::TryFrom;
use std::fmt;
use std::net::SocketAddr;

use std::sync::mpsc::Sender;

use crate::util::ChunkedDecoder;
use crate::{HTTPVersion, Header, Method, Response, StatusCode};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), this is
/// called *requests pipelining*. In this patched tiny_http, a connection's next request is
/// handed out (by `Server::recv`) only once the previous one has been answered (`respond`,
/// drop, or drop of the writer from `into_writer`): one client cannot fill the queue, or
/// occupy several of your threads with responses that must wait for each other. So do not
/// wait for another request while holding an unanswered one.
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<Box<dyn Write + Send + 'static>>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // If Some, a message must be sent after responding
    notify_when_responded: Option<Sender<()>>,
}

struct NotifyOnDrop<R> {
    sender: Sender<()>,
    inner: R,
}

impl<R: Read> Read for NotifyOnDrop<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}
impl<R: Write> Write for NotifyOnDrop<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
impl<R> Drop for NotifyOnDrop<R> {
    fn drop(&mut self) {
        // the connection may be gone already
        self.sender.send(()).ok();
    }
}

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,

    /// The body's framing is invalid or ambiguous (bad or conflicting `Content-Length`,
    /// `chunked` applied twice or not alone, `Transfer-Encoding` with `Content-Length`):
    /// the request must be refused with 400.
    BadRequest,

    /// The body is sent with a transfer coding other than `chunked`: the request must be
    /// refused with 501 (RFC 9112 section 6.1).
    NotImplemented,

    /// Error while reading data from the socket during the creation of the `Request`.
    CreationIoError(IoError),
}

impl From<IoError> for RequestCreationError {
    fn from(err: IoError) -> RequestCreationError {
        RequestCreationError::CreationIoError(err)
    }
}

/// How `new_request` treats the body.
pub(crate) struct BodyOptions {
    /// Bodies up to this size are read before the request is built (`Limits::preread_body_bytes`).
    pub(crate) preread_limit: usize,
}

/// How the length of a request body is known (RFC 9112 section 6.3).
enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// Finds the body's framing from the headers.
fn body_framing(headers: &[Header]) -> Result<BodyFraming, RequestCreationError> {
    let mut transfer_encodings = headers
        .iter()
        .filter(|h| h.field.equiv("Transfer-Encoding"));
    let mut content_lengths = headers.iter().filter(|h| h.field.equiv("Content-Length"));

    if let Some(te) = transfer_encodings.next() {
        // Exactly one `Transfer-Encoding: chunked` (any case; the parser trimmed the spaces
        // around the value). Anything else is refused rather than interpreted: proxies in
        // front may read `gzip, chunked`, `chunked, chunked` or a repeated header otherwise
        // than we would (request smuggling). A Content-Length as well: the same.
        if transfer_encodings.next().is_some() || content_lengths.next().is_some() {
            return Err(RequestCreationError::BadRequest);
        }
        let value = te.value.as_str();
        if value.eq_ignore_ascii_case("chunked") {
            return Ok(BodyFraming::Chunked);
        }
        // Only `chunked` in the list, yet not just once: malformed. A coding we do not
        // implement (gzip...): 501.
        let only_chunked = value
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .all(|c| c.eq_ignore_ascii_case("chunked"));
        return Err(if only_chunked {
            RequestCreationError::BadRequest
        } else {
            RequestCreationError::NotImplemented
        });
    }

    let mut length = None;
    for h in content_lengths {
        let value = h.value.as_str();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RequestCreationError::BadRequest);
        }
        let value: u64 = value
            .parse()
            .map_err(|_| RequestCreationError::BadRequest)?;
        if length.map_or(false, |l| l != value) {
            return Err(RequestCreationError::BadRequest);
        }
        length = Some(value);
    }
    Ok(match length {
        Some(0) | None => BodyFraming::None,
        Some(l) => BodyFraming::Length(l),
    })
}

/// Reads up to `limit` bytes (less at the end of the stream).
fn read_up_to<R: Read>(reader: &mut R, limit: u64) -> io::Result<Vec<u8>> {
    let mut buffer = Vec::with_capacity(limit.min(4096) as usize);
    reader.take(limit).read_to_end(&mut buffer)?;
    Ok(buffer)
}

/// What the application reads after the pre-read start of a body over the pre-read limit:
/// an error, at once. The rest of such a body is never read (the connection is closed after
/// the response), so no thread of the application ever waits on the client for it.
struct OverLimit;

impl Read for OverLimit {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(IoError::other(
            "the request body is larger than the server reads (Limits::preread_body_bytes)",
        ))
    }
}

/// Writes `100 Continue` (HTTP/1.1 clients only: RFC 9110 section 10.1.1).
fn send_continue<W: Write>(writer: &mut W, version: &HTTPVersion) -> io::Result<()> {
    if *version < HTTPVersion(1, 1) {
        return Ok(());
    }
    Response::new_empty(StatusCode(100)).raw_print(
        writer.by_ref(),
        version.clone(),
        &[],
        true,
        None,
    )?;
    writer.flush()
}

/// A request built by `new_request`.
pub(crate) struct NewRequest {
    pub(crate) request: Request,
    /// True if the body was over the pre-read limit and was not read: the connection must be
    /// closed after the response (the stream is in the middle of that body).
    pub(crate) close_after: bool,
}

/// Builds a new request.
///
/// After the request line and headers have been read from the socket, a new `Request` object
/// is built. Its whole body is read here, by the connection's thread, when it is at most
/// `options.preread_limit` bytes (sending `100 Continue` first if the client waits for it), so
/// that the threads calling `Server::recv` never wait on a client. A larger body is not read
/// at all: the request says its declared length (`body_length`), or holds the first
/// `preread_limit + 1` bytes of a chunked body, then reading fails; and the connection is to
/// be closed after the response (`close_after`).
///
/// The `Write` object will be used by the `Request` to write the response.
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_request<R, W>(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    mut source_data: R,
    mut writer: W,
    options: BodyOptions,
) -> Result<NewRequest, RequestCreationError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let framing = body_framing(&headers)?;

    // the declared length, as `body_length()` reports it
    let content_length = match framing {
        BodyFraming::Length(l) => Some(usize::try_from(l).unwrap_or(usize::MAX)),
        BodyFraming::None => headers
            .iter()
            .any(|h| h.field.equiv("Content-Length"))
            .then_some(0),
        BodyFraming::Chunked => None,
    };

    // true if the client sent a `Expect: 100-continue` header
    let expects_continue = {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Expect"))
            .map(|h| h.value.as_str())
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(RequestCreationError::ExpectationFailed),
        }
    };

    // `Connection: upgrade` gets no special treatment: the body is framed like any other
    // (this server never switches protocols), and the connection is closed after it.
    let limit = options.preread_limit as u64;
    let mut close_after = false;
    let reader: Box<dyn Read + Send + 'static> = match framing {
        BodyFraming::None => Box::new(io::empty()),
        BodyFraming::Length(length) if length <= limit => {
            if expects_continue {
                send_continue(&mut writer, &version)?;
            }
            // grown as the bytes come, not allocated from the declared length up front
            let buffer = read_up_to(&mut source_data, length)?;
            if (buffer.len() as u64) < length {
                // the socket returned EOF, but we were before the expected length
                let info = "Connection has been closed before we received enough data";
                return Err(IoError::new(ErrorKind::ConnectionAborted, info).into());
            }
            Box::new(Cursor::new(buffer))
        }
        // Too large: not read (and no `100 Continue`: the client need not send it).
        BodyFraming::Length(_) => {
            close_after = true;
            Box::new(OverLimit)
        }
        BodyFraming::Chunked => {
            if expects_continue {
                send_continue(&mut writer, &version)?;
            }
            let mut decoder = ChunkedDecoder::new(source_data);
            // one byte more than the limit, so that the application can tell it is over
            let start = read_up_to(&mut decoder, limit.saturating_add(1))?;
            if start.len() as u64 > limit {
                close_after = true;
                Box::new(Cursor::new(start).chain(OverLimit))
            } else {
                Box::new(Cursor::new(start))
            }
        }
    };

    let request = Request {
        data_reader: Some(reader),
        response_writer: Some(Box::new(writer) as Box<dyn Write + Send + 'static>),
        remote_addr,
        secure,
        method,
        path,
        http_version: version,
        headers,
        body_length: content_length,
        notify_when_responded: None,
    };
    Ok(NewRequest {
        request,
        close_after,
    })
}

impl Request {
    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// **Patched:** protocol upgrades are not supported. A request with `Connection: upgrade`
    /// is framed like any other (its body ends where `Content-Length` or chunked encoding
    /// says, under the body deadline), and the connection is closed after it, so the
    /// stream returned here reads only that body and writes to a connection about to close.
    /// (Upstream handed such a request the raw socket as its body, with no deadline.)
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        use crate::util::CustomStream;

        response
            .raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
            )
            .ok(); // TODO: unused result

        self.response_writer.as_mut().unwrap().flush().ok(); // TODO: unused result

        let stream = CustomStream::new(self.extract_reader_impl(), self.extract_writer_impl());
        if let Some(sender) = self.notify_when_responded.take() {
            let stream = NotifyOnDrop {
                sender,
                inner: stream,
            };
            Box::new(stream) as Box<dyn ReadWrite + Send>
        } else {
            Box::new(stream) as Box<dyn ReadWrite + Send>
        }
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # extern crate rustc_serialize;
    /// # extern crate tiny_http;
    /// # use rustc_serialize::json::Json;
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # fn main() {
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    ///     let json: Json = content.parse().unwrap();
    /// }
    /// # }
    /// ```
    ///
    /// The body has been read already (see `Limits::preread_body_bytes`, which also says what
    /// happens to larger bodies); a `100 Continue` the client waited for has been sent.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        let writer = self.extract_writer_impl();
        if let Some(sender) = self.notify_when_responded.take() {
            let writer = NotifyOnDrop {
                sender,
                inner: writer,
            };
            Box::new(writer) as Box<dyn Write + Send + 'static>
        } else {
            writer
        }
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Box<dyn Write + Send + 'static> {
        use std::mem;

        assert!(self.response_writer.is_some());

        let mut writer = None;
        mem::swap(&mut self.response_writer, &mut writer);
        writer.unwrap()
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> Box<dyn Read + Send + 'static> {
        use std::mem;

        assert!(self.data_reader.is_some());

        let mut reader = None;
        mem::swap(&mut self.data_reader, &mut reader);
        reader.unwrap()
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let res = self.respond_impl(response);
        if let Some(sender) = self.notify_when_responded.take() {
            // the connection may be gone already
            sender.send(()).ok();
        }
        res
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let mut writer = self.extract_writer_impl();

        let do_not_send_body = self.method == Method::Head;

        Self::ignore_client_closing_errors(response.raw_print(
            writer.by_ref(),
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            None,
        ))?;

        Self::ignore_client_closing_errors(writer.flush())
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }

    pub(crate) fn with_notify_sender(mut self, sender: Sender<()>) -> Self {
        self.notify_when_responded = Some(sender);
        self
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
        }
        // Also when `respond` panicked: the connection's thread waits for this.
        if let Some(sender) = self.notify_when_responded.take() {
            sender.send(()).ok();
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::{body_framing, new_request, BodyFraming, BodyOptions, Request};
    use super::{RequestCreationError as E, Response};
    use crate::{HTTPVersion, Header, Method};
    use std::sync::{Arc, Mutex};

    fn framing(headers: &[&str]) -> Result<BodyFraming, E> {
        let headers: Vec<Header> = headers.iter().map(|h| h.parse().unwrap()).collect();
        body_framing(&headers)
    }

    #[test]
    fn transfer_encoding_must_be_exactly_chunked() {
        assert!(matches!(
            framing(&["Transfer-Encoding: chunked"]),
            Ok(BodyFraming::Chunked)
        ));
        assert!(matches!(
            framing(&["Transfer-Encoding: CHUNKED "]),
            Ok(BodyFraming::Chunked)
        ));
        for te in ["chunked, chunked", "chunked,", ",chunked", "chunked;x=1"] {
            let header = format!("Transfer-Encoding: {}", te);
            let result = framing(&[&header]);
            if te.contains(';') {
                assert!(matches!(result, Err(E::NotImplemented)), "{}", te);
            } else {
                assert!(matches!(result, Err(E::BadRequest)), "{}", te);
            }
        }
        for te in [
            "gzip, chunked",
            "gzip",
            "identity",
            "chunked, gzip",
            "xchunked",
        ] {
            let header = format!("Transfer-Encoding: {}", te);
            assert!(
                matches!(framing(&[&header]), Err(E::NotImplemented)),
                "{}",
                te
            );
        }
        assert!(matches!(
            framing(&["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]),
            Err(E::BadRequest)
        ));
        assert!(matches!(
            framing(&["Transfer-Encoding: chunked", "Content-Length: 3"]),
            Err(E::BadRequest)
        ));
    }

    /// A writer whose bytes the test can still see after it was moved into the request.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn build(headers: &[&str], body: &'static [u8], limit: usize) -> (super::NewRequest, String) {
        let headers = headers.iter().map(|h| h.parse().unwrap()).collect();
        let out = Shared::default();
        let new = new_request(
            false,
            Method::Post,
            "/".into(),
            HTTPVersion(1, 1),
            headers,
            None,
            body,
            out.clone(),
            BodyOptions {
                preread_limit: limit,
            },
        )
        .ok()
        .unwrap();
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        (new, written)
    }

    #[test]
    fn bodies_up_to_the_limit_are_read_first_with_100_continue_sent() {
        let (mut new, written) = build(
            &["Content-Length: 5", "Expect: 100-continue"],
            b"helloNEXT",
            5,
        );
        assert!(
            written.starts_with("HTTP/1.1 100 Continue\r\n"),
            "{}",
            written
        );
        assert!(!new.close_after);
        let mut body = String::new();
        new.request.as_reader().read_to_string(&mut body).unwrap();
        assert_eq!(body, "hello");
        let _ = new.request.respond(Response::empty(200));
    }

    #[test]
    fn bodies_over_the_limit_are_not_read() {
        // declared: nothing read, no 100 Continue, reading fails, the connection closes
        let (mut new, written) =
            build(&["Content-Length: 6", "Expect: 100-continue"], b"hello!", 5);
        assert_eq!(written, "");
        assert!(new.close_after);
        assert_eq!(new.request.body_length(), Some(6));
        assert!(new.request.as_reader().read(&mut [0u8; 8]).is_err());

        // chunked: limit + 1 bytes, then an error
        let (mut new, _) = build(
            &["Transfer-Encoding: chunked"],
            b"6\r\nhello!\r\n0\r\n\r\n",
            5,
        );
        assert!(new.close_after);
        let mut body = Vec::new();
        assert!(new.request.as_reader().read_to_end(&mut body).is_err());
        assert_eq!(body, b"hello!");

        // chunked, at the limit: whole
        let (mut new, _) = build(
            &["Transfer-Encoding: chunked"],
            b"5\r\nhello\r\n0\r\n\r\n",
            5,
        );
        assert!(!new.close_after);
        let mut body = String::new();
        new.request.as_reader().read_to_string(&mut body).unwrap();
        assert_eq!(body, "hello");
    }

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
