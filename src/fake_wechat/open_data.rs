//! The encrypted open data a mini-program gets from `wx.getUserInfo`, the old
//! `getPhoneNumber`, `wx.getWeRunData` and `wx.getShareInfo` (§5, §5c).
//!
//! Plaintexts are rendered field by field in WeChat's order rather than through a
//! `serde_json::Map` (which sorts keys), so that what a test decrypts reads like what
//! WeChat sends, and `rawData` is byte-for-byte the text that gets signed.

use serde_json::{json, Map, Value};

use super::ids;
use crate::wechat::crypto;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    UserInfo,
    Phone,
    WeRun,
    Share,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> Option<Kind> {
        match s {
            "user_info" => Some(Kind::UserInfo),
            "phone" => Some(Kind::Phone),
            "werun" => Some(Kind::WeRun),
            "share" => Some(Kind::Share),
            _ => None,
        }
    }
}

/// Who the data is about and how it is stamped.
#[derive(Debug, Clone)]
pub(crate) struct Subject<'a> {
    pub appid: &'a str,
    pub user: &'a str,
    pub openid: &'a str,
    pub unionid: Option<&'a str>,
    pub watermark_appid: &'a str,
    pub timestamp: i64,
}

/// What the mini-program would hold: encryptedData and iv, and for user info also
/// rawData and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Produced {
    pub plaintext: String,
    pub encrypted_data: String,
    pub iv: String,
    pub raw_data: Option<String>,
    pub signature: Option<String>,
}

/// A JSON object that keeps insertion order, holding each value already rendered.
#[derive(Debug, Default, Clone)]
struct Ordered(Vec<(String, String)>);

impl Ordered {
    fn set(&mut self, key: &str, value: Value) {
        self.set_rendered(key, value.to_string());
    }

    fn set_rendered(&mut self, key: &str, rendered: String) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = rendered,
            None => self.0.push((key.to_string(), rendered)),
        }
    }

    fn render_without(&self, skip: &[&str]) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v))
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

/// Builds the plaintext for `kind`, lays `overrides` over it (shallowly, so a test can
/// change or add any top-level field, the watermark included), and encrypts it with
/// `session_key` under `iv`.
pub(crate) fn produce(
    kind: Kind,
    subject: &Subject<'_>,
    overrides: Option<&Map<String, Value>>,
    session_key: &str,
    iv: [u8; 16],
) -> Produced {
    let mut object = defaults(kind, subject);
    // WeChat's order: timestamp, then appid (a json! object would sort them).
    object.set_rendered(
        "watermark",
        format!(
            r#"{{"timestamp":{},"appid":{}}}"#,
            subject.timestamp,
            Value::String(subject.watermark_appid.to_string())
        ),
    );
    if let Some(overrides) = overrides {
        for (key, value) in overrides {
            object.set(key, value.clone());
        }
    }
    let plaintext = object.render_without(&[]);
    let (raw_data, signature) = if kind == Kind::UserInfo {
        // rawData is the public part of the profile: what WeChat signs, without the ids.
        let raw = object.render_without(&["openId", "unionId", "watermark"]);
        let signature = crypto::raw_data_signature(&raw, session_key);
        (Some(raw), Some(signature))
    } else {
        (None, None)
    };
    use base64::Engine;
    Produced {
        encrypted_data: crypto::encrypt_open_data(session_key, &iv, plaintext.as_bytes()),
        iv: base64::engine::general_purpose::STANDARD.encode(iv),
        plaintext,
        raw_data,
        signature,
    }
}

fn defaults(kind: Kind, s: &Subject<'_>) -> Ordered {
    let mut o = Ordered::default();
    match kind {
        Kind::UserInfo => {
            // Since 2021 WeChat sends gender 0 and an empty region; the nickname here is
            // the fake user's name so that demos show something recognisable.
            o.set("openId", json!(s.openid));
            o.set("nickName", json!(s.user));
            o.set("gender", json!(0));
            o.set("language", json!("zh_CN"));
            o.set("city", json!(""));
            o.set("province", json!(""));
            o.set("country", json!(""));
            o.set(
                "avatarUrl",
                json!(format!("https://thirdwx.qlogo.cn/mmopen/vi_32/{}/132", ids::avatar_path(s.user))),
            );
            if let Some(unionid) = s.unionid {
                o.set("unionId", json!(unionid));
            }
        }
        Kind::Phone => {
            o.set("phoneNumber", json!("13800138000"));
            o.set("purePhoneNumber", json!("13800138000"));
            o.set("countryCode", json!("86"));
        }
        Kind::WeRun => o.set("stepInfoList", step_info(s)),
        Kind::Share => o.set("openGId", json!(ids::open_gid(s.appid, s.user))),
    }
    o
}

