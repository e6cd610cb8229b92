//! Secrets and the primitives that handle them.
//!
//! Everything secret (app secrets, session_keys, access tokens, session tokens, API keys)
//! travels in [`Secret`], whose `Debug` and `Display` print `***`, so that a stray `{:?}`
//! in a log line cannot leak one. The few places that need the value call
//! [`Secret::expose`], which is easy to grep for.

use std::fmt;

use base64::Engine;
use sha2::Digest;

/// A string that must never be printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; call only where the value is sent to its one rightful place.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

/// Fills `buf` from the operating system's random source.
///
/// Tokens are the only thing standing between a stranger and a user's account, so they
/// come from the OS CSPRNG directly rather than from a userspace generator.
pub fn random_bytes(buf: &mut [u8]) {
    use rand::TryRng;
    // The OS random source failing is not something a server can work around; it is a
    // broken machine, and issuing a predictable token would be worse than stopping.
    rand::rngs::SysRng.try_fill_bytes(buf).expect("the operating system's random source failed");
}

/// A fresh session token: 256 random bits, URL-safe base64 without padding (43 chars).
pub fn new_token() -> Secret {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes);
    Secret(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A short random identifier for requests and fake codes (not a secret).
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    random_bytes(&mut buf);
    hex(&buf)
}

/// An id that must be unique, not secret (request ids): from the thread's own generator
/// (seeded from the OS), because a system call per request showed up on the verify path.
pub fn unique_id(bytes: usize) -> String {
    use rand::Rng;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex(&buf)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    out
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn tokens_are_long_distinct_and_url_safe() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn sha256_and_hex_match_a_known_vector() {
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }
}
