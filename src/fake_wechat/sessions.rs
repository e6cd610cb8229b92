//! Users, their session_keys, and the login codes `wx.login()` produces (§1, §4, §7).
//!
//! WeChat keeps one valid session_key per user and app; issuing a login code may replace
//! it, which is exactly what makes stale open data and failing checksession calls happen
//! in real life, so the fake rotates by default.

use std::collections::{HashMap, VecDeque};

use super::ids;
use super::reply::Errcode;

/// Login codes are redeemable this long after issue.
pub(crate) const CODE_TTL_SECONDS: i64 = 300;
/// Redeemed and expired codes are remembered this long (so a second redeem says 40163,
/// not 40029), then forgotten.
const CODE_MEMORY_SECONDS: i64 = 3600;

#[derive(Debug)]
struct UserRecord {
    name: String,
    session_key: String,
    unionid_override: Option<bool>,
}

#[derive(Debug)]
struct CodeRecord {
    appid: String,
    openid: String,
    issued_at: i64,
    redeemed: bool,
}

/// What the mini-program gets from `wx.login()`, plus the ids it will resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IssuedCode {
    pub code: String,
    pub openid: String,
    pub unionid: Option<String>,
}

/// A user's identity and current key within one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserSession {
    pub openid: String,
    pub session_key: String,
    pub unionid: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    /// Keyed by (appid, openid).
    users: HashMap<(String, String), UserRecord>,
    codes: HashMap<String, CodeRecord>,
    /// Codes in the order they were issued, so forgetting old ones costs only the ones
    /// forgotten. (A scan of every remembered code on each issue made the fake itself
    /// the bottleneck of the login benchmark after some 100,000 codes.)
    issued_order: VecDeque<(i64, String)>,
}

impl Sessions {
    /// Issues a login code for `user` of `appid`, rotating the user's session_key when
    /// `rotate` (a first code always creates one). `unionid` overrides, for this and all
    /// later logins of the user in this app, whether jscode2session reports a unionid.
    pub(crate) fn issue_code(
        &mut self,
        appid: &str,
        user: &str,
        unionid: Option<bool>,
        rotate: bool,
        now: i64,
    ) -> IssuedCode {
        self.issue(appid, user, unionid, rotate, now, ids::new_login_code())
    }

    /// [`Sessions::issue_code`] with the code given: a mock code brings its own.
    fn issue(
        &mut self,
        appid: &str,
        user: &str,
        unionid: Option<bool>,
        rotate: bool,
        now: i64,
        code: String,
    ) -> IssuedCode {
        self.forget_old_codes(now);
        let openid = ids::openid(appid, user);
        let record = self.users.entry((appid.to_string(), openid.clone())).or_insert_with(|| UserRecord {
            name: user.to_string(),
            session_key: ids::new_session_key(),
            unionid_override: None,
        });
        if rotate {
            record.session_key = ids::new_session_key();
        }
        if unionid.is_some() {
            record.unionid_override = unionid;
        }
        let unionid = unionid_of(record);
        self.issued_order.push_back((now, code.clone()));
        self.codes.insert(
            code.clone(),
            CodeRecord { appid: appid.to_string(), openid: openid.clone(), issued_at: now, redeemed: false },
        );
        IssuedCode { code, openid, unionid }
    }

    fn forget_old_codes(&mut self, now: i64) {
        while let Some((issued_at, _)) = self.issued_order.front() {
            if now - issued_at <= CODE_MEMORY_SECONDS {
                break;
            }
            if let Some((_, code)) = self.issued_order.pop_front() {
                self.codes.remove(&code);
            }
        }
    }

    /// `jscode2session`'s core: a code is good once, for its own app, for five minutes,
    /// and yields the user's key as it is now.
    pub(crate) fn redeem(&mut self, appid: &str, code: &str, now: i64) -> Result<UserSession, Errcode> {
        if code.is_empty() {
            return Err(41008);
        }
        let record = self.codes.get_mut(code).ok_or(40029)?;
        if record.appid != appid || now - record.issued_at > CODE_TTL_SECONDS {
            return Err(40029);
        }
        if record.redeemed {
            return Err(40163);
        }
        record.redeemed = true;
        let key = (record.appid.clone(), record.openid.clone());
        self.session(&key.0, &key.1).ok_or(40029)
    }

