//! What wxlogin checks before it believes WeChat Pay: the signature of every answer and
//! notification, and the encrypted `resource` a notification carries.
//!
//! The signed message is `TIMESTAMP\nNONCE\nBODY\n` over the raw body bytes as received
//! (research/wechat-pay.md §5): parsing and re-serialising the JSON first would change
//! them. The checks are pure, with `now` passed in, so that tests and the fake WeChat Pay
//! can move the clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use serde::{Deserialize, Serialize};

use super::{ApiV3Key, PayCryptoError, PlatformCertificate, VerifyingKey};
use crate::secrets::random_id;

/// How far `Wechatpay-Timestamp` may be from our clock, either way (pay.md: refused when
/// "more than 5 minutes off"), so that a recorded notification cannot be replayed later.
pub const WINDOW_SECONDS: i64 = 300;

/// The start of the signature of WeChat Pay's deliberate probes: a handler that accepts
/// one does not check signatures.
pub const PROBE_PREFIX: &str = "WECHATPAY/SIGNTEST/";

/// The only resource algorithm APIv3 uses.
pub const AEAD_AES_256_GCM: &str = "AEAD_AES_256_GCM";

/// The `Wechatpay-*` headers of an answer or a notification, and its raw body.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub signature: &'a str,
    pub serial: &'a str,
    pub body: &'a [u8],
}

/// The WeChat Pay keys we trust, each under the id that `Wechatpay-Serial` names it by:
/// the public key under its id (fixed at start-up), and the platform certificates under
/// their serials, replaced while the server runs as they are fetched again
/// (`pay.platform_certificates`; both at once while a merchant migrates). Shared behind an
/// `Arc`, so every holder sees a refresh at once; readers copy the certificate list's
/// `Arc` out of the lock and never wait for a fetch.
#[derive(Debug, Default)]
pub struct PayVerifier {
    keys: Vec<(String, VerifyingKey)>,
    certificates: RwLock<Arc<Vec<PlatformCertificate>>>,
    /// A message named a serial we do not hold: perhaps a certificate WeChat Pay has just
    /// started to use, so the certificate thread fetches early.
    unknown_serial_seen: AtomicBool,
}

impl Clone for PayVerifier {
    fn clone(&self) -> PayVerifier {
        PayVerifier {
            keys: self.keys.clone(),
            certificates: RwLock::new(self.certificates()),
            unknown_serial_seen: AtomicBool::new(false),
        }
    }
}

impl PayVerifier {
    pub fn new(key_id: &str, key: VerifyingKey) -> PayVerifier {
        PayVerifier { keys: vec![(key_id.to_string(), key)], ..PayVerifier::default() }
    }

    /// Trusts one more fixed key.
    pub fn add(&mut self, key_id: &str, key: VerifyingKey) {
        self.keys.push((key_id.to_string(), key));
    }

    /// The platform certificates trusted now.
    pub fn certificates(&self) -> Arc<Vec<PlatformCertificate>> {
        // A poisoned lock still holds a whole list: the writer only swaps an Arc.
        self.certificates.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Trusts exactly these certificates from now on (a refresh).
    pub fn set_certificates(&self, certificates: Vec<PlatformCertificate>) {
        *self.certificates.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certificates);
    }

    /// Checks, in order: not a probe, a serial we hold, a timestamp within
    /// [`WINDOW_SECONDS`] of `now`, a well-formed nonce, and the signature over the raw body. Any failure means
    /// the message is not WeChat Pay's ([`PayCryptoError::is_untrusted`]).
    pub fn verify(&self, signed: &Signed<'_>, now: i64) -> Result<(), PayCryptoError> {
        self.verify_also_with(signed, now, &[])
    }

    /// [`verify`](Self::verify), also trusting `fetched`: certificates just decrypted with
    /// the APIv3 key, for the `/v3/certificates` answer that carries them (the first fetch
    /// has nothing else to verify it with).
    pub fn verify_also_with(
        &self,
        signed: &Signed<'_>,
        now: i64,
        fetched: &[PlatformCertificate],
    ) -> Result<(), PayCryptoError> {
        if signed.signature.starts_with(PROBE_PREFIX) {
            return Err(PayCryptoError::SignatureProbe);
        }
        let Some(key) = self.key_for(signed.serial, now, fetched) else {
            self.unknown_serial_seen.store(true, Ordering::Relaxed);
            return Err(PayCryptoError::UnknownSerial);
        };
        check_window(parse_timestamp(signed.timestamp)?, now)?;
        check_nonce(signed.nonce)?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signed.signature)
            .map_err(|_| PayCryptoError::BadHeader("Wechatpay-Signature is not base64"))?;
        let message = response_message(signed.timestamp, signed.nonce, signed.body);
        if key.verify(&message, &signature) {
            Ok(())
        } else {
            Err(PayCryptoError::BadSignature)
        }
    }

    /// Whether a serial we do not hold was seen since the last call (and forgets it).
    pub fn take_unknown_serial_seen(&self) -> bool {
        self.unknown_serial_seen.swap(false, Ordering::Relaxed)
    }

    /// The id sent as `Wechatpay-Serial` on requests so that WeChat Pay signs its answers
    /// with a key we hold: the public key's, else the certificate valid the longest.
    pub fn key_id(&self) -> Option<String> {
        if let Some((id, _)) = self.keys.first() {
            return Some(id.clone());
        }
        self.certificates().iter().max_by_key(|c| c.not_after).map(|c| c.serial.clone())
    }

    fn key_for(&self, serial: &str, now: i64, fetched: &[PlatformCertificate]) -> Option<VerifyingKey> {
        if let Some((_, key)) = self.keys.iter().find(|(id, _)| id == serial) {
            return Some(key.clone());
        }
        let held = self.certificates();
        let usable = |c: &&PlatformCertificate| c.serial == serial && c.is_valid_at(now);
        held.iter().chain(fetched).find(usable).map(|c| c.key.clone())
    }
}

