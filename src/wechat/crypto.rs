//! WeChat's open-data cryptography: AES-128-CBC open data, the rawData signature and the
//! session_key signature (wechat-api.md §4a, §5).
//!
//! Everything here is a pure function of its inputs, so that the server, the fake WeChat
//! and the tests all agree on one implementation. The primitives come from RustCrypto;
//! this module only decides what goes in and what counts as failure.

use aes::cipher::{block_padding::Pkcs7, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use base64::Engine;
use hmac::{KeyInit, Mac};
use sha1::Digest;

use crate::secrets::{ct_eq, hex};

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

const BLOCK: usize = 16;

/// Why open data could not be turned into a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenDataError {
    /// Malformed input, naming the field ("encrypted_data" or "iv") and what is wrong with it.
    Invalid { field: &'static str, reason: String },
    /// The bytes do not decrypt to a JSON object with this key (padding, UTF-8 and JSON
    /// failures are deliberately one case: they all mean "made with another session_key").
    Undecryptable,
}

impl std::fmt::Display for OpenDataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenDataError::Invalid { field, reason } => write!(f, "{field} {reason}"),
            OpenDataError::Undecryptable => f.write_str("the data does not decrypt with this session_key"),
        }
    }
}

impl std::error::Error for OpenDataError {}

/// Decodes a standard, padded base64 field.
///
/// Spaces are turned back into '+' first: mini-program code that posts a form or builds a
/// query string without encoding turns every '+' into a space on the way, and the repair
/// is unambiguous because a space is never valid base64. Anything else non-canonical is
/// refused rather than guessed at.
pub fn decode_base64_field(field: &'static str, value: &str) -> Result<Vec<u8>, OpenDataError> {
    let repaired = value.replace(' ', "+");
    base64::engine::general_purpose::STANDARD
        .decode(repaired.as_bytes())
        .map_err(|e| OpenDataError::Invalid { field, reason: format!("is not valid base64 ({e})") })
}

/// Decodes and checks the shape of `encrypted_data` (a positive multiple of 16 bytes) and
/// `iv` (exactly 16 bytes) without any key, so that a caller can refuse malformed input
/// before it spends anything (a login code, say) on it.
pub fn decode_open_data_input(encrypted_data: &str, iv: &str) -> Result<(Vec<u8>, [u8; BLOCK]), OpenDataError> {
    let ciphertext = decode_base64_field("encrypted_data", encrypted_data)?;
    if ciphertext.is_empty() || ciphertext.len() % BLOCK != 0 {
        return Err(OpenDataError::Invalid {
            field: "encrypted_data",
            reason: format!("must decode to a positive multiple of 16 bytes, got {} bytes", ciphertext.len()),
        });
    }
    let iv = decode_base64_field("iv", iv)?;
    let iv: [u8; BLOCK] = iv.as_slice().try_into().map_err(|_| OpenDataError::Invalid {
        field: "iv",
        reason: format!("must decode to exactly 16 bytes, got {} bytes", iv.len()),
    })?;
    Ok((ciphertext, iv))
}

/// Decrypts what `wx.getUserInfo`, the old `getPhoneNumber`, `wx.getWeRunData` and the
/// like hand the mini-program, with the user's session_key.
///
/// Shape errors in what the client sent (`Invalid`) are told apart from a key that does
/// not fit (`Undecryptable`), because the client fixes the first by fixing its code and
/// the second by calling `wx.login` again. A stored session_key that is not base64 of 16
/// bytes can only mean the key is not the one the data was made with, hence
/// `Undecryptable` too.
pub fn decrypt_open_data(
    session_key: &str,
    encrypted_data: &str,
    iv: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, OpenDataError> {
    let (ciphertext, iv) = decode_open_data_input(encrypted_data, iv)?;
    let key = session_key_bytes(session_key).ok_or(OpenDataError::Undecryptable)?;

    let plaintext = Aes128CbcDec::new(&key.into(), &iv.into())
        .decrypt_padded_vec::<Pkcs7>(&ciphertext)
        .map_err(|_| OpenDataError::Undecryptable)?;
    match serde_json::from_slice::<serde_json::Value>(&plaintext) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(OpenDataError::Undecryptable),
    }
}

