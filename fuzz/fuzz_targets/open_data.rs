//! The open-data path: encryptedData and iv as the client sends them, decrypted with a
//! session_key. Any input gives the data or an `OpenDataError`, never a panic.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use wxlogin::wechat::crypto::{decode_open_data_input, decrypt_open_data};

/// A well-formed key, so that fuzzed ciphertexts get past the key check into AES and JSON.
const KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";

fuzz_target!(|data: &[u8]| {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 && rest.len() >= 16 {
        // Bytes in the right shape: a 16-byte iv and a ciphertext, base64 as WeChat sends them.
        let (iv, ciphertext) = rest.split_at(16);
        let _ = decrypt_open_data(KEY, &b64.encode(ciphertext), &b64.encode(iv));
    } else {
        // Raw text in all three fields: key, data and iv split at the first two NULs.
        let text = String::from_utf8_lossy(rest);
        let mut parts = text.splitn(3, '\0');
        let (key, encrypted, iv) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let _ = decode_open_data_input(encrypted, iv);
        let _ = decrypt_open_data(key, encrypted, iv);
    }
});
