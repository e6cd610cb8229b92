//! Decoding of `Transfer-Encoding: chunked` request bodies, with bounds.
//!
//! Replaces `chunked_transfer::Decoder` for requests: that one buffers a chunk-size line of
//! any length, cannot tell a truncated body from a complete one, and leaves the stream in the
//! middle of the body when dropped. (`chunked_transfer::Encoder` is still used for responses.)

use std::convert::TryFrom;
use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read};

use super::drain::{DrainPolicy, UnreadBody};

/// Longest chunk-size line (with extensions) and longest trailer line accepted.
const MAX_LINE_BYTES: usize = 1024;
/// Most trailer bytes accepted after the last chunk (they are read and ignored).
const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// Where a chunked decoder is in the body (so that another can resume from there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ChunkedState {
    // expecting a chunk-size line
    #[default]
    Size,
    // in the middle of a chunk, with this many bytes left
    Data(u64),
    // expecting the CRLF that ends a chunk
    DataEnd,
    // the last chunk and the trailers have been read
    Done,
    // the body was malformed or the connection failed: the stream is out of step
    Failed,
}

/// Reads a chunked body from `source` and returns the data.
pub struct ChunkedDecoder<R> {
    source: R,
    state: ChunkedState,
    // bytes of framing (size lines, CRLFs, trailers) read so far
    overhead: u64,
}

fn invalid(message: &'static str) -> IoError {
    IoError::new(ErrorKind::InvalidData, message)
}

impl<R: Read> ChunkedDecoder<R> {
    pub fn new(source: R) -> ChunkedDecoder<R> {
        Self::resume(source, ChunkedState::Size)
    }

    /// Resumes decoding a body from `state`.
    pub(crate) fn resume(source: R, state: ChunkedState) -> ChunkedDecoder<R> {
        ChunkedDecoder {
            source,
            state,
            overhead: 0,
        }
    }

    pub(crate) fn state(&self) -> ChunkedState {
        self.state
    }

    /// Bytes of framing (size lines, CRLFs, trailers) read so far.
    pub(crate) fn overhead(&self) -> u64 {
        self.overhead
    }

    /// True once the whole body (including the trailers) has been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkedState::Done
    }

    fn read_byte(&mut self) -> IoResult<u8> {
        let mut byte = [0u8];
        loop {
            match self.source.read(&mut byte) {
                Ok(0) => {
                    return Err(IoError::new(
                        ErrorKind::UnexpectedEof,
                        "the connection was closed before the end of the chunked body",
                    ))
                }
                Ok(_) => {
                    self.overhead += 1;
                    return Ok(byte[0]);
                }
                Err(ref e) if e.kind() == ErrorKind::Interrupted => (),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads a line ending in LF (an optional CR before it is dropped); at most
    /// `MAX_LINE_BYTES`, without keeping more than `keep` bytes of it.
    fn read_line(&mut self, keep: usize) -> IoResult<Vec<u8>> {
        let mut line = Vec::new();
        let mut len = 0;
        loop {
            let byte = self.read_byte()?;
            if byte == b'\n' {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            len += 1;
            if len > MAX_LINE_BYTES {
                return Err(invalid("chunk-size or trailer line too long"));
            }
            if line.len() < keep {
                line.push(byte);
            }
        }
    }

    fn read_chunk_size(&mut self) -> IoResult<u64> {
        // 16 hex digits fill a u64; keep a little more to detect longer sizes.
        let line = self.read_line(32)?;
        let size = match line.iter().position(|&b| b == b';') {
            Some(i) => &line[..i],
            None => &line[..],
        };
        let size = std::str::from_utf8(size)
            .map_err(|_| invalid("invalid chunk size"))?
            .trim_matches(|c| c == ' ' || c == '\t');
        if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("invalid chunk size"));
        }
        u64::from_str_radix(size, 16).map_err(|_| invalid("invalid chunk size"))
    }

    fn read_trailers(&mut self) -> IoResult<()> {
        let mut total = 0;
        loop {
            let line = self.read_line(MAX_LINE_BYTES)?;
            if line.is_empty() {
                return Ok(());
            }
            total += line.len();
            if total > MAX_TRAILER_BYTES {
                return Err(invalid("chunked trailers too large"));
            }
        }
    }

    fn read_impl(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        loop {
            match self.state {
                ChunkedState::Done => return Ok(0),
                ChunkedState::Failed => return Err(invalid("malformed chunked body")),
                ChunkedState::Size => {
                    let size = self.read_chunk_size()?;
                    if size == 0 {
                        self.read_trailers()?;
                        self.state = ChunkedState::Done;
                    } else {
                        self.state = ChunkedState::Data(size);
                    }
                }
                ChunkedState::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(0);
                    }
                    let len = buf
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    let read = self.source.read(&mut buf[..len])?;
                    if read == 0 {
                        return Err(IoError::new(
                            ErrorKind::UnexpectedEof,
                            "the connection was closed before the end of the chunked body",
                        ));
                    }
                    let remaining = remaining - read as u64;
                    self.state = if remaining == 0 {
                        ChunkedState::DataEnd
                    } else {
                        ChunkedState::Data(remaining)
                    };
                    return Ok(read);
                }
                ChunkedState::DataEnd => {
                    if !self.read_line(2)?.is_empty() {
                        return Err(invalid("missing CRLF after chunk data"));
                    }
                    self.state = ChunkedState::Size;
                }
            }
        }
    }
}

