//! Phone codes from `<button open-type="getPhoneNumber">` (§3a): separate from login
//! codes, single use, five minutes, bound to one app and one user.

use std::collections::HashMap;

use super::reply::Errcode;

const PHONE_CODE_TTL_SECONDS: i64 = 300;
const FORGET_AFTER: i64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PhoneInfo {
    pub appid: String,
    pub openid: String,
    pub pure_phone_number: String,
    pub country_code: String,
    /// When the user pressed the button (the watermark's timestamp).
    pub issued_at: i64,
}

impl PhoneInfo {
    /// WeChat's `phoneNumber`: as is for mainland numbers, with "+code" in front for
    /// others ("国外手机号会有区号"; the exact spacing of real foreign numbers is not known).
    pub(crate) fn phone_number(&self) -> String {
        if self.country_code == "86" {
            self.pure_phone_number.clone()
        } else {
            format!("+{}{}", self.country_code, self.pure_phone_number)
        }
    }
}

#[derive(Debug)]
struct PhoneCode {
    info: PhoneInfo,
    used: bool,
}

#[derive(Debug, Default)]
pub(crate) struct PhoneCodes {
    codes: HashMap<String, PhoneCode>,
}

impl PhoneCodes {
    pub(crate) fn issue(&mut self, info: PhoneInfo, now: i64) -> String {
        self.codes.retain(|_, c| now - c.info.issued_at <= FORGET_AFTER);
        let code = super::ids::new_phone_code();
        self.codes.insert(code.clone(), PhoneCode { info, used: false });
        code
    }

    /// Unknown, expired, used, or bound to another openid (when the caller names one): 40029.
    /// Made for another app: 40013, and the code stays usable by its own app.
    pub(crate) fn redeem(
        &mut self,
        appid: &str,
        code: &str,
        openid: Option<&str>,
        now: i64,
    ) -> Result<PhoneInfo, Errcode> {
        let entry = self.codes.get_mut(code).ok_or(40029)?;
        if entry.used || now - entry.info.issued_at > PHONE_CODE_TTL_SECONDS {
            return Err(40029);
        }
        if entry.info.appid != appid {
            return Err(40013);
        }
        if openid.is_some_and(|o| o != entry.info.openid) {
            return Err(40029);
        }
        entry.used = true;
        Ok(entry.info.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000;

    fn info(appid: &str) -> PhoneInfo {
        PhoneInfo {
            appid: appid.into(),
            openid: "oalice".into(),
            pure_phone_number: "13800138000".into(),
            country_code: "86".into(),
            issued_at: T0,
        }
    }

    #[test]
    fn phone_codes_are_single_use_for_five_minutes_and_one_app() {
        let mut p = PhoneCodes::default();
        let code = p.issue(info("wx1"), T0);
        assert_eq!(p.redeem("wx2", &code, None, T0), Err(40013));
        assert_eq!(p.redeem("wx1", &code, Some("obob"), T0), Err(40029));
        assert_eq!(p.redeem("wx1", &code, Some("oalice"), T0 + 300), Ok(info("wx1")));
        assert_eq!(p.redeem("wx1", &code, None, T0 + 300), Err(40029));
        let late = p.issue(info("wx1"), T0);
        assert_eq!(p.redeem("wx1", &late, None, T0 + 301), Err(40029));
        assert_eq!(p.redeem("wx1", "nope", None, T0), Err(40029));
    }

    #[test]
    fn foreign_numbers_carry_their_country_code() {
        let mut i = info("wx1");
        assert_eq!(i.phone_number(), "13800138000");
        i.country_code = "1".into();
        i.pure_phone_number = "2025550123".into();
        assert_eq!(i.phone_number(), "+12025550123");
    }
}
