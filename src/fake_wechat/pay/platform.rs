//! The keys the fake signs with, and `GET /v3/certificates`.
//!
//! research §5: an answer's or notification's `Wechatpay-Serial` is either the WeChat Pay
//! public key id (`PUB_KEY_ID_...`) or the serial of a platform certificate; older
//! merchants fetch their platform certificates from `/v3/certificates`, encrypted with
//! the APIv3 key (AEAD_AES_256_GCM, AAD `certificate`, as vector V8 of research §10), and
//! during the certificate → public key migration callbacks arrive signed by either
//! (research §5 rule 3: wechatpay-go `sha256withrsa_combined_verifier.go`). The modes:
//!
//! - `public_key`: everything signed with the platform key, serial = the public key id;
//! - `certificate`: everything signed with the key of the first certificate (the platform
//!   key), serial = that certificate's serial in upper-case hex (as V8's `serial_no`);
//! - `mixed`: alternately the public key and the second certificate, whose key is another
//!   one, so a client that ignores `Wechatpay-Serial` fails half of the time.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use serde_json::{json, Value};

use crate::pay::{ApiV3Key, PayCryptoError, Resource, SigningKey};

use super::wire::format_cst;
use super::{
    PLATFORM2_CERT_PEM, PLATFORM2_CERT_SERIAL, PLATFORM2_KEY_PEM, PLATFORM_CERT_PEM, PLATFORM_CERT_SERIAL,
    PLATFORM_KEY_PEM, PLATFORM_PUBLIC_KEY_ID,
};

/// Validity of both committed certificates (`openssl x509 -startdate -enddate`):
/// 2026-12-02T17:25:13Z for five years.
const CERT_EFFECTIVE: i64 = 1_796_232_313;
const CERT_EXPIRE: i64 = 1_953_998_713;

/// Which key signs (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlatformMode {
    #[default]
    PublicKey,
    Certificate,
    Mixed,
}

impl PlatformMode {
    pub const NAMES: &'static str = "public_key, certificate, mixed";

    fn index(self) -> u8 {
        match self {
            PlatformMode::PublicKey => 0,
            PlatformMode::Certificate => 1,
            PlatformMode::Mixed => 2,
        }
    }

    fn from_index(i: u8) -> PlatformMode {
        match i {
            1 => PlatformMode::Certificate,
            2 => PlatformMode::Mixed,
            _ => PlatformMode::PublicKey,
        }
    }
}

impl FromStr for PlatformMode {
    type Err = String;

    fn from_str(s: &str) -> Result<PlatformMode, String> {
        match s {
            "public_key" => Ok(PlatformMode::PublicKey),
            "certificate" => Ok(PlatformMode::Certificate),
            "mixed" => Ok(PlatformMode::Mixed),
            other => Err(format!("{other:?} is not one of {}", PlatformMode::NAMES)),
        }
    }
}

impl fmt::Display for PlatformMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlatformMode::PublicKey => "public_key",
            PlatformMode::Certificate => "certificate",
            PlatformMode::Mixed => "mixed",
        })
    }
}

/// One key and the serial that names it.
#[derive(Clone, Copy)]
pub(crate) struct Signer<'a> {
    pub key: &'a SigningKey,
    pub serial: &'a str,
}

struct Certificate {
    serial: &'static str,
    pem: &'static str,
    key: SigningKey,
}

/// The platform keys and the mode, switchable while the fake runs.
pub(crate) struct Platform {
    public_key: SigningKey,
    certificates: [Certificate; 2],
    mode: AtomicU8,
    /// Signatures made in mixed mode, to alternate.
    count: AtomicU64,
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Platform").field("mode", &self.mode()).finish_non_exhaustive()
    }
}

impl Platform {
    pub(crate) fn new(mode: PlatformMode) -> Platform {
        let key = |pem| SigningKey::from_pem(pem).expect("the committed platform keys parse");
        Platform {
            public_key: key(PLATFORM_KEY_PEM),
            certificates: [
                Certificate { serial: PLATFORM_CERT_SERIAL, pem: PLATFORM_CERT_PEM, key: key(PLATFORM_KEY_PEM) },
                Certificate { serial: PLATFORM2_CERT_SERIAL, pem: PLATFORM2_CERT_PEM, key: key(PLATFORM2_KEY_PEM) },
            ],
            mode: AtomicU8::new(mode.index()),
            count: AtomicU64::new(0),
        }
    }

    pub(crate) fn mode(&self) -> PlatformMode {
        PlatformMode::from_index(self.mode.load(Ordering::SeqCst))
    }

    /// Switches mode mid-run (`POST /__fake/pay/platform`); mixed starts on a certificate.
    pub(crate) fn set_mode(&self, mode: PlatformMode) {
        self.count.store(0, Ordering::SeqCst);
        self.mode.store(mode.index(), Ordering::SeqCst);
    }

    /// The key and serial of the next signature (answer or notification).
    pub(crate) fn signer(&self) -> Signer<'_> {
        let public = Signer { key: &self.public_key, serial: PLATFORM_PUBLIC_KEY_ID };
        let [first, second] = &self.certificates;
        let chosen = match self.mode() {
            PlatformMode::PublicKey => return public,
            PlatformMode::Certificate => first,
            PlatformMode::Mixed if self.count.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) => second,
            PlatformMode::Mixed => return public,
        };
        Signer { key: &chosen.key, serial: chosen.serial }
    }

    /// The body of `GET /v3/certificates` (research §5, shape from wechatpay-java
    /// `TestConfig.java` `DOWNLOAD_CERTIFICATE_RESPONSE`): every certificate the fake may
    /// sign with, whatever the mode (WeChat Pay lists all valid ones), each freshly
    /// encrypted with the APIv3 key.
    pub(crate) fn certificates_body(&self, apiv3_key: &ApiV3Key) -> Result<Value, PayCryptoError> {
        let mut data = Vec::new();
        for c in &self.certificates {
            let r = Resource::encrypt(apiv3_key, "certificate", "certificate", c.pem.as_bytes())?;
            data.push(json!({
                "serial_no": c.serial,
                "effective_time": format_cst(CERT_EFFECTIVE),
                "expire_time": format_cst(CERT_EXPIRE),
                "encrypt_certificate": {
                    "algorithm": r.algorithm,
                    "associated_data": r.associated_data,
                    "nonce": r.nonce,
                    "ciphertext": r.ciphertext,
                },
            }));
        }
        Ok(json!({"data": data}))
    }

    /// What `GET /__fake/pay/stats` reports.
    pub(crate) fn describe(&self) -> Value {
        json!({
            "mode": self.mode().to_string(),
            "certificates": self.certificates.iter().map(|c| json!({"serial_no": c.serial, "pem": c.pem})).collect::<Vec<_>>(),
        })
    }
}