    /// Redeems a never-seen `mock-<user>-<n>` code as a code issued for `<user>` just now;
    /// the code is then spent like any other.
    pub(crate) fn redeem_mock(&mut self, appid: &str, code: &str, rotate: bool, now: i64) -> UserSession {
        let rest = &code["mock-".len().min(code.len())..];
        let user = rest.rsplit_once('-').map_or(rest, |(user, _)| user);
        let issued = self.issue(appid, user, None, rotate, now, code.to_string());
        if let Some(record) = self.codes.get_mut(&issued.code) {
            record.redeemed = true;
        }
        UserSession {
            session_key: self.by_name(appid, user).map(|s| s.session_key).unwrap_or_default(),
            openid: issued.openid,
            unionid: issued.unionid,
        }
    }

    /// The user's current identity and key, looked up by user name.
    pub(crate) fn by_name(&self, appid: &str, user: &str) -> Option<UserSession> {
        self.session(appid, &ids::openid(appid, user))
    }

    /// Checks a checksession-style signature against the user's CURRENT key: 87009 for a
    /// wrong or outdated key and also for an openid this app has never seen (there is no
    /// key it could match).
    pub(crate) fn verify_signature(&self, appid: &str, openid: &str, signature: &str) -> Result<(), Errcode> {
        let session = self.session(appid, openid).ok_or(87009)?;
        let expected = crate::wechat::crypto::session_key_signature(&session.session_key);
        if crate::secrets::ct_eq(expected.as_bytes(), signature.as_bytes()) {
            Ok(())
        } else {
            Err(87009)
        }
    }

    /// Replaces the user's key (resetusersessionkey); the old one stops working at once.
    pub(crate) fn reset_key(&mut self, appid: &str, openid: &str) -> Option<String> {
        let record = self.users.get_mut(&(appid.to_string(), openid.to_string()))?;
        record.session_key = ids::new_session_key();
        Some(record.session_key.clone())
    }

    pub(crate) fn user_count(&self) -> usize {
        self.users.len()
    }

    fn session(&self, appid: &str, openid: &str) -> Option<UserSession> {
        let record = self.users.get(&(appid.to_string(), openid.to_string()))?;
        Some(UserSession {
            openid: openid.to_string(),
            session_key: record.session_key.clone(),
            unionid: unionid_of(record),
        })
    }
}

