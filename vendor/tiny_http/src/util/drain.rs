//! Discarding the unread rest of request bodies, within bounds.

use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::chunked::{ChunkedDecoder, ChunkedState};

/// Size of the stack buffer through which unread bodies are discarded.
const DRAIN_BUFFER_SIZE: usize = 4096;

/// The unread rest of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnreadBody {
    /// This many bytes.
    Sized(u64),
    /// The rest of a chunked body, from this decoder state.
    Chunked(ChunkedState),
}

/// What happens to the unread rest of a request body when the request is dropped, shared by
/// a connection and its request bodies.
///
/// The next request on a keep-alive connection starts right after the body, so the rest must
/// be read and discarded; but only a little of it (`max_bytes`): a client can declare any
/// length. When more than that is left, or the body cannot be read, the connection is marked
/// to be closed instead. The body only records what is left (`leave`); the connection's own
/// thread discards it (`discard_unread`) once it has the stream back, before reading the next
/// request. So the application's thread that drops a request never waits on the client.
#[derive(Clone, Debug)]
pub(crate) struct DrainPolicy {
    max_bytes: u64,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    must_close: AtomicBool,
    unread: Mutex<Option<UnreadBody>>,
}

impl DrainPolicy {
    pub(crate) fn new(max_bytes: u64) -> DrainPolicy {
        DrainPolicy {
            max_bytes,
            shared: Arc::new(Shared::default()),
        }
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// True if the connection must be closed after the current request.
    pub(crate) fn closing(&self) -> bool {
        self.shared.must_close.load(Ordering::Acquire)
    }

    /// Marks the connection to be closed after the current request.
    pub(crate) fn close(&self) {
        self.shared.must_close.store(true, Ordering::Release);
    }

    /// Records what a dropped body left unread. Must be called before the body releases the
    /// stream (which is what lets the connection's thread go on).
    pub(crate) fn leave(&self, unread: UnreadBody) {
        *self
            .shared
            .unread
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(unread);
    }

    /// Discards what the last body left unread from `reader` (the connection's stream, under
    /// the body's deadline). Returns false, and marks the connection to be closed, if that
    /// cannot be done within `max_bytes`, or if the connection was already marked.
    pub(crate) fn discard_unread<R: Read>(&self, reader: R) -> bool {
        if self.closing() {
            return false;
        }
        let unread = self
            .shared
            .unread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let discarded = match unread {
            None => true,
            Some(UnreadBody::Sized(length)) => {
                length <= self.max_bytes && discard_exactly(reader, length)
            }
            Some(UnreadBody::Chunked(state)) => discard_chunked(reader, state, self.max_bytes),
        };
        if !discarded {
            self.close();
        }
        discarded
    }
}

/// Reads and discards `length` bytes through a stack buffer; false if the stream fails first.
fn discard_exactly<R: Read>(mut reader: R, mut length: u64) -> bool {
    let mut buf = [0u8; DRAIN_BUFFER_SIZE];
    while length > 0 {
        let len = buf.len().min(length as usize);
        match reader.read(&mut buf[..len]) {
            Ok(0) => return false,
            Ok(read) => length -= read as u64,
            Err(ref e) if e.kind() == ErrorKind::Interrupted => (),
            Err(_) => return false,
        }
    }
    true
}

/// Decodes and discards the rest of a chunked body, counting framing as well as data against
/// `max_bytes` (tiny chunks with long extensions cannot stretch it); false if it is longer,
/// malformed, or the stream fails first.
fn discard_chunked<R: Read>(reader: R, state: ChunkedState, max_bytes: u64) -> bool {
    let mut decoder = ChunkedDecoder::resume(reader, state);
    let mut data = 0u64;
    let mut buf = [0u8; DRAIN_BUFFER_SIZE];
    loop {
        match decoder.read(&mut buf) {
            Ok(0) => return decoder.is_done(),
            Ok(read) => data += read as u64,
            Err(ref e) if e.kind() == ErrorKind::Interrupted => (),
            Err(_) => return false,
        }
        if data + decoder.overhead() > max_bytes {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DrainPolicy, UnreadBody};
    use crate::util::chunked::ChunkedState;
    use std::io::{Cursor, Read};

    #[test]
    fn discards_a_sized_rest() {
        let policy = DrainPolicy::new(1024);
        let mut input = Cursor::new(b"0123456789NEXT".to_vec());
        policy.leave(UnreadBody::Sized(10));
        assert!(policy.discard_unread(&mut input));
        let mut rest = String::new();
        input.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
        // nothing left: nothing read
        assert!(policy.discard_unread(&mut input));
    }

    #[test]
    fn closes_on_a_short_or_long_sized_rest() {
        let policy = DrainPolicy::new(1024);
        policy.leave(UnreadBody::Sized(10));
        assert!(!policy.discard_unread(&b"abc"[..]));
        assert!(policy.closing());

        let policy = DrainPolicy::new(4);
        policy.leave(UnreadBody::Sized(10));
        assert!(!policy.discard_unread(&b"0123456789"[..]));
        assert!(policy.closing());
    }

    #[test]
    fn discards_a_chunked_rest_within_bounds() {
        let policy = DrainPolicy::new(1024);
        let mut input = Cursor::new(b"3\r\nabc\r\n0\r\n\r\nNEXT".to_vec());
        policy.leave(UnreadBody::Chunked(ChunkedState::default()));
        assert!(policy.discard_unread(&mut input));
        let mut rest = String::new();
        input.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");

        let mut big = b"100000\r\n".to_vec();
        big.resize(big.len() + 0x100000, b'x');
        let policy = DrainPolicy::new(64 * 1024);
        policy.leave(UnreadBody::Chunked(ChunkedState::default()));
        assert!(!policy.discard_unread(&big[..]));
        assert!(policy.closing());
    }
}
