//! Platform certificates, for merchants that still verify WeChat Pay with them
//! (`pay.platform_certificates`): what `GET /v3/certificates` answers, decrypted with the
//! APIv3 key and read down to the RSA key, the serial and the validity.
//!
//! research/wechat-pay.md §5: each entry's `encrypt_certificate` is an AEAD_AES_256_GCM
//! resource (AAD `certificate`, vector V8) holding a PEM X.509 certificate, keyed by
//! `serial_no`. The certificate's own signature (by Tenpay's CA) is not checked: the GCM
//! tag already proves it was encrypted by someone holding our APIv3 key, which only WeChat
//! Pay and the merchant have. That same tag is what makes the very first fetch safe,
//! when no key is trusted yet to verify the answer's signature: WeChat's documentation
//! verifies that first download with the certificate it contains, after decrypting it.

use serde::Deserialize;

use super::{der, pem, rfc3339, ApiV3Key, PayCryptoError, Resource, VerifyingKey};

/// One trusted platform certificate's key, under the serial `Wechatpay-Serial` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformCertificate {
    /// Upper-case hex, as `serial_no` and `Wechatpay-Serial` carry it.
    pub serial: String,
    pub key: VerifyingKey,
    /// Unix seconds, from the certificate itself.
    pub not_before: i64,
    pub not_after: i64,
}

impl PlatformCertificate {
    /// Reads a PEM certificate with a strict DER walk: its SubjectPublicKeyInfo (an RSA key
    /// of a size ring verifies), its serial and its validity.
    pub fn from_pem(text: &str) -> Result<PlatformCertificate, PayCryptoError> {
        let invalid = |e: &dyn std::fmt::Display| PayCryptoError::Key(format!("the platform certificate {e}"));
        let block = pem::decode(text).map_err(|e| invalid(&e))?;
        if block.label != "CERTIFICATE" {
            return Err(invalid(&format_args!("is not a certificate (found BEGIN {})", block.label)));
        }
        let cert = der::certificate(&block.der).map_err(|e| invalid(&e))?;
        let key = VerifyingKey::from_pkcs1_der(cert.key.pkcs1)?;
        Ok(PlatformCertificate {
            serial: der::serial_hex(cert.serial),
            key,
            not_before: cert.not_before,
            not_after: cert.not_after,
        })
    }

    pub fn is_valid_at(&self, now: i64) -> bool {
        (self.not_before..self.not_after).contains(&now)
    }
}

/// Why a `/v3/certificates` answer gave no certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificatesError {
    /// An entry does not decrypt with the APIv3 key: the key is wrong (or the answer was
    /// altered).
    Decrypt,
    /// The answer is not a list of usable certificates: what is wrong.
    Invalid(String),
}

#[derive(Deserialize)]
struct Body {
    data: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    serial_no: String,
    #[serde(default)]
    expire_time: Option<String>,
    encrypt_certificate: Resource,
}

/// The certificates of a `/v3/certificates` body that are valid at `now`, newest expiry
/// first. Every entry must decrypt and name its certificate's own serial; expired and
/// not-yet-valid ones are left out (an answer with none left is an error).
pub fn parse_certificates(
    body: &[u8],
    apiv3_key: &ApiV3Key,
    now: i64,
) -> Result<Vec<PlatformCertificate>, CertificatesError> {
    let invalid = |m: String| CertificatesError::Invalid(m);
    let body: Body =
        serde_json::from_slice(body).map_err(|_| invalid("the answer is not a certificate list".into()))?;
    let mut usable = Vec::new();
    for entry in body.data {
        let pem = entry.encrypt_certificate.decrypt(apiv3_key).map_err(|_| CertificatesError::Decrypt)?;
        let pem = String::from_utf8(pem).map_err(|_| invalid("a certificate is not PEM text".into()))?;
        let cert = PlatformCertificate::from_pem(&pem).map_err(|e| invalid(e.to_string()))?;
        if cert.serial != entry.serial_no.to_ascii_uppercase() {
            return Err(invalid(format!("serial_no {} is not its certificate's serial", cert.serial)));
        }
        let listed_expiry = entry.expire_time.as_deref().and_then(rfc3339::parse);
        if listed_expiry.is_some_and(|t| t != cert.not_after) {
            log::info!("platform certificate {}: expire_time differs from the certificate's own", cert.serial);
        }
        if cert.is_valid_at(now) {
            usable.push(cert);
        } else {
            log::warn!("platform certificate {}: not valid now; left out", cert.serial);
        }
    }
    if usable.is_empty() {
        return Err(invalid("no certificate in the answer is valid now".into()));
    }
    usable.sort_by_key(|c| std::cmp::Reverse(c.not_after));
    Ok(usable)
}

/// When to fetch again: hourly (as wechatpay-java does), and sooner when a certificate
/// expires before that, so a renewal is picked up before the old one stops verifying.
pub fn next_refresh(certificates: &[PlatformCertificate], now: i64) -> i64 {
    let hourly = now + REFRESH_EVERY_SECONDS;
    let before_expiry = certificates.iter().map(|c| c.not_after - EXPIRY_MARGIN_SECONDS).filter(|&t| t > now).min();
    before_expiry.map_or(hourly, |t| t.min(hourly))
}

pub const REFRESH_EVERY_SECONDS: i64 = 3600;
/// Fetch this long before a certificate expires.
const EXPIRY_MARGIN_SECONDS: i64 = 600;
/// At most one fetch this often because a message named an unknown serial (anyone can
/// send a notification naming one).
pub const EARLY_REFRESH_GAP_SECONDS: i64 = 60;
/// After a failed fetch: soon, but not a loop hammering WeChat Pay.
pub const RETRY_AFTER_FAILURE_SECONDS: i64 = 30;

