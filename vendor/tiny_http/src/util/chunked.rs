//! Decoding of `Transfer-Encoding: chunked` request bodies, with bounds.
//!
//! Replaces `chunked_transfer::Decoder` for requests: that one buffers a chunk-size line of
//! any length, cannot tell a truncated body from a complete one, and accepts loose framing.
//! (`chunked_transfer::Encoder` is still used for responses.)
//!
//! Strict on framing, where proxies in front may read a body otherwise (request smuggling):
//! every line ends in CRLF (a bare LF, or a CR elsewhere, is an error), and the chunk size is
//! hex digits only, directly followed by `;` (an extension) or the CRLF: no spaces or tabs
//! around it (RFC 9112 tolerates "bad whitespace" before `;`; we do not).

use std::convert::TryFrom;
use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read};

/// Longest chunk-size line (with extensions) and longest trailer line accepted.
const MAX_LINE_BYTES: usize = 1024;
/// Most trailer bytes accepted after the last chunk (they are read and ignored).
const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// Where a chunked decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkedState {
    // expecting a chunk-size line
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
}

fn invalid(message: &'static str) -> IoError {
    IoError::new(ErrorKind::InvalidData, message)
}

impl<R: Read> ChunkedDecoder<R> {
    pub fn new(source: R) -> ChunkedDecoder<R> {
        ChunkedDecoder {
            source,
            state: ChunkedState::Size,
        }
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
                Ok(_) => return Ok(byte[0]),
                Err(ref e) if e.kind() == ErrorKind::Interrupted => (),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads a line ending in CRLF (returned without it); at most `MAX_LINE_BYTES`, without
    /// keeping more than `keep` bytes of it. A LF without a CR before it, or a CR not
    /// followed by LF, is an error.
    fn read_line(&mut self, keep: usize) -> IoResult<Vec<u8>> {
        let mut line = Vec::new();
        let mut len = 0;
        loop {
            match self.read_byte()? {
                b'\r' => {
                    if self.read_byte()? != b'\n' {
                        return Err(invalid("CR without LF in chunked framing"));
                    }
                    return Ok(line);
                }
                b'\n' => return Err(invalid("bare LF in chunked framing")),
                byte => {
                    len += 1;
                    if len > MAX_LINE_BYTES {
                        return Err(invalid("chunk-size or trailer line too long"));
                    }
                    if line.len() < keep {
                        line.push(byte);
                    }
                }
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
        // hex digits only: no spaces or tabs around them
        if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(invalid("invalid chunk size"));
        }
        let size = std::str::from_utf8(size).map_err(|_| invalid("invalid chunk size"))?;
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

#[cfg(test)]
mod tests {
    use super::ChunkedDecoder;
    use std::io::{ErrorKind, Read};

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
            // spaces or tabs around the size
            b"5 \r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5\t\r\nhello\r\n0\r\n\r\n",
            b"5 ;x=1\r\nhello\r\n0\r\n\r\n",
            // bare LF: after a size, after chunk data, in and after the trailers
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\n\r\n",
            b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            // a CR not followed by LF
            b"5\rhello\r\n0\r\n\r\n",
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
}
