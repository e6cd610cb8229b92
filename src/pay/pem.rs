//! Strict PEM: exactly one `-----BEGIN X-----` ... `-----END X-----` block of base64.
//!
//! Keys are pasted and converted by hand, so the likely mistakes (two blocks in one file,
//! an encrypted key, a wrong label, a damaged line) each get their own sentence. No
//! message quotes the base64, which is the key itself.

use std::fmt;

use base64::Engine;

/// Larger than any RSA key up to 8192 bits in PEM; a bigger file is not a key.
const MAX_PEM_BYTES: usize = 64 * 1024;

/// A decoded block: its label (checked to be short upper-case ASCII, so safe to print)
/// and its DER bytes.
pub(crate) struct Block {
    pub label: String,
    pub der: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PemError(String);

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(message: impl Into<String>) -> PemError {
    PemError(message.into())
}

/// Decodes the one PEM block that `text` must consist of (surrounding blank lines aside).
pub(crate) fn decode(text: &str) -> Result<Block, PemError> {
    if text.len() > MAX_PEM_BYTES {
        return Err(err("is too large to be a PEM key (over 64 KiB)"));
    }
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate();
    let (_, first) = lines.next().ok_or_else(|| err("is empty"))?;
    let label = begin_label(first)?;
    let end = format!("-----END {label}-----");
    let mut base64_text = String::new();
    loop {
        let (n, line) = lines.next().ok_or_else(|| err(format!("has no {end} line")))?;
        if line == end {
            break;
        }
        base64_text.push_str(body_line(n + 1, line)?);
    }
    if let Some((_, line)) = lines.next() {
        return Err(if line.starts_with("-----BEGIN ") {
            err("holds more than one PEM block; put only the key in the file")
        } else {
            err("has text after its END line")
        });
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(base64_text.as_bytes())
        .map_err(|_| err("is not valid base64 between its BEGIN and END lines"))?;
    if der.is_empty() {
        return Err(err("has an empty PEM block"));
    }
    Ok(Block { label: label.to_string(), der })
}

/// The label of a `-----BEGIN LABEL-----` line, if it is one.
fn begin_label(line: &str) -> Result<&str, PemError> {
    let label = line
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.strip_suffix("-----"))
        .ok_or_else(|| err("does not start with a -----BEGIN ...----- line (is it a PEM file?)"))?;
    let printable = label.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
    if label.is_empty() || label.len() > 40 || !printable {
        return Err(err("has a malformed BEGIN line"));
    }
    Ok(label)
}

/// One line of the base64 body; `n` counts non-blank lines from 1, for the message.
fn body_line(n: usize, line: &str) -> Result<&str, PemError> {
    if line.starts_with("-----") {
        return Err(err(format!("has an END line (non-blank line {n}) that does not match its BEGIN line")));
    }
    if line.contains(':') {
        return Err(err("has PEM headers (an encrypted key?); only unencrypted keys are accepted"));
    }
    if !line.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=') {
        return Err(err(format!("has a character that is not base64 on non-blank line {n}")));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "-----BEGIN PUBLIC KEY-----\nAQID\nBA==\n-----END PUBLIC KEY-----\n";

    fn message(text: &str) -> String {
        match decode(text) {
            Ok(_) => panic!("decoded {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn decodes_one_block_with_crlf_and_surrounding_blank_lines() {
        let block = decode(GOOD).expect("good PEM");
        assert_eq!((block.label.as_str(), block.der.as_slice()), ("PUBLIC KEY", &[1u8, 2, 3, 4][..]));
        let crlf = format!("\r\n\r\n{}\r\n", GOOD.replace('\n', "\r\n"));
        assert_eq!(decode(&crlf).expect("CRLF PEM").der, vec![1, 2, 3, 4]);
    }

    #[test]
    fn each_malformation_has_its_own_message() {
        assert!(message("").contains("empty"));
        assert!(message("AQID\n").contains("BEGIN"));
        assert!(message(&GOOD.replace("END PUBLIC", "END PRIVATE")).contains("does not match"));
        assert!(message(&GOOD.replace("-----END PUBLIC KEY-----\n", "")).contains("has no -----END PUBLIC KEY-----"));
        assert!(message(&format!("{GOOD}{GOOD}")).contains("more than one"));
        assert!(message(&format!("{GOOD}junk")).contains("after its END"));
        assert!(message(&GOOD.replace("BA==", "B!==")).contains("not base64 on non-blank line 3"));
        assert!(message(&GOOD.replace("BA==", "B===")).contains("not valid base64"));
        assert!(message(&GOOD.replace("AQID\n", "Proc-Type: 4,ENCRYPTED\nAQID\n")).contains("encrypted"));
        assert!(message("-----BEGIN public key-----\n").contains("malformed BEGIN"));
        assert!(message("-----BEGIN X-----\n-----END X-----\n").contains("empty PEM block"));
    }

    #[test]
    fn messages_never_quote_the_base64() {
        let secretish = "-----BEGIN PRIVATE KEY-----\nSECRETSECRET+/\u{e9}\n-----END PRIVATE KEY-----\n";
        assert!(!message(secretish).contains("SECRET"));
        let bad_padding = "-----BEGIN PRIVATE KEY-----\nSECRETSECRET=A\n-----END PRIVATE KEY-----\n";
        assert!(!message(bad_padding).contains("SECRET"));
    }
}
