use std::convert::TryFrom;
use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Size of the stack buffer through which unread bodies are discarded.
pub(crate) const DRAIN_BUFFER_SIZE: usize = 4096;

/// What to do with the unread rest of a request body when the request is dropped.
///
/// The next request on a keep-alive connection starts right after this body, so the rest must
/// be read and discarded; but only a little of it (`max_bytes`): a client can declare any
/// length, and reading it all would let one request occupy a thread for as long as it likes.
/// When more than that is left, or the body cannot be read, the connection is marked to be
/// closed instead (`must_close`), which the connection's thread checks before it reads the
/// next request.
#[derive(Clone, Debug)]
pub(crate) struct DrainPolicy {
    pub(crate) max_bytes: u64,
    pub(crate) must_close: Arc<AtomicBool>,
}

impl DrainPolicy {
    pub(crate) fn new(max_bytes: u64) -> DrainPolicy {
        DrainPolicy {
            max_bytes,
            must_close: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn closing(&self) -> bool {
        self.must_close.load(Ordering::Acquire)
    }

    pub(crate) fn close(&self) {
        self.must_close.store(true, Ordering::Release);
    }
}

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF (and releases the sub-reader, so that the next
/// request on the connection can be read). If the sub-reader ends before the limit, reads fail
/// with `UnexpectedEof`. If the limit is not reached when the destructor is called, the rest
/// is discarded as `DrainPolicy` says.
pub struct EqualReader<R>
where
    R: Read,
{
    reader: Option<R>,
    remaining: u64,
    policy: DrainPolicy,
    // true if the client waits for `100 Continue` before sending the body
    expects_continue: bool,
    // true once the body has been read from (which sends the `100 Continue` if needed)
    touched: bool,
}

impl<R> EqualReader<R>
where
    R: Read,
{
    pub(crate) fn new(
        reader: R,
        size: u64,
        policy: DrainPolicy,
        expects_continue: bool,
    ) -> EqualReader<R> {
        EqualReader {
            reader: if size == 0 { None } else { Some(reader) },
            remaining: size,
            policy,
            expects_continue,
            touched: false,
        }
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.touched = true;
        let reader = match self.reader.as_mut() {
            Some(reader) => reader,
            None => return Ok(0),
        };
        if buf.is_empty() {
            return Ok(0);
        }

        let len = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = reader.read(&mut buf[..len])?;
        if read == 0 {
            return Err(IoError::new(
                ErrorKind::UnexpectedEof,
                "the connection was closed before the end of the request body",
            ));
        }
        self.remaining -= read as u64;
        if self.remaining == 0 {
            self.reader = None;
        }
        Ok(read)
    }
}

impl<R> Drop for EqualReader<R>
where
    R: Read,
{
    fn drop(&mut self) {
        // `must_close` is set here, before the sub-reader is dropped and hands the connection
        // over to the next request.
        let reader = match self.reader.as_mut() {
            Some(reader) => reader,
            None => return,
        };
        if self.policy.closing() {
            return;
        }
        // A client that asked for `100 Continue` and never got it may or may not send the
        // body: waiting for it could take a read timeout. Close instead.
        if self.remaining > self.policy.max_bytes || (self.expects_continue && !self.touched) {
            self.policy.close();
            return;
        }

        let mut buf = [0u8; DRAIN_BUFFER_SIZE];
        while self.remaining > 0 {
            let len = buf.len().min(self.remaining as usize);
            match reader.read(&mut buf[..len]) {
                Ok(0) => break,
                Ok(read) => self.remaining -= read as u64,
                Err(ref e) if e.kind() == ErrorKind::Interrupted => (),
                Err(_) => break,
            }
        }
        if self.remaining > 0 {
            self.policy.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DrainPolicy, EqualReader};
    use std::io::{Cursor, ErrorKind, Read};

    #[test]
    fn test_limit() {
        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let mut equal_reader =
                EqualReader::new(org_reader.by_ref(), 5, DrainPolicy::new(1024), false);

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn test_not_enough() {
        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());
        let policy = DrainPolicy::new(1024);

        {
            let mut equal_reader = EqualReader::new(org_reader.by_ref(), 5, policy.clone(), false);

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
        assert!(!policy.closing());
    }

    #[test]
    fn huge_declared_length_is_not_drained() {
        let mut org_reader = Cursor::new(b"abc".to_vec());
        let policy = DrainPolicy::new(64 * 1024);
        drop(EqualReader::new(
            org_reader.by_ref(),
            u64::MAX,
            policy.clone(),
            false,
        ));
        assert!(policy.closing());
        assert_eq!(org_reader.position(), 0);
    }

    #[test]
    fn short_body_closes_the_connection() {
        let mut org_reader = Cursor::new(b"abc".to_vec());
        let policy = DrainPolicy::new(64 * 1024);
        {
            let mut body = EqualReader::new(org_reader.by_ref(), 10, policy.clone(), false);
            let mut out = Vec::new();
            let err = body.read_to_end(&mut out).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        }
        assert!(policy.closing());
    }

    #[test]
    fn unanswered_expect_continue_closes() {
        let mut org_reader = Cursor::new(b"abcdef".to_vec());
        let policy = DrainPolicy::new(64 * 1024);
        drop(EqualReader::new(
            org_reader.by_ref(),
            6,
            policy.clone(),
            true,
        ));
        assert!(policy.closing());
    }
}
