//! The three keys of a WeChat Pay merchant, parsed once at start-up.
//!
//! A key that cannot work must stop start-up with a sentence that says what to do (most
//! bad keys are a format conversion away from good), not fail the first payment. The
//! types print their size at most: `Debug` never shows key material.

use std::fmt;

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};

use super::{der, pem, PayCryptoError};

/// ring signs with RSA keys of 2048 to 4096 bits; WeChat Pay issues 2048-bit ones.
const PRIVATE_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;
/// ring verifies with RSA keys of 2048 to 8192 bits.
const PUBLIC_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

fn key_error(message: impl fmt::Display) -> PayCryptoError {
    PayCryptoError::Key(message.to_string())
}

/// An RSA private key that signs with PKCS#1 v1.5 and SHA-256: the merchant's
/// `apiclient_key.pem` (and, in the fake WeChat Pay, its platform key).
pub struct SigningKey {
    pair: RsaKeyPair,
    rng: SystemRandom,
    bits: usize,
}

impl SigningKey {
    /// Parses a PKCS#8 PEM (`BEGIN PRIVATE KEY`), the form WeChat Pay's tool writes.
    pub fn from_pem(text: &str) -> Result<SigningKey, PayCryptoError> {
        let block = pem::decode(text).map_err(|e| key_error(format!("the private key {e}")))?;
        check_private_label(&block.label)?;
        let bits = der::pkcs8_rsa_modulus_bits(&block.der).map_err(|e| key_error(format!("the private key {e}")))?;
        if !PRIVATE_BITS.contains(&bits) {
            return Err(key_error(format!(
                "the private key is a {bits}-bit RSA key; WeChat Pay merchant keys are 2048-bit \
                 (2048 to 4096 bits are accepted)"
            )));
        }
        let pair = RsaKeyPair::from_pkcs8(&block.der)
            .map_err(|rejected| key_error(format!("the private key is not a valid RSA key ({rejected})")))?;
        Ok(SigningKey { pair, rng: SystemRandom::new(), bits })
    }

    /// Signs `message` (RSASSA-PKCS1-v1_5, SHA-256) and returns the signature as standard
    /// base64, the form every WeChat Pay signature takes.
    pub fn sign_base64(&self, message: &[u8]) -> Result<String, PayCryptoError> {
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
            .map_err(|_| PayCryptoError::Sign("the RSA signature failed".into()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(signature))
    }

    /// The matching public key, so that the fake WeChat Pay can check the merchant's
    /// signatures and tests can check a round trip.
    pub fn verifying_key(&self) -> VerifyingKey {
        let pkcs1 = self.pair.public().as_ref().to_vec();
        VerifyingKey { pkcs1, bits: self.bits }
    }

    pub fn bits(&self) -> usize {
        self.bits
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}-bit RSA, ***)", self.bits)
    }
}

/// Turns the labels people actually paste into advice; only `PRIVATE KEY` passes.
fn check_private_label(label: &str) -> Result<(), PayCryptoError> {
    let advice = match label {
        "PRIVATE KEY" => return Ok(()),
        "RSA PRIVATE KEY" => {
            "is PKCS#1 (BEGIN RSA PRIVATE KEY); WeChat Pay's apiclient_key.pem is PKCS#8 \
             (BEGIN PRIVATE KEY): convert it with `openssl pkcs8 -topk8 -nocrypt -in old.pem -out apiclient_key.pem`"
        }
        "ENCRYPTED PRIVATE KEY" => {
            "is encrypted; store it decrypted (`openssl pkcs8 -in old.pem -out \
             apiclient_key.pem` asks for the passphrase) and protect the file instead"
        }
        "PUBLIC KEY" | "CERTIFICATE" => {
            "is a public key or certificate, not a private key: use apiclient_key.pem \
             (BEGIN PRIVATE KEY)"
        }
        _ => "has an unknown PEM label; expected -----BEGIN PRIVATE KEY-----",
    };
    Err(key_error(format!("the private key {advice} (found BEGIN {label})")))
}

/// An RSA public key that verifies PKCS#1 v1.5 SHA-256 signatures: the WeChat Pay public
/// key (`pub_key.pem`), or a platform certificate's key. Public, but printed by size only
/// to keep logs short.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    /// PKCS#1 `RSAPublicKey` DER, the form ring takes.
    pkcs1: Vec<u8>,
    bits: usize,
}

impl VerifyingKey {
    /// Parses a SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`), as WeChat Pay hands it out.
    pub fn from_pem(text: &str) -> Result<VerifyingKey, PayCryptoError> {
        let block = pem::decode(text).map_err(|e| key_error(format!("the public key {e}")))?;
        check_public_label(&block.label)?;
        let key = der::spki_rsa_public_key(&block.der).map_err(|e| key_error(format!("the public key {e}")))?;
        VerifyingKey::from_parsed(key)
    }

    /// Takes a PKCS#1 `RSAPublicKey` DER (what a certificate or ring's key pair holds).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<VerifyingKey, PayCryptoError> {
        let key = der::pkcs1_rsa_public_key(der).map_err(|e| key_error(format!("the public key {e}")))?;
        VerifyingKey::from_parsed(key)
    }

    fn from_parsed(key: der::RsaPublicKey<'_>) -> Result<VerifyingKey, PayCryptoError> {
        if !PUBLIC_BITS.contains(&key.modulus_bits) {
            return Err(key_error(format!(
                "the public key is a {}-bit RSA key; 2048 to 8192 bits are accepted",
                key.modulus_bits
            )));
        }
        Ok(VerifyingKey { pkcs1: key.pkcs1.to_vec(), bits: key.modulus_bits })
    }

    /// Whether `signature` (raw bytes, not base64) is this key's over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.pkcs1).verify(message, signature).is_ok()
    }

    pub fn bits(&self) -> usize {
        self.bits
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({}-bit RSA)", self.bits)
    }
}

fn check_public_label(label: &str) -> Result<(), PayCryptoError> {
    let advice = match label {
        "PUBLIC KEY" => return Ok(()),
        "RSA PUBLIC KEY" => {
            "is PKCS#1 (BEGIN RSA PUBLIC KEY); convert it with \
             `openssl rsa -RSAPublicKey_in -in old.pem -pubout -out pub_key.pem`"
        }
        "CERTIFICATE" => {
            "is a certificate; the WeChat Pay public key file (pub_key.pem) begins with \
             BEGIN PUBLIC KEY (platform certificates are fetched, not configured)"
        }
        "PRIVATE KEY" | "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
            "is a private key; the WeChat Pay public key (pub_key.pem) begins with BEGIN PUBLIC KEY"
        }
        _ => "has an unknown PEM label; expected -----BEGIN PUBLIC KEY-----",
    };
    Err(key_error(format!("the public key {advice} (found BEGIN {label})")))
}

/// The APIv3 key: 32 bytes, used as they are as the AES-256-GCM key of `resource`s.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiV3Key([u8; 32]);

impl ApiV3Key {
    /// Refuses anything but exactly 32 bytes: a shorter or longer key would fail every
    /// notification, so it fails start-up instead. (A key read from a file arrives with
    /// its trailing newline; the caller trims it, as it does for every secret file.)
    pub fn new(key: &[u8]) -> Result<ApiV3Key, PayCryptoError> {
        let bytes: [u8; 32] = key
            .try_into()
            .map_err(|_| key_error(format!("the APIv3 key must be exactly 32 bytes (it is {} bytes)", key.len())))?;
        Ok(ApiV3Key(bytes))
    }

    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV3Key(***)")
    }
}