#[cfg(test)]
mod tests {
    use super::*;

    const PLATFORM_CERT_PEM: &str = include_str!("testdata/fake_wechatpay_platform_cert.pem");
    const PLATFORM_CERT_SERIAL: &str = "1E67BC1813BE76B106AB44097F2EC661555DD8DB";
    const PLATFORM2_CERT_PEM: &str = include_str!("testdata/fake_wechatpay_platform2_cert.pem");
    const PLATFORM2_CERT_SERIAL: &str = "27E2C32F08B7047F253ECCC60D1E2DBEE915EEAE";

    const V8_KEY: &[u8] = b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";

    fn v8_body() -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"data": [{
            "serial_no": "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC",
            "effective_time": "2023-09-19T11:04:34+08:00",
            "expire_time": "2028-09-17T11:04:34+08:00",
            "encrypt_certificate": {
                "algorithm": "AEAD_AES_256_GCM",
                "associated_data": "certificate",
                "nonce": "14b16c03dc1b",
                "ciphertext": include_str!("testdata/v8_certificate_ciphertext.txt").trim(),
            },
        }]}))
        .expect("json")
    }

    #[test]
    fn v8_gives_its_serial_key_and_validity() {
        let key = ApiV3Key::new(V8_KEY).expect("key");
        let now = rfc3339::parse("2026-01-01T00:00:00Z").expect("time");
        let certs = parse_certificates(&v8_body(), &key, now).expect("parses");
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].serial, "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC");
        assert_eq!(certs[0].key.bits(), 2048);
        let year = |t: i64| 1970 + t / 31_556_952;
        assert_eq!((year(certs[0].not_before), year(certs[0].not_after)), (2023, 2028));
    }

    #[test]
    fn a_wrong_apiv3_key_an_expired_list_and_a_lying_serial_are_refused() {
        let now = rfc3339::parse("2026-01-01T00:00:00Z").expect("time");
        let wrong = ApiV3Key::new(b"0123456789abcdef0123456789abcdef").expect("key");
        assert_eq!(parse_certificates(&v8_body(), &wrong, now), Err(CertificatesError::Decrypt));
        let key = ApiV3Key::new(V8_KEY).expect("key");
        let later = rfc3339::parse("2029-01-01T00:00:00Z").expect("time");
        assert!(matches!(parse_certificates(&v8_body(), &key, later), Err(CertificatesError::Invalid(_))));
        let lying = String::from_utf8(v8_body()).expect("utf8").replace("5DEA10EF", "5DEA10EE");
        assert!(matches!(parse_certificates(lying.as_bytes(), &key, now), Err(CertificatesError::Invalid(_))));
    }

    #[test]
    fn the_fakes_certificates_read_as_their_serials() {
        for (pem, serial) in [(PLATFORM_CERT_PEM, PLATFORM_CERT_SERIAL), (PLATFORM2_CERT_PEM, PLATFORM2_CERT_SERIAL)] {
            let cert = PlatformCertificate::from_pem(pem).expect("parses");
            assert_eq!(cert.serial, serial);
            assert_eq!(cert.not_after - cert.not_before, 1826 * 86_400);
        }
        let truncated = PLATFORM_CERT_PEM.replacen("MII", "MIJ", 1);
        assert!(PlatformCertificate::from_pem(&truncated).is_err());
    }

    #[test]
    fn the_verifier_uses_a_certificate_only_while_it_is_trusted_and_valid() {
        use crate::pay::verify::response_message;
        use crate::pay::{PayVerifier, Signed, SigningKey};
        let key = SigningKey::from_pem(include_str!("testdata/fake_wechatpay_platform_key.pem")).expect("key");
        let cert = PlatformCertificate::from_pem(PLATFORM_CERT_PEM).expect("parses");
        let now = cert.not_before + 100;
        let ts = now.to_string();
        let signature = key.sign_base64(&response_message(&ts, "nonce", b"{}")).expect("signs");
        let signed =
            Signed { timestamp: &ts, nonce: "nonce", signature: &signature, serial: PLATFORM_CERT_SERIAL, body: b"{}" };
        let verifier = std::sync::Arc::new(PayVerifier::default());
        let shared = verifier.clone();
        assert_eq!(shared.verify(&signed, now), Err(PayCryptoError::UnknownSerial));
        assert_eq!(shared.verify_also_with(&signed, now, std::slice::from_ref(&cert)), Ok(()));
        verifier.set_certificates(vec![cert.clone()]);
        assert_eq!(shared.verify(&signed, now), Ok(()), "every holder sees the refresh");
        assert_eq!(shared.key_id().as_deref(), Some(PLATFORM_CERT_SERIAL));
        let expired = PlatformCertificate { not_after: now - 1, ..cert };
        verifier.set_certificates(vec![expired]);
        assert_eq!(shared.verify(&signed, now), Err(PayCryptoError::UnknownSerial), "an expired one is not used");
    }

    #[test]
    fn refreshes_hourly_or_before_an_expiry() {
        let mut cert = PlatformCertificate::from_pem(PLATFORM_CERT_PEM).expect("parses");
        let now = cert.not_before + 10;
        assert_eq!(next_refresh(std::slice::from_ref(&cert), now), now + 3600);
        cert.not_after = now + 1200;
        assert_eq!(next_refresh(&[cert], now), now + 600);
    }
}
