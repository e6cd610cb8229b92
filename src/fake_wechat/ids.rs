//! Identifiers the fake hands out.
//!
//! openid and unionid are derived from names rather than stored, so that a test, a demo
//! and a restarted fake all agree on who "alice" is without sharing any state. Codes,
//! keys and tokens are random, as WeChat's are, so that nothing can be guessed from them.

use base64::Engine;

use crate::secrets::{random_bytes, random_id, sha256};

/// A 28-character id starting with 'o' from URL-safe base64 characters, the shape of
/// every openid and unionid seen in the wild.
fn o_id(prefix_source: &str, body_source: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha256(s.as_bytes()));
    let prefix = b64(prefix_source);
    let body = b64(body_source);
    format!("o{}{}", &prefix[..5], &body[..22])
}

/// The user's id within one app. Real openids of one app share their first characters,
/// so the first five come from the appid alone.
pub(crate) fn openid(appid: &str, user: &str) -> String {
    o_id(&format!("openid-app:{appid}"), &format!("openid:{}:{appid}:{user}", appid.len()))
}

/// The user's id across all apps of one account (主体): independent of the appid.
pub(crate) fn unionid(user: &str) -> String {
    o_id("unionid", &format!("unionid:{user}"))
}

/// Whether jscode2session reports a unionid for this user when no login asked otherwise:
/// about half the users, so that both paths get exercised without configuration.
pub(crate) fn has_unionid_by_default(user: &str) -> bool {
    sha256(user.as_bytes())[0].is_multiple_of(2)
}

/// A WeChat group id for `wx.getShareInfo`.
pub(crate) fn open_gid(appid: &str, user: &str) -> String {
    let hash = sha256(format!("opengid:{}:{appid}:{user}", appid.len()).as_bytes());
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash);
    format!("tG{}", &body[..26])
}

/// A stable path segment for the fake avatar URL.
pub(crate) fn avatar_path(user: &str) -> String {
    let hash = sha256(format!("avatar:{user}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash)
}

/// Base64 of 16 random bytes: 24 characters ending in "==", like every real session_key.
pub(crate) fn new_session_key() -> String {
    let mut key = [0u8; 16];
    random_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A 32-character login code, the length wx.login codes have.
pub(crate) fn new_login_code() -> String {
    random_id(16)
}

/// A 64-hex-character phone code, the shape getPhoneNumber's `e.detail.code` has.
pub(crate) fn new_phone_code() -> String {
    random_id(32)
}

/// A 136-character access token: real ones are of that order, and clients are told to
/// reserve 512 characters, so a long token catches columns that are too narrow.
pub(crate) fn new_access_token() -> String {
    let mut bytes = [0u8; 102];
    random_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The request id WeChat appends to every errmsg ("rid: 6166f719-6cb5d09c-633ab469").
pub(crate) fn rid() -> String {
    format!("{}-{}-{}", random_id(4), random_id(4), random_id(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_chars(s: &str) -> bool {
        s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    }

    #[test]
    fn openids_are_deterministic_28_chars_and_per_app() {
        let a = openid("wx1", "alice");
        assert_eq!(a, openid("wx1", "alice"));
        assert_eq!(a.len(), 28);
        assert!(a.starts_with('o') && id_chars(&a));
        assert_ne!(a, openid("wx2", "alice"));
        assert_ne!(a, openid("wx1", "bob"));
        // Same app, same prefix.
        assert_eq!(a[..6], openid("wx1", "bob")[..6]);
    }

    #[test]
    fn unionids_are_per_user_not_per_app() {
        let u = unionid("alice");
        assert_eq!(u.len(), 28);
        assert!(u.starts_with('o') && id_chars(&u));
        assert_ne!(u, unionid("bob"));
        assert_ne!(u, openid("wx1", "alice"));
    }

    #[test]
    fn roughly_half_the_users_have_a_unionid() {
        let with = (0..200).filter(|i| has_unionid_by_default(&format!("user{i}"))).count();
        assert!((60..140).contains(&with), "{with}");
    }

    #[test]
    fn random_values_have_wechat_shapes() {
        let key = new_session_key();
        assert_eq!(key.len(), 24);
        assert!(key.ends_with("=="));
        assert_ne!(key, new_session_key());
        assert_eq!(new_login_code().len(), 32);
        assert_eq!(new_phone_code().len(), 64);
        assert_eq!(new_access_token().len(), 136);
        assert_eq!(rid().len(), 26);
        assert_eq!(open_gid("wx1", "alice").len(), 28);
    }
}