/// Encrypts `plaintext` the way WeChat does for open data; returns standard base64.
///
/// Only the fake WeChat and tests produce open data, so a session_key that is not base64
/// of 16 bytes is not worth an error path here: its text is hashed into a key instead, and
/// the result then fails to decrypt with anything, which is what a broken key should do.
pub fn encrypt_open_data(session_key: &str, iv: &[u8; 16], plaintext: &[u8]) -> String {
    let key = session_key_bytes(session_key).unwrap_or_else(|| {
        let digest = crate::secrets::sha256(session_key.as_bytes());
        let mut key = [0u8; BLOCK];
        key.copy_from_slice(&digest[..BLOCK]);
        key
    });
    let ciphertext = Aes128CbcEnc::new(&key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext);
    base64::engine::general_purpose::STANDARD.encode(ciphertext)
}

/// The `signature` that comes with `rawData`: proof that the profile text came from
/// WeChat for this session. It is computed over the exact text received, never over a
/// re-serialisation, because any byte of difference changes the hash.
pub fn raw_data_signature(raw_data: &str, session_key: &str) -> String {
    let mut hasher = sha1::Sha1::new();
    hasher.update(raw_data.as_bytes());
    hasher.update(session_key.as_bytes());
    hex(&hasher.finalize())
}

/// Checks a client-supplied rawData signature in constant time; upper-case hex is
/// accepted because some client libraries produce it.
pub fn signature_matches(raw_data: &str, session_key: &str, signature: &str) -> bool {
    let expected = raw_data_signature(raw_data, session_key);
    ct_eq(expected.as_bytes(), signature.to_ascii_lowercase().as_bytes())
}

/// The `signature` for `wxa/checksession` and `wxa/resetusersessionkey`, which prove
/// knowledge of the session_key without sending it. The HMAC key is the session_key's
/// base64 TEXT, not its decoded bytes (verified against WeChat's own example, §4a).
pub fn session_key_signature(session_key: &str) -> String {
    session_hmac_hex(session_key, b"")
}