fn unionid_of(record: &UserRecord) -> Option<String> {
    record
        .unionid_override
        .unwrap_or_else(|| ids::has_unionid_by_default(&record.name))
        .then(|| ids::unionid(&record.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::crypto::session_key_signature;

    const T0: i64 = 1_700_000_000;

    #[test]
    fn a_code_redeems_once_for_its_app_within_five_minutes() {
        let mut s = Sessions::default();
        let issued = s.issue_code("wx1", "alice", None, true, T0);
        assert_eq!(s.redeem("wx2", &issued.code, T0), Err(40029));
        let session = s.redeem("wx1", &issued.code, T0 + 300).expect("redeems");
        assert_eq!(session.openid, issued.openid);
        assert_eq!(session.openid, ids::openid("wx1", "alice"));
        assert_eq!(s.redeem("wx1", &issued.code, T0 + 301), Err(40029));
        assert_eq!(s.redeem("wx1", &issued.code, T0 + 10), Err(40163));

        let late = s.issue_code("wx1", "alice", None, true, T0);
        assert_eq!(s.redeem("wx1", &late.code, T0 + 301), Err(40029));
        assert_eq!(s.redeem("wx1", "nope", T0), Err(40029));
        assert_eq!(s.redeem("wx1", "", T0), Err(41008));
    }

    #[test]
    fn each_code_rotates_the_key_and_redeem_yields_the_current_one() {
        let mut s = Sessions::default();
        let first = s.issue_code("wx1", "alice", None, true, T0);
        let key1 = s.by_name("wx1", "alice").expect("user").session_key;
        let second = s.issue_code("wx1", "alice", None, true, T0);
        let key2 = s.by_name("wx1", "alice").expect("user").session_key;
        assert_ne!(key1, key2);
        assert_eq!(s.redeem("wx1", &first.code, T0).map(|u| u.session_key), Ok(key2.clone()));
        assert_eq!(s.redeem("wx1", &second.code, T0).map(|u| u.session_key), Ok(key2));
    }

    #[test]
    fn mock_codes_name_their_user_and_are_spent_once() {
        let mut s = Sessions::default();
        let a = s.redeem_mock("wx1", "mock-ann-1", true, T0);
        let b = s.redeem_mock("wx1", "mock-ann-2", true, T0);
        assert_eq!(a.openid, b.openid);
        assert_ne!(a.session_key, b.session_key);
        assert_eq!(s.redeem("wx1", "mock-ann-1", T0), Err(40163));
    }

    #[test]
    fn codes_are_remembered_for_an_hour_then_forgotten() {
        let mut s = Sessions::default();
        let issued = s.issue_code("wx1", "alice", None, true, T0);
        s.redeem("wx1", &issued.code, T0).expect("redeems");
        s.redeem_mock("wx1", "mock-bob-1", true, T0);
        assert_eq!(s.redeem("wx1", &issued.code, T0 + 10), Err(40163));
        assert_eq!(s.redeem("wx1", "mock-bob-1", T0 + 10), Err(40163));
        s.issue_code("wx1", "carol", None, true, T0 + 3600);
        assert_eq!(s.codes.len(), 3);
        // An issue forgets what is older than the memory: here both of the first two.
        let last = s.issue_code("wx1", "dave", None, true, T0 + 3601);
        assert_eq!(s.codes.len(), 2);
        assert!(s.codes.contains_key(&last.code));
    }

    #[test]
    fn without_rotation_the_key_stays() {
        let mut s = Sessions::default();
        s.issue_code("wx1", "alice", None, false, T0);
        let key1 = s.by_name("wx1", "alice").expect("user").session_key;
        s.issue_code("wx1", "alice", None, false, T0);
        assert_eq!(s.by_name("wx1", "alice").expect("user").session_key, key1);
    }

    #[test]
    fn unionid_follows_the_hash_unless_overridden_and_the_override_sticks() {
        let mut s = Sessions::default();
        let default = ids::has_unionid_by_default("alice");
        let a = s.issue_code("wx1", "alice", None, true, T0);
        assert_eq!(a.unionid.is_some(), default);
        let b = s.issue_code("wx1", "alice", Some(!default), true, T0);
        assert_eq!(b.unionid.is_some(), !default);
        let c = s.issue_code("wx1", "alice", None, true, T0);
        assert_eq!(c.unionid.is_some(), !default);
        let d = s.issue_code("wx2", "alice", Some(true), true, T0);
        assert_eq!(d.unionid, Some(ids::unionid("alice")));
    }

    #[test]
    fn signatures_check_against_the_current_key_only() {
        let mut s = Sessions::default();
        let a = s.issue_code("wx1", "alice", None, true, T0);
        let key1 = s.by_name("wx1", "alice").expect("user").session_key;
        let sig1 = session_key_signature(&key1);
        assert_eq!(s.verify_signature("wx1", &a.openid, &sig1), Ok(()));
        assert_eq!(s.verify_signature("wx2", &a.openid, &sig1), Err(87009));
        assert_eq!(s.verify_signature("wx1", "ounknown", &sig1), Err(87009));
        s.issue_code("wx1", "alice", None, true, T0);
        assert_eq!(s.verify_signature("wx1", &a.openid, &sig1), Err(87009));

        let key3 = s.reset_key("wx1", &a.openid).expect("reset");
        assert_eq!(s.verify_signature("wx1", &a.openid, &session_key_signature(&key3)), Ok(()));
        assert_eq!(s.reset_key("wx1", "ounknown"), None);
    }
}
