//! A small, strict DER reader: just enough ASN.1 to find an RSA key inside its PKCS#8 or
//! SubjectPublicKeyInfo wrapper, or inside an X.509 platform certificate (with its serial
//! and validity).
//!
//! ring verifies RSA signatures with a bare PKCS#1 `RSAPublicKey`, while WeChat Pay hands
//! out its public key wrapped in SPKI. A fixed 24-byte prefix would strip the wrapper of a
//! 2048-bit key only, so the wrapper is parsed instead, and the same reader tells a
//! merchant key's size and algorithm before ring's terser refusal would. Definite lengths
//! only, every length checked against the bytes that remain, no arithmetic that can
//! overflow: a configuration file gets an error, never a panic.

use std::fmt;

/// What is wrong with the DER, in words that quote none of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DerError(pub &'static str);

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;

/// 1.2.840.113549.1.1.1, the only algorithm WeChat Pay's keys use.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The message for a key of another algorithm, which callers turn into advice.
pub(crate) const NOT_RSA: DerError = DerError("is not an RSA key (WeChat Pay keys are RSA)");
const TRUNCATED: DerError = DerError("is truncated DER");

/// A cursor over DER elements that hands out their contents, never reading past the end.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Reader<'a> {
        Reader { rest: input }
    }

    /// The contents of the next element, which must have tag `tag`.
    pub(crate) fn read(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        let (&found, after_tag) = self.rest.split_first().ok_or(TRUNCATED)?;
        if found != tag {
            return Err(DerError("is not the expected DER structure"));
        }
        let (len, after_len) = read_length(after_tag)?;
        if len > after_len.len() {
            return Err(TRUNCATED);
        }
        let (value, rest) = after_len.split_at(len);
        self.rest = rest;
        Ok(value)
    }

    /// The whole next element (tag, length and contents), which must have tag `tag`.
    pub(crate) fn element(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        let before = self.rest;
        self.read(tag)?;
        Ok(&before[..before.len() - self.rest.len()])
    }

    /// Skips the next element, whatever its tag.
    fn skip(&mut self) -> Result<(), DerError> {
        let tag = self.next_tag().ok_or(TRUNCATED)?;
        self.read(tag).map(|_| ())
    }

    /// A reader over the contents of the next element.
    pub(crate) fn nested(&mut self, tag: u8) -> Result<Reader<'a>, DerError> {
        self.read(tag).map(Reader::new)
    }

    fn next_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Succeeds only if every byte was consumed: trailing garbage is an error, not ignored.
    pub(crate) fn finish(self) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError("has bytes after the end of its DER structure"))
        }
    }

    /// The magnitude of a non-negative INTEGER, without its sign byte (empty for zero).
    fn unsigned_integer(&mut self) -> Result<&'a [u8], DerError> {
        match self.read(INTEGER)? {
            [] => Err(DerError("has an empty INTEGER")),
            [first, ..] if first & 0x80 != 0 => Err(DerError("has a negative INTEGER")),
            [0, second, ..] if second & 0x80 == 0 => Err(DerError("has a non-minimal INTEGER")),
            [0, magnitude @ ..] => Ok(magnitude),
            magnitude => Ok(magnitude),
        }
    }

    /// An AlgorithmIdentifier that must say rsaEncryption, with NULL or absent parameters.
    fn rsa_algorithm(&mut self) -> Result<(), DerError> {
        let mut algorithm = self.nested(SEQUENCE)?;
        if algorithm.read(OID)? != RSA_ENCRYPTION {
            return Err(NOT_RSA);
        }
        if algorithm.next_tag() == Some(NULL) && !algorithm.read(NULL)?.is_empty() {
            return Err(DerError("has a NULL with contents"));
        }
        algorithm.finish()
    }
}

