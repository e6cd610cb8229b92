use std::convert::TryFrom;
use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read};

use super::drain::{DrainPolicy, UnreadBody};

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF (and releases the sub-reader, so that the next
/// request on the connection can be read). If the sub-reader ends before the limit, reads fail
/// with `UnexpectedEof`. If the limit is not reached when the destructor is called, the rest
/// is left to the connection's thread to discard, or the connection closed, as `DrainPolicy`
/// says.
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
        // This runs before the sub-reader is dropped, which hands the stream over to the
        // connection's thread.
        if self.reader.is_none() || self.policy.closing() {
            return;
        }
        // A client that asked for `100 Continue` and never got it may or may not send the
        // body: waiting for it could take a read timeout. Close instead.
        if self.remaining > self.policy.max_bytes() || (self.expects_continue && !self.touched) {
            self.policy.close();
        } else {
            self.policy.leave(UnreadBody::Sized(self.remaining));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EqualReader;
    use crate::util::drain::DrainPolicy;
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
        // the rest is not read by the dropped body, but by the connection afterwards
        assert_eq!(org_reader.position(), 1);
        assert!(policy.discard_unread(&mut org_reader));

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
        assert!(!policy.discard_unread(&mut org_reader));
        assert_eq!(org_reader.position(), 0);
    }

    #[test]
    fn short_body_is_an_error() {
        let mut org_reader = Cursor::new(b"abc".to_vec());
        let policy = DrainPolicy::new(64 * 1024);
        {
            let mut body = EqualReader::new(org_reader.by_ref(), 10, policy.clone(), false);
            let mut out = Vec::new();
            let err = body.read_to_end(&mut out).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        }
        assert!(!policy.discard_unread(&mut org_reader));
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