impl<R: Read> Read for ChunkedDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self.read_impl(buf) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                // A timeout in the middle of a size line leaves the stream out of step too.
                self.state = ChunkedState::Failed;
                Err(e)
            }
            result => result,
        }
    }
}

/// A chunked request body: releases the connection when the body ends; when dropped before,
/// leaves the rest to the connection's thread to discard, or the connection closed, as
/// `DrainPolicy` says.
pub struct ChunkedBody<R: Read> {
    decoder: Option<ChunkedDecoder<R>>,
    policy: DrainPolicy,
    expects_continue: bool,
    touched: bool,
}

impl<R: Read> ChunkedBody<R> {
    pub(crate) fn new(
        decoder: ChunkedDecoder<R>,
        policy: DrainPolicy,
        expects_continue: bool,
    ) -> ChunkedBody<R> {
        ChunkedBody {
            decoder: if decoder.is_done() {
                None
            } else {
                Some(decoder)
            },
            policy,
            expects_continue,
            touched: false,
        }
    }
}

impl<R: Read> Read for ChunkedBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.touched = true;
        let decoder = match self.decoder.as_mut() {
            Some(decoder) => decoder,
            None => return Ok(0),
        };
        let read = decoder.read(buf)?;
        if decoder.is_done() {
            self.decoder = None;
        }
        Ok(read)
    }
}

impl<R: Read> Drop for ChunkedBody<R> {
    fn drop(&mut self) {
        // This runs before the decoder (and the stream in it) is dropped, which hands the
        // stream over to the connection's thread.
        let state = match self.decoder.as_ref() {
            Some(decoder) => decoder.state(),
            None => return,
        };
        if self.policy.closing() {
            return;
        }
        if (self.expects_continue && !self.touched) || state == ChunkedState::Failed {
            self.policy.close();
        } else {
            self.policy.leave(UnreadBody::Chunked(state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ChunkedBody, ChunkedDecoder};
    use crate::util::drain::DrainPolicy;
    use std::io::{Cursor, ErrorKind, Read};

    fn decode(input: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ChunkedDecoder::new(input).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes() {
        assert_eq!(
            decode(b"3\r\nhel\r\nb;ext=1\r\nlo world!!!\r\n0\r\nX-T: 1\r\n\r\n").unwrap(),
            b"hello world!!!"
        );
        assert_eq!(decode(b"0\r\n\r\n").unwrap(), b"");
    }

    #[test]
    fn rejects_bad_sizes_and_framing() {
        for input in [
            &b"ffffffffffffffffff\r\n"[..],
            b"-1\r\n",
            b"\r\n",
            b"zz\r\n",
            b"3\r\nhelXX\r\n0\r\n\r\n",
        ] {
            assert_eq!(
                decode(input).unwrap_err().kind(),
                ErrorKind::InvalidData,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long_line = vec![b'1'; 5000];
        assert_eq!(
            decode(&long_line).unwrap_err().kind(),
            ErrorKind::InvalidData
        );
    }

    #[test]
    fn truncated_body_is_an_error() {
        assert_eq!(
            decode(b"5\r\nhel").unwrap_err().kind(),
            ErrorKind::UnexpectedEof
        );
        assert_eq!(
            decode(b"5\r\nhello\r\n").unwrap_err().kind(),
            ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn huge_chunk_size_is_not_allocated() {
        let mut decoder = ChunkedDecoder::new(&b"ffffffffffffffff\r\nabc"[..]);
        let mut buf = [0u8; 16];
        assert_eq!(decoder.read(&mut buf).unwrap(), 3);
    }

    #[test]
    fn drop_leaves_the_rest_for_the_connection() {
        let mut input = Cursor::new(b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\nNEXT".to_vec());
        let policy = DrainPolicy::new(1024);
        {
            let mut body =
                ChunkedBody::new(ChunkedDecoder::new(input.by_ref()), policy.clone(), false);
            let mut two = [0u8; 2];
            body.read_exact(&mut two).unwrap();
        }
        assert!(!policy.closing());
        assert!(policy.discard_unread(&mut input));
        let mut rest = String::new();
        input.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");

        let mut big = b"100000\r\n".to_vec();
        big.extend(std::iter::repeat(b'x').take(0x100000));
        let policy = DrainPolicy::new(64 * 1024);
        drop(ChunkedBody::new(
            ChunkedDecoder::new(&big[..]),
            policy.clone(),
            false,
        ));
        assert!(!policy.discard_unread(&big[..]));
        assert!(policy.closing());
    }
}