/// Reads a definite length (short or minimal long form, at most 4 length bytes).
fn read_length(input: &[u8]) -> Result<(usize, &[u8]), DerError> {
    let (&first, rest) = input.split_first().ok_or(TRUNCATED)?;
    if first < 0x80 {
        return Ok((usize::from(first), rest));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 {
        return Err(DerError("uses an indefinite length, which DER forbids"));
    }
    if count > 4 {
        return Err(DerError("has an element too long to be a key"));
    }
    if rest.len() < count {
        return Err(TRUNCATED);
    }
    let (bytes, rest) = rest.split_at(count);
    let len = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if bytes.first() == Some(&0) || len < 0x80 {
        return Err(DerError("has a non-minimal length"));
    }
    let len = usize::try_from(len).map_err(|_| DerError("has an element too long to be a key"))?;
    Ok((len, rest))
}

/// The number of significant bits in a big-endian magnitude with no leading zero byte.
fn bit_length(magnitude: &[u8]) -> usize {
    match magnitude.first() {
        None => 0,
        Some(&first) => (magnitude.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// An RSA public key as ring wants it: PKCS#1 `RSAPublicKey` DER, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RsaPublicKey<'a> {
    pub pkcs1: &'a [u8],
    pub modulus_bits: usize,
}

/// Unwraps a SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`) holding an RSA key.
pub(crate) fn spki_rsa_public_key(der: &[u8]) -> Result<RsaPublicKey<'_>, DerError> {
    let mut outer = Reader::new(der);
    let mut spki = outer.nested(SEQUENCE)?;
    outer.finish()?;
    spki.rsa_algorithm()?;
    let bits = spki.read(BIT_STRING)?;
    spki.finish()?;
    match bits {
        [0, pkcs1 @ ..] => pkcs1_rsa_public_key(pkcs1),
        _ => Err(DerError("has a BIT STRING that is not whole bytes")),
    }
}

/// Checks a PKCS#1 `RSAPublicKey` (SEQUENCE of modulus and exponent) and measures it.
///
/// The exponent bounds are ring's (3 to 2^33 - 1, odd), so that a key ring would refuse at
/// the first verification is refused at start-up instead.
pub(crate) fn pkcs1_rsa_public_key(pkcs1: &[u8]) -> Result<RsaPublicKey<'_>, DerError> {
    let mut outer = Reader::new(pkcs1);
    let mut key = outer.nested(SEQUENCE)?;
    outer.finish()?;
    let modulus = key.unsigned_integer()?;
    let exponent = key.unsigned_integer()?;
    key.finish()?;
    if exponent.len() > 5 {
        return Err(DerError("has a public exponent too large"));
    }
    let e = exponent.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if e < 3 || e % 2 == 0 || e >= 1 << 33 {
        return Err(DerError("has an unusable public exponent"));
    }
    Ok(RsaPublicKey { pkcs1, modulus_bits: bit_length(modulus) })
}

/// The modulus size of a PKCS#8 (`BEGIN PRIVATE KEY`) RSA private key.
///
/// Only the wrapper, the algorithm and the modulus are read; ring checks the rest of the
/// key (primes, CRT values) when it loads it.
pub(crate) fn pkcs8_rsa_modulus_bits(der: &[u8]) -> Result<usize, DerError> {
    let mut outer = Reader::new(der);
    let mut info = outer.nested(SEQUENCE)?;
    outer.finish()?;
    if info.unsigned_integer()?.len() > 1 {
        return Err(DerError("has an unknown PKCS#8 version"));
    }
    info.rsa_algorithm()?;
    let mut private_outer = Reader::new(info.read(OCTET_STRING)?);
    let mut private = private_outer.nested(SEQUENCE)?;
    private_outer.finish()?;
    private.unsigned_integer()?; // RSAPrivateKey version
    Ok(bit_length(private.unsigned_integer()?))
}

/// What wxlogin needs from a platform certificate: the RSA key, the serial that
/// `Wechatpay-Serial` names it by, and when it may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Certificate<'a> {
    pub key: RsaPublicKey<'a>,
    /// The serial number's bytes (sign byte dropped); shown as upper-case hex.
    pub serial: &'a [u8],
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

const CONTEXT_0: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Walks `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }` and,
/// inside tbsCertificate, `[0] version, serialNumber, signature, issuer, validity, subject,
/// subjectPublicKeyInfo, ...`. The certificate's own signature is not checked: what
/// vouches for it is the APIv3 key's AES-GCM tag around it (research/wechat-pay.md §5).
pub(crate) fn certificate(der: &[u8]) -> Result<Certificate<'_>, DerError> {
    let mut outer = Reader::new(der);
    let mut cert = outer.nested(SEQUENCE)?;
    outer.finish()?;
    let mut tbs = cert.nested(SEQUENCE)?;
    cert.read(SEQUENCE)?; // signatureAlgorithm
    cert.read(BIT_STRING)?; // signature
    cert.finish()?;
    if tbs.next_tag() == Some(CONTEXT_0) {
        tbs.read(CONTEXT_0)?; // version (v3)
    }
    let serial = tbs.unsigned_integer()?;
    if serial.is_empty() || serial.len() > 20 {
        return Err(DerError("has a serial number that is not 1 to 20 bytes"));
    }
    tbs.read(SEQUENCE)?; // signature algorithm
    tbs.read(SEQUENCE)?; // issuer
    let mut validity = tbs.nested(SEQUENCE)?;
    let not_before = validity.time()?;
    let not_after = validity.time()?;
    validity.finish()?;
    tbs.read(SEQUENCE)?; // subject
    let key = spki_rsa_public_key(tbs.element(SEQUENCE)?)?;
    while tbs.next_tag().is_some() {
        tbs.skip()?; // issuerUniqueID, subjectUniqueID, extensions
    }
    Ok(Certificate { key, serial, not_before, not_after })
}