/// `TIMESTAMP\nNONCE\nBODY\n`, the body as raw bytes (an empty body leaves just `\n`).
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// Unix seconds, digits only: no sign, no spaces, no milliseconds' worth of digits.
fn parse_timestamp(text: &str) -> Result<i64, PayCryptoError> {
    let digits_only = !text.is_empty() && text.len() <= 11 && text.bytes().all(|b| b.is_ascii_digit());
    let parsed = if digits_only { text.parse().ok() } else { None };
    parsed.ok_or(PayCryptoError::BadHeader("Wechatpay-Timestamp is not Unix seconds"))
}

fn check_window(timestamp: i64, now: i64) -> Result<(), PayCryptoError> {
    let skew = now.saturating_sub(timestamp);
    if skew.unsigned_abs() > WINDOW_SECONDS.unsigned_abs() {
        return Err(PayCryptoError::TimestampSkew { skew });
    }
    Ok(())
}

/// A nonce of visible ASCII only: one holding a newline could move the line boundaries of
/// the signed message, turning the tail of a genuine body into a different, "signed" body.
fn check_nonce(nonce: &str) -> Result<(), PayCryptoError> {
    if nonce.is_empty() || nonce.len() > 128 || !nonce.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PayCryptoError::BadHeader("Wechatpay-Nonce is not 1 to 128 visible ASCII characters"));
    }
    Ok(())
}

/// The encrypted part of a notification (and of `/v3/certificates` entries), as WeChat
/// Pay sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub algorithm: String,
    /// Standard base64 of the ciphertext with the 16-byte GCM tag at its end.
    pub ciphertext: String,
    /// The AAD, used as it comes: its value differs by notification type (and is absent
    /// or empty in some of WeChat's samples), so nothing may assume it.
    #[serde(default)]
    pub associated_data: Option<String>,
    /// 12 characters, used as their bytes (not base64).
    pub nonce: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_type: Option<String>,
}

impl Resource {
    /// The plaintext bytes (JSON, for a notification), once the tag proves they were
    /// encrypted with our APIv3 key and this nonce and AAD.
    pub fn decrypt(&self, key: &ApiV3Key) -> Result<Vec<u8>, PayCryptoError> {
        if self.algorithm != AEAD_AES_256_GCM {
            return Err(PayCryptoError::Decrypt("the algorithm is not AEAD_AES_256_GCM"));
        }
        decrypt(key, &self.nonce, self.associated_data.as_deref().unwrap_or(""), &self.ciphertext)
    }

    /// Encrypts `plaintext` with a fresh random nonce: what WeChat Pay does, for the fake.
    pub fn encrypt(
        key: &ApiV3Key,
        original_type: &str,
        associated_data: &str,
        plaintext: &[u8],
    ) -> Result<Resource, PayCryptoError> {
        let nonce = random_id(NONCE_LEN / 2);
        let ciphertext = encrypt(key, &nonce, associated_data, plaintext)?;
        Ok(Resource {
            algorithm: AEAD_AES_256_GCM.to_string(),
            ciphertext,
            associated_data: Some(associated_data.to_string()),
            nonce,
            original_type: Some(original_type.to_string()),
        })
    }
}

/// AEAD_AES_256_GCM decryption as WeChat Pay specifies it: the APIv3 key's 32 bytes, the
/// nonce's 12 bytes as text, the AAD as text, the ciphertext base64 with its tag at the end.
pub fn decrypt(key: &ApiV3Key, nonce: &str, aad: &str, ciphertext_b64: &str) -> Result<Vec<u8>, PayCryptoError> {
    let nonce = gcm_nonce(nonce)?;
    let mut buffer = base64::engine::general_purpose::STANDARD
        .decode(ciphertext_b64)
        .map_err(|_| PayCryptoError::Decrypt("the ciphertext is not base64"))?;
    if buffer.len() < AES_256_GCM.tag_len() {
        return Err(PayCryptoError::Decrypt("the ciphertext is shorter than its tag"));
    }
    let plaintext_len = aead_key(key)
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buffer)
        .map_err(|_| PayCryptoError::Decrypt("its tag does not match (another APIv3 key, or altered)"))?
        .len();
    buffer.truncate(plaintext_len);
    Ok(buffer)
}

/// The inverse of [`decrypt`], for the fake WeChat Pay.
pub fn encrypt(key: &ApiV3Key, nonce: &str, aad: &str, plaintext: &[u8]) -> Result<String, PayCryptoError> {
    let nonce = gcm_nonce(nonce).map_err(|_| PayCryptoError::Sign("the GCM nonce must be 12 bytes".into()))?;
    let mut buffer = plaintext.to_vec();
    aead_key(key)
        .seal_in_place_append_tag(nonce, Aad::from(aad.as_bytes()), &mut buffer)
        .map_err(|_| PayCryptoError::Sign("the plaintext is too long for AES-GCM".into()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buffer))
}

fn gcm_nonce(nonce: &str) -> Result<Nonce, PayCryptoError> {
    let bytes: [u8; NONCE_LEN] =
        nonce.as_bytes().try_into().map_err(|_| PayCryptoError::Decrypt("the nonce is not 12 bytes"))?;
    Ok(Nonce::assume_unique_for_key(bytes))
}

fn aead_key(key: &ApiV3Key) -> LessSafeKey {
    // AES_256_GCM takes exactly 32 bytes, which ApiV3Key guarantees; ring has no other refusal.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.expose()).expect("a 32-byte key for AES-256"))
}