/// The last 31 days, oldest first, each stamped at midnight China time, with a step
/// count that is the same for the same user and day.
fn step_info(s: &Subject<'_>) -> Value {
    const DAY: i64 = 86_400;
    const CHINA: i64 = 8 * 3600;
    let today = (s.timestamp + CHINA).div_euclid(DAY) * DAY - CHINA;
    let days: Vec<Value> = (0..31)
        .rev()
        .map(|ago| {
            let timestamp = today - ago * DAY;
            let hash = crate::secrets::sha256(format!("steps:{}:{timestamp}", s.user).as_bytes());
            let step = u32::from_be_bytes([0, 0, hash[0], hash[1]]) % 20_000;
            json!({"timestamp": timestamp, "step": step})
        })
        .collect();
    Value::Array(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";

    fn subject<'a>(unionid: Option<&'a str>) -> Subject<'a> {
        Subject {
            appid: "wx1",
            user: "alice",
            openid: "oAAAAA",
            unionid,
            watermark_appid: "wx1",
            timestamp: 1_700_000_000,
        }
    }

    #[test]
    fn user_info_reads_like_wechats_and_decrypts() {
        let p = produce(Kind::UserInfo, &subject(Some("oUNION")), None, KEY, [3; 16]);
        assert!(p.plaintext.starts_with(r#"{"openId":"oAAAAA","nickName":"alice","gender":0,"language":"zh_CN","city":"","province":"","country":"","avatarUrl":"https://thirdwx.qlogo.cn/mmopen/vi_32/"#), "{}", p.plaintext);
        assert!(
            p.plaintext.ends_with(r#""unionId":"oUNION","watermark":{"timestamp":1700000000,"appid":"wx1"}}"#),
            "{}",
            p.plaintext
        );
        let map = crypto::decrypt_open_data(KEY, &p.encrypted_data, &p.iv).expect("decrypts");
        assert_eq!(map["openId"], "oAAAAA");

        let raw = p.raw_data.expect("raw");
        assert!(raw.starts_with(r#"{"nickName":"alice","gender":0,"#), "{raw}");
        assert!(!raw.contains("openId") && !raw.contains("unionId") && !raw.contains("watermark"));
        let sig = p.signature.expect("signature");
        assert!(crypto::signature_matches(&raw, KEY, &sig));
    }

    #[test]
    fn user_info_without_unionid_has_no_unionid_field() {
        let p = produce(Kind::UserInfo, &subject(None), None, KEY, [3; 16]);
        assert!(!p.plaintext.contains("unionId"));
    }

    #[test]
    fn overrides_replace_in_place_and_append_new_fields() {
        let overrides = json!({"nickName": "Band", "gender": 1, "extra": [1]});
        let overrides = overrides.as_object().expect("object");
        let p = produce(Kind::UserInfo, &subject(None), Some(overrides), KEY, [3; 16]);
        assert!(p.plaintext.contains(r#""nickName":"Band","gender":1,"#));
        assert!(p.plaintext.ends_with(r#""extra":[1]}"#));
        assert!(p.raw_data.expect("raw").contains(r#""nickName":"Band""#));
    }

    #[test]
    fn other_kinds_have_their_shapes() {
        let mut s = subject(None);
        s.watermark_appid = "wxOTHER";
        let phone = produce(Kind::Phone, &s, None, KEY, [0; 16]);
        assert_eq!(
            phone.plaintext,
            r#"{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"86","watermark":{"timestamp":1700000000,"appid":"wxOTHER"}}"#
        );
        assert_eq!(phone.raw_data, None);

        let werun = produce(Kind::WeRun, &s, None, KEY, [0; 16]);
        let map = crypto::decrypt_open_data(KEY, &werun.encrypted_data, &werun.iv).expect("werun");
        let days = map["stepInfoList"].as_array().expect("list");
        assert_eq!(days.len(), 31);
        let last = days[30]["timestamp"].as_i64().expect("ts");
        assert!(last <= 1_700_000_000 && 1_700_000_000 - last < 86_400);
        assert_eq!((last + 8 * 3600) % 86_400, 0);

        let share = produce(Kind::Share, &s, None, KEY, [0; 16]);
        assert!(share.plaintext.starts_with(r#"{"openGId":"tG"#));
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(Kind::parse("user_info"), Some(Kind::UserInfo));
        assert_eq!(Kind::parse("werun"), Some(Kind::WeRun));
        assert_eq!(Kind::parse("User_Info"), None);
    }
}