impl Reader<'_> {
    /// A UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime
    /// (`YYYYMMDDHHMMSSZ`), the two forms RFC 5280 allows, as Unix seconds.
    fn time(&mut self) -> Result<i64, DerError> {
        let bad = DerError("has a validity time not in the form RFC 5280 requires");
        let text = match self.next_tag() {
            Some(UTC_TIME) => {
                let t = self.read(UTC_TIME)?;
                let yy = t.get(..2).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| d.parse::<u8>().ok());
                let century: &[u8] = if yy.ok_or(bad)? < 50 { b"20" } else { b"19" };
                [century, t].concat()
            }
            Some(GENERALIZED_TIME) => self.read(GENERALIZED_TIME)?.to_vec(),
            _ => return Err(bad),
        };
        if text.len() != 15 || text[14] != b'Z' || !text[..14].iter().all(u8::is_ascii_digit) {
            return Err(bad);
        }
        let d = |r: std::ops::Range<usize>| std::str::from_utf8(&text[r]).unwrap_or("");
        let rfc3339 = format!("{}-{}-{}T{}:{}:{}Z", d(0..4), d(4..6), d(6..8), d(8..10), d(10..12), d(12..14));
        super::rfc3339::parse(&rfc3339).ok_or(bad)
    }
}

/// A serial number as WeChat Pay writes it (`serial_no`, `Wechatpay-Serial`): upper-case
/// hex, no leading zero byte.
pub(crate) fn serial_hex(serial: &[u8]) -> String {
    serial.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPKI around the given PKCS#1 bytes, built with long-form lengths where needed.
    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match value.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(value);
        out
    }

    fn small_pkcs1(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
        let mut body = tlv(INTEGER, modulus);
        body.extend(tlv(INTEGER, exponent));
        tlv(SEQUENCE, &body)
    }

    fn spki(oid: &[u8], pkcs1: &[u8]) -> Vec<u8> {
        let mut alg = tlv(OID, oid);
        alg.extend(tlv(NULL, &[]));
        let mut bits = vec![0];
        bits.extend_from_slice(pkcs1);
        let mut body = tlv(SEQUENCE, &alg);
        body.extend(tlv(BIT_STRING, &bits));
        tlv(SEQUENCE, &body)
    }

    #[test]
    fn lengths_short_long_and_refused_forms() {
        assert_eq!(read_length(&[0x05, 9]), Ok((5, &[9u8][..])));
        assert_eq!(read_length(&[0x81, 0x80]), Ok((0x80, &[][..])));
        assert_eq!(read_length(&[0x82, 0x01, 0x0f]), Ok((0x10f, &[][..])));
        assert!(read_length(&[0x80]).is_err(), "indefinite");
        assert!(read_length(&[0x81, 0x7f]).is_err(), "non-minimal: fits the short form");
        assert!(read_length(&[0x82, 0x00, 0x80]).is_err(), "non-minimal: leading zero byte");
        assert!(read_length(&[0x85, 1, 1, 1, 1, 1]).is_err(), "too many length bytes");
        assert!(read_length(&[0x82, 0x01]).is_err(), "truncated length");
        assert!(read_length(&[]).is_err());
    }

    #[test]
    fn an_element_longer_than_its_input_is_truncated_not_a_panic() {
        let mut r = Reader::new(&[SEQUENCE, 0x84, 0xff, 0xff, 0xff, 0xff, 0]);
        assert_eq!(r.read(SEQUENCE), Err(TRUNCATED));
        let mut r = Reader::new(&[SEQUENCE, 3, 1, 2]);
        assert_eq!(r.read(SEQUENCE), Err(TRUNCATED));
    }

    #[test]
    fn integers_must_be_minimal_and_non_negative() {
        let read = |bytes: &[u8]| Reader::new(&tlv(INTEGER, bytes)).unsigned_integer().map(<[u8]>::to_vec);
        assert_eq!(read(&[0x00, 0x80]), Ok(vec![0x80]));
        assert_eq!(read(&[0x7f]), Ok(vec![0x7f]));
        assert_eq!(read(&[0x00]), Ok(vec![]));
        assert!(read(&[0x80]).is_err());
        assert!(read(&[0x00, 0x01]).is_err());
        assert!(read(&[]).is_err());
    }

    #[test]
    fn spki_of_any_size_unwraps_to_its_pkcs1_key() {
        let mut modulus = vec![0x00, 0xc0];
        modulus.extend([0x11; 383]); // 3072 bits
        let pkcs1 = small_pkcs1(&modulus, &[0x01, 0x00, 0x01]);
        let der = spki(RSA_ENCRYPTION, &pkcs1);
        let key = spki_rsa_public_key(&der).expect("a well-formed SPKI");
        assert_eq!(key.pkcs1, &pkcs1[..]);
        assert_eq!(key.modulus_bits, 3072);
    }

    #[test]
    fn spki_refusals_name_the_problem() {
        let pkcs1 = small_pkcs1(&[0x00, 0xc1, 0x01], &[0x03]);
        let ec_oid = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        assert_eq!(spki_rsa_public_key(&spki(&ec_oid, &pkcs1)), Err(NOT_RSA));
        let mut trailing = spki(RSA_ENCRYPTION, &pkcs1);
        trailing.push(0);
        assert!(spki_rsa_public_key(&trailing).unwrap_err().0.contains("after the end"));
        let even_e = spki(RSA_ENCRYPTION, &small_pkcs1(&[0x00, 0xc1, 0x01], &[0x04]));
        assert!(spki_rsa_public_key(&even_e).unwrap_err().0.contains("exponent"));
        let good = spki(RSA_ENCRYPTION, &pkcs1);
        for cut in 0..good.len() {
            assert!(spki_rsa_public_key(&good[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..good.len() {
            let mut garbled = good.clone();
            garbled[at] ^= 0xff;
            let _ = spki_rsa_public_key(&garbled); // any answer but a panic
        }
    }

    #[test]
    fn bit_length_counts_significant_bits() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[0x7f, 0, 0]), 23);
    }

    #[test]
    fn a_certificate_gives_its_serial_validity_and_key_and_nothing_else_passes() {
        let pem = include_str!("testdata/fake_wechatpay_platform_cert.pem");
        let der = crate::pay::pem::decode(pem).expect("pem").der;
        let cert = certificate(&der).expect("parses");
        assert_eq!(serial_hex(cert.serial), "1E67BC1813BE76B106AB44097F2EC661555DD8DB");
        // openssl x509 -dates: Dec  2 17:25:13 2026 GMT to Dec  2 17:25:13 2031 GMT.
        assert_eq!((cert.not_before, cert.not_after), (1_796_232_313, 1_953_998_713));
        assert_eq!(cert.key.modulus_bits, 2048);
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(certificate(&trailing).is_err());
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            assert!(certificate(&der[..cut]).is_err(), "cut at {cut}");
        }
        let spki =
            crate::pay::pem::decode(include_str!("testdata/fake_wechatpay_platform_public_key.pem")).expect("pem");
        assert!(certificate(&spki.der).is_err(), "a bare public key is not a certificate");
    }
}