/// WeChat's "用户登录态签名": hex(HMAC-SHA256(key = session_key text, message)).
/// GET APIs sign the empty message; kept general so the official vector over a body can
/// be checked.
fn session_hmac_hex(session_key: &str, message: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(session_key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(message);
    hex(&mac.finalize().into_bytes())
}

/// The 16 AES key bytes of a session_key, if it is what WeChat issues.
fn session_key_bytes(session_key: &str) -> Option<[u8; BLOCK]> {
    let bytes = decode_base64_field("session_key", session_key).ok()?;
    bytes.as_slice().try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // wechat-api.md §5a: WeChat's official demo vector.
    const APPID: &str = "wx4f4bc4dec97d474b";
    const SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const ENCRYPTED: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
    const PLAINTEXT: &str = r#"{"openId":"oGZUI0egBJY1zhBYw2KhdUfwVJJE","nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/aSKcBBPpibyKNicHNTMM0qJVh8Kjgiak2AHWr8MHM4WgMEm7GFhsf8OYrySdbvAMvTsw3mo8ibKicsnfN5pRjl1p8HQ/0","unionId":"ocMvos6NjeKLIBqg5Mr9QjxrP1FA","watermark":{"timestamp":1477314187,"appid":"wx4f4bc4dec97d474b"}}"#;

    fn iv_bytes() -> [u8; 16] {
        let iv = decode_base64_field("iv", IV).expect("vector iv");
        iv.as_slice().try_into().expect("16 bytes")
    }

    /// The raw decrypted bytes, for the byte-exact check the JSON map cannot give.
    fn decrypt_raw(key: &str, data: &str, iv: &[u8; 16]) -> Vec<u8> {
        let key = session_key_bytes(key).expect("vector key");
        let ct = decode_base64_field("encrypted_data", data).expect("vector data");
        Aes128CbcDec::new(&key.into(), iv.into()).decrypt_padded_vec::<Pkcs7>(&ct).expect("vector decrypts")
    }

    #[test]
    fn official_vector_decrypts_to_the_documented_plaintext() {
        assert_eq!(PLAINTEXT.len(), 393);
        let raw = decrypt_raw(SESSION_KEY, ENCRYPTED, &iv_bytes());
        assert_eq!(raw, PLAINTEXT.as_bytes());
        assert_eq!(
            hex(&crate::secrets::sha256(&raw)),
            "3237d8a5dbd413523c194882c7156544d8a06e2afcc97383cc300c17bd09391b"
        );

        let map = decrypt_open_data(SESSION_KEY, ENCRYPTED, IV).expect("decrypts");
        assert_eq!(map["openId"], "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
        assert_eq!(map["unionId"], "ocMvos6NjeKLIBqg5Mr9QjxrP1FA");
        assert_eq!(map["watermark"]["appid"], APPID);
        assert_eq!(map["watermark"]["timestamp"], 1477314187);
    }

    #[test]
    fn official_vector_reencrypts_byte_exact() {
        assert_eq!(encrypt_open_data(SESSION_KEY, &iv_bytes(), PLAINTEXT.as_bytes()), ENCRYPTED);
    }

    #[test]
    fn official_vector_survives_spaces_for_plus() {
        let mangled = ENCRYPTED.replace('+', " ");
        assert_ne!(mangled, ENCRYPTED);
        assert!(decrypt_open_data(SESSION_KEY, &mangled, IV).is_ok());
    }

    #[test]
    fn official_vector_with_another_key_is_undecryptable() {
        assert_eq!(decrypt_open_data("HyVFkGl5F5OQWJZZaNzBBg==", ENCRYPTED, IV), Err(OpenDataError::Undecryptable));
    }

    #[test]
    fn stored_key_that_is_not_16_bytes_is_undecryptable() {
        for key in ["", "not base64!", "AAAA", "tiihtNczf5v6AKRyjwEUhQ"] {
            assert_eq!(decrypt_open_data(key, ENCRYPTED, IV), Err(OpenDataError::Undecryptable), "{key:?}");
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        let err = |data: &str, iv: &str| match decrypt_open_data(SESSION_KEY, data, iv) {
            Err(OpenDataError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert_eq!(err("", IV), "encrypted_data");
        assert_eq!(err("%%%", IV), "encrypted_data");
        assert_eq!(err("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", IV), "encrypted_data");
        assert_eq!(err(ENCRYPTED, ""), "iv");
        assert_eq!(err(ENCRYPTED, "AAAA"), "iv");
        assert_eq!(err(ENCRYPTED, "r7BXXKkLb8qrSNn05n0qiA"), "iv");
    }

    #[test]
    fn valid_ciphertext_of_a_non_object_is_undecryptable() {
        let iv = [7u8; 16];
        for plaintext in ["[1,2]", "\"text\"", "42", "not json", "{\"a\":"] {
            let data = encrypt_open_data(SESSION_KEY, &iv, plaintext.as_bytes());
            let iv64 = base64::engine::general_purpose::STANDARD.encode(iv);
            assert_eq!(decrypt_open_data(SESSION_KEY, &data, &iv64), Err(OpenDataError::Undecryptable), "{plaintext}");
        }
        let data = encrypt_open_data(SESSION_KEY, &iv, &[0xff, 0xfe, b'{', b'}']);
        let iv64 = base64::engine::general_purpose::STANDARD.encode(iv);
        assert_eq!(decrypt_open_data(SESSION_KEY, &data, &iv64), Err(OpenDataError::Undecryptable));
    }

    #[test]
    fn raw_data_signature_official_vector() {
        let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
        let key = "HyVFkGl5F5OQWJZZaNzBBg==";
        let expected = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";
        assert_eq!(raw_data_signature(raw, key), expected);
        assert!(signature_matches(raw, key, expected));
        assert!(signature_matches(raw, key, &expected.to_ascii_uppercase()));
        assert!(!signature_matches(raw, key, &expected[..39]));
        assert!(!signature_matches(raw, SESSION_KEY, expected));
        assert!(!signature_matches(&format!("{raw} "), key, expected));
        assert!(!signature_matches(raw, key, ""));
    }

    #[test]
    fn session_key_hmac_official_vector_over_a_body() {
        assert_eq!(
            session_hmac_hex("o0q0otL8aEzpcZL/FT9WsQ==", br#"{"foo":"bar"}"#),
            "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b"
        );
    }

    #[test]
    fn session_key_signature_uses_the_key_text_and_the_empty_message() {
        assert_eq!(
            session_key_signature("o0q0otL8aEzpcZL/FT9WsQ=="),
            "46e043c5525c2d817c44be603d30837a808a1d930d038f6fdc3e62a201fed128"
        );
        assert_eq!(
            session_key_signature(SESSION_KEY),
            "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"
        );
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn json_object() -> impl Strategy<Value = serde_json::Map<String, serde_json::Value>> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,20}".prop_map(serde_json::Value::from),
        ];
        let value = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        });
        prop::collection::btree_map(".{0,12}", value, 0..6).prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #[test]
        fn encrypt_then_decrypt_round_trips(
            obj in json_object(), key in any::<[u8; 16]>(), iv in any::<[u8; 16]>()
        ) {
            let key = b64(&key);
            let text = serde_json::to_vec(&obj).expect("serialises");
            let data = encrypt_open_data(&key, &iv, &text);
            prop_assert_eq!(decrypt_open_data(&key, &data, &b64(&iv)), Ok(obj));
        }

        #[test]
        fn truncated_ciphertext_is_invalid_encrypted_data(
            obj in json_object(), key in any::<[u8; 16]>(), iv in any::<[u8; 16]>(), cut in 1usize..16
        ) {
            let key = b64(&key);
            let text = serde_json::to_vec(&obj).expect("serialises");
            let data = encrypt_open_data(&key, &iv, &text);
            let mut ct = decode_base64_field("encrypted_data", &data).expect("own output");
            let keep = ct.len() - cut;
            ct.truncate(keep);
            let result = decrypt_open_data(&key, &b64(&ct), &b64(&iv));
            prop_assert!(
                matches!(result, Err(OpenDataError::Invalid { field: "encrypted_data", .. })),
                "{:?}", result
            );
        }

        #[test]
        fn tampering_or_wrong_key_never_panics(
            obj in json_object(), key in any::<[u8; 16]>(), other in any::<[u8; 16]>(),
            iv in any::<[u8; 16]>(), bit in 0usize..128
        ) {
            let text = serde_json::to_vec(&obj).expect("serialises");
            let data = encrypt_open_data(&b64(&key), &iv, &text);
            let mut ct = decode_base64_field("encrypted_data", &data).expect("own output");
            let last_block = ct.len() - 16;
            ct[last_block + bit / 8] ^= 1 << (bit % 8);
            // Either case may, very rarely, still produce a JSON object; what matters is
            // that it is never a panic or a shape error.
            for result in [
                decrypt_open_data(&b64(&key), &b64(&ct), &b64(&iv)),
                decrypt_open_data(&b64(&other), &data, &b64(&iv)),
            ] {
                prop_assert!(
                    matches!(result, Err(OpenDataError::Undecryptable) | Ok(_)),
                    "{:?}", result
                );
            }
            if key != other {
                prop_assert_ne!(decrypt_open_data(&b64(&other), &data, &b64(&iv)), Ok(obj));
            }
        }

        #[test]
        fn iv_of_wrong_length_is_invalid_iv(len in 0usize..40) {
            prop_assume!(len != 16);
            let data = encrypt_open_data(SESSION_KEY, &[0; 16], b"{}");
            let result = decrypt_open_data(SESSION_KEY, &data, &b64(&vec![1u8; len]));
            prop_assert!(
                matches!(result, Err(OpenDataError::Invalid { field: "iv", .. })),
                "{:?}", result
            );
        }

        #[test]
        fn spaces_in_place_of_plus_are_repaired(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let encoded = b64(&bytes);
            let mangled = encoded.replace('+', " ");
            prop_assert_eq!(decode_base64_field("iv", &mangled), Ok(bytes));
        }

        #[test]
        fn arbitrary_strings_never_panic(key in ".{0,40}", data in ".{0,80}", iv in ".{0,40}") {
            let _ = decrypt_open_data(&key, &data, &iv);
            let _ = raw_data_signature(&data, &key);
            let _ = signature_matches(&data, &key, &iv);
            let _ = session_key_signature(&key);
        }

        #[test]
        fn arbitrary_base64_shaped_inputs_never_panic(
            key in "[A-Za-z0-9+/= ]{0,30}", data in "[A-Za-z0-9+/= ]{0,90}", iv in "[A-Za-z0-9+/= ]{0,30}"
        ) {
            let _ = decrypt_open_data(&key, &data, &iv);
        }
    }
}
