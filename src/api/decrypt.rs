//! POST /v1/me/decrypt, and the open-data half of POST /v1/login: WeChat's encrypted
//! open data in, the decrypted object out, and the user's profile or phone updated.
//!
//! fields (snake_case or camelCase) -> shape check -> AES-128-CBC with the session_key ->
//! rawData signature -> watermark (appid, age) -> classify -> apply to the user.
//!
//! The session_key is only ever used here, server-side: it is never logged or returned.

use serde_json::{json, Map, Value};

use super::session::authenticate;
use crate::app::App;
use crate::config::AppConfig;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::secrets::Secret;
use crate::store::{self, User};
use crate::wechat::crypto::{decode_open_data_input, decrypt_open_data, signature_matches};

/// What the mini-program sends: `encryptedData`, `iv` and optionally `rawData` and
/// `signature`, as WeChat's client APIs hand them over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDataFields {
    pub encrypted_data: String,
    pub iv: String,
    pub raw_data: Option<String>,
    pub signature: Option<String>,
}

impl OpenDataFields {
    /// Reads the open-data fields of a request body; `None` when it carries neither
    /// `encrypted_data` nor `iv` (a plain login). Either spelling is accepted; both
    /// spellings with different values are refused rather than guessed between.
    pub fn from_body(body: &Map<String, Value>) -> Result<Option<OpenDataFields>, ApiError> {
        let encrypted_data = field(body, "encrypted_data", "encryptedData")?;
        let iv = field(body, "iv", "iv")?;
        let raw_data = field(body, "raw_data", "rawData")?;
        let signature = field(body, "signature", "signature")?;
        let (encrypted_data, iv) = match (encrypted_data, iv) {
            (None, None) => return Ok(None),
            (None, Some(_)) => return Err(ApiError::invalid("encrypted_data", "is missing (it comes with `iv`).")),
            (Some(_), None) => return Err(ApiError::invalid("iv", "is missing (it comes with `encrypted_data`).")),
            (Some(e), Some(i)) => (e, i),
        };
        Ok(Some(OpenDataFields { encrypted_data, iv, raw_data, signature }))
    }

    /// Refuses malformed base64 or lengths without a key, so that a login does not spend
    /// its code on data that can never decrypt.
    pub fn check_shape(&self) -> Result<(), ApiError> {
        decode_open_data_input(&self.encrypted_data, &self.iv)?;
        Ok(())
    }
}

/// One field under its snake_case or camelCase name. An empty `raw_data` or `signature`
/// (an empty form field) counts as absent.
fn field(body: &Map<String, Value>, snake: &'static str, camel: &'static str) -> Result<Option<String>, ApiError> {
    let read = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(name, "must be a string.")),
    };
    let a = read(snake)?;
    let b = if camel == snake { None } else { read(camel)? };
    let value = match (a, b) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::InvalidRequest(format!(
                "`{snake}` and `{camel}` are both given and differ; send one of them."
            )))
        }
        (a, b) => a.or(b),
    };
    let optional = matches!(snake, "raw_data" | "signature");
    Ok(value.filter(|v| !(optional && v.is_empty())))
}

/// What the decrypted object is, by the fields WeChat puts in each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    UserInfo,
    Phone,
    Other,
}

impl Kind {
    pub fn classify(data: &Map<String, Value>) -> Kind {
        if data.contains_key("nickName") || data.contains_key("openId") {
            Kind::UserInfo
        } else if data.contains_key("phoneNumber") {
            Kind::Phone
        } else {
            Kind::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::UserInfo => "user_info",
            Kind::Phone => "phone",
            Kind::Other => "other",
        }
    }
}

/// Decrypted, verified open data, watermark removed.
#[derive(Debug, Clone)]
pub struct Opened {
    pub kind: Kind,
    pub data: Map<String, Value>,
}

impl Opened {
    /// `{"kind", "data"}`: the body of POST /v1/me/decrypt and login's `decrypted`.
    pub fn to_json(&self) -> Value {
        json!({"kind": self.kind.as_str(), "data": self.data})
    }
}

/// Decrypts and verifies, in the contract's order: decryption first (so a stale key is
/// reported as such, not as a bad signature), then the rawData signature, then the
/// watermark's appid and, with `decrypt.max_age_seconds`, its age.
pub fn open(
    cfg: &AppConfig,
    max_age: i64,
    session_key: &Secret,
    f: &OpenDataFields,
    now: i64,
) -> Result<Opened, ApiError> {
    let mut data = decrypt_open_data(session_key.expose(), &f.encrypted_data, &f.iv)?;
    if let (Some(raw), Some(sig)) = (&f.raw_data, &f.signature) {
        if !signature_matches(raw, session_key.expose(), sig) {
            return Err(ApiError::SignatureMismatch);
        }
    }
    let watermark = data.remove("watermark");
    let watermark = watermark.as_ref().and_then(Value::as_object);
    if watermark.and_then(|w| w.get("appid")).and_then(Value::as_str) != Some(cfg.appid.as_str()) {
        return Err(ApiError::WatermarkMismatch);
    }
    if max_age > 0 {
        let timestamp = watermark.and_then(|w| w.get("timestamp")).and_then(Value::as_i64);
        // Saturating: a timestamp near i64::MIN must read as stale, not overflow (a panic
        // in debug builds; in release a wrap to "fresh").
        if timestamp.is_none_or(|t| now.saturating_sub(t) > max_age) {
            return Err(ApiError::StaleData { max_age });
        }
    }
    Ok(Opened { kind: Kind::classify(&data), data })
}

/// The profile change a result asks for, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Profile { nickname: Option<String>, avatar_url: Option<String>, gender: Option<i64> },
    Phone { phone_number: String, country_code: Option<String> },
    Nothing,
}

fn change(o: &Opened) -> Change {
    let text = |k: &str| o.data.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    match o.kind {
        Kind::UserInfo => Change::Profile {
            nickname: text("nickName"),
            avatar_url: text("avatarUrl"),
            gender: o.data.get("gender").and_then(Value::as_i64),
        },
        Kind::Phone => match text("phoneNumber") {
            Some(phone_number) => {
                let country_code = match o.data.get("countryCode") {
                    Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                Change::Phone { phone_number, country_code }
            }
            None => Change::Nothing,
        },
        Kind::Other => Change::Nothing,
    }
}

/// Applies a result to the user; returns the user as it now stands (None: deleted meanwhile).
pub fn apply(app: &App, user_id: i64, o: &Opened) -> Result<Option<User>, ApiError> {
    Ok(match change(o) {
        Change::Profile { nickname, avatar_url, gender } => {
            app.store.update_profile(user_id, nickname.as_deref(), avatar_url.as_deref(), gender)?
        }
        Change::Phone { phone_number, country_code } => {
            app.store.update_phone(user_id, &phone_number, country_code.as_deref())?
        }
        Change::Nothing => app.store.user(user_id)?,
    })
}

/// The whole of it for one user: decrypt with `session_key` (or, when None, the key stored
/// for the user), verify, classify and apply. Shared by both endpoints.
pub fn open_for_user(
    app: &App,
    cfg: &AppConfig,
    user_id: i64,
    session_key: Option<Secret>,
    f: &OpenDataFields,
) -> Result<(Opened, Option<User>), ApiError> {
    let key = match session_key {
        Some(k) => k,
        None => app
            .store
            .session_key(user_id)?
            .ok_or(ApiError::SessionKeyStale { detail: "no session_key is stored for this user" })?,
    };
    let opened = open(cfg, app.config.decrypt.max_age_seconds, &key, f, store::now())?;
    let user = apply(app, user_id, &opened)?;
    Ok((opened, user))
}

pub fn decrypt(app: &App, req: &Req) -> Result<Resp, ApiError> {
    let s = authenticate(app, req)?;
    let body = req.object(false)?;
    let fields = OpenDataFields::from_body(&body)?
        .ok_or_else(|| ApiError::invalid("encrypted_data", "is missing (send `encrypted_data` and `iv`)."))?;
    fields.check_shape()?;
    let cfg = app.resolve_app(Some(&s.user.app))?;
    match open_for_user(app, cfg, s.user.id, None, &fields) {
        Ok((opened, _)) => Ok(Resp::ok(opened.to_json())),
        Err(ApiError::SessionKeyStale { .. }) => Err(diagnose_stale(app, &s.user)),
        Err(e) => Err(e),
    }
}

/// The bytes did not decrypt: asks WeChat (`wxa/checksession`) whether the stored key
/// is still the user's (an answer is remembered a while, see `limits::UserLimits`), so the message can say which of the two usual causes it is.
/// The answer is 409 either way; only the explanation changes.
fn diagnose_stale(app: &App, user: &User) -> ApiError {
    let key = match app.store.session_key(user.id) {
        Ok(Some(key)) => key,
        _ => return ApiError::SessionKeyStale { detail: "no session_key is stored for this user" },
    };
    // Remembered per (user, key): repeated failed decrypts cost WeChat one call.
    let answer =
        app.user_limits.checksession(user.id, &key, || app.tokens.check_session_key(&user.app, &user.openid, &key));
    let detail = match answer {
        Ok(Some(false)) => "WeChat confirms the stored session_key has expired or was replaced by a newer wx.login",
        Ok(Some(true)) => {
            "WeChat confirms the stored session_key is current, so the data was encrypted with another session_key or damaged on the way"
        }
        Ok(None) => "it does not decrypt with the session_key stored for this user",
        Err(e) => {
            log::warn!("checksession for user {} could not be asked: {e}", user.id);
            "it does not decrypt with the session_key stored for this user"
        }
    };
    ApiError::SessionKeyStale { detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    fn opened(v: Value) -> Opened {
        let data = body(v);
        Opened { kind: Kind::classify(&data), data }
    }

    #[test]
    fn snake_case_and_camel_case_fields_are_read() {
        let snake = body(json!({"encrypted_data": "E", "iv": "I", "raw_data": "R", "signature": "S"}));
        let camel = body(json!({"encryptedData": "E", "iv": "I", "rawData": "R", "signature": "S"}));
        let want = OpenDataFields {
            encrypted_data: "E".into(),
            iv: "I".into(),
            raw_data: Some("R".into()),
            signature: Some("S".into()),
        };
        assert_eq!(OpenDataFields::from_body(&snake).unwrap(), Some(want.clone()));
        assert_eq!(OpenDataFields::from_body(&camel).unwrap(), Some(want.clone()));
        let both_same = body(json!({"encrypted_data": "E", "encryptedData": "E", "iv": "I", "rawData": "R",
                                     "raw_data": "R", "signature": "S"}));
        assert_eq!(OpenDataFields::from_body(&both_same).unwrap(), Some(want));
    }

    #[test]
    fn differing_spellings_missing_halves_and_wrong_types_are_invalid() {
        let err = |v: Value| OpenDataFields::from_body(&body(v)).unwrap_err().message();
        assert!(err(json!({"encrypted_data": "E", "encryptedData": "F", "iv": "I"})).contains("encryptedData"));
        assert!(err(json!({"encrypted_data": "E", "iv": "I", "raw_data": "a", "rawData": "b"})).contains("raw_data"));
        assert!(err(json!({"encrypted_data": "E"})).contains("`iv`"));
        assert!(err(json!({"iv": "I"})).contains("`encrypted_data`"));
        assert!(err(json!({"encrypted_data": 5, "iv": "I"})).contains("`encrypted_data`"));
        assert!(err(json!({"encryptedData": "E", "iv": ["I"]})).contains("`iv`"));
    }

    #[test]
    fn no_open_data_is_none_and_empty_optional_fields_are_absent() {
        assert_eq!(OpenDataFields::from_body(&body(json!({"code": "c"}))).unwrap(), None);
        let f = OpenDataFields::from_body(&body(json!({"encrypted_data": "E", "iv": "I", "raw_data": "",
                                                        "signature": ""})))
        .unwrap()
        .unwrap();
        assert_eq!((f.raw_data, f.signature), (None, None));
    }

    #[test]
    fn kinds_are_classified_by_their_fields() {
        assert_eq!(Kind::classify(&body(json!({"nickName": "a"}))), Kind::UserInfo);
        assert_eq!(Kind::classify(&body(json!({"openId": "o"}))), Kind::UserInfo);
        assert_eq!(Kind::classify(&body(json!({"phoneNumber": "1", "countryCode": "86"}))), Kind::Phone);
        assert_eq!(Kind::classify(&body(json!({"stepInfoList": []}))), Kind::Other);
        assert_eq!(Kind::classify(&body(json!({"openGId": "g"}))), Kind::Other);
        assert_eq!(Kind::classify(&body(json!({}))), Kind::Other);
        assert_eq!(Kind::Phone.as_str(), "phone");
    }

    #[test]
    fn user_info_changes_the_profile() {
        let o = opened(json!({"openId": "o", "nickName": "Ann", "gender": 2, "avatarUrl": "https://x/a.png"}));
        assert_eq!(
            change(&o),
            Change::Profile {
                nickname: Some("Ann".into()),
                avatar_url: Some("https://x/a.png".into()),
                gender: Some(2)
            }
        );
        let o = opened(json!({"openId": "o", "nickName": "", "avatarUrl": ""}));
        assert_eq!(change(&o), Change::Profile { nickname: None, avatar_url: None, gender: None });
    }

    #[test]
    fn phone_country_code_may_be_a_string_or_a_number() {
        let o = opened(json!({"phoneNumber": "+1 5551234", "countryCode": "1"}));
        assert_eq!(change(&o), Change::Phone { phone_number: "+1 5551234".into(), country_code: Some("1".into()) });
        let o = opened(json!({"phoneNumber": "13800138000", "countryCode": 86}));
        assert_eq!(change(&o), Change::Phone { phone_number: "13800138000".into(), country_code: Some("86".into()) });
        let o = opened(json!({"phoneNumber": "13800138000"}));
        assert_eq!(change(&o), Change::Phone { phone_number: "13800138000".into(), country_code: None });
    }

    #[test]
    fn a_watermark_timestamp_at_the_i64_edge_is_stale_not_an_overflow() {
        use crate::wechat::crypto::encrypt_open_data;
        let key = "tiihtNczf5v6AKRyjwEUhQ==";
        let cfg = AppConfig { name: "main".into(), appid: "wx4f4bc4dec97d474b".into(), secret: Secret::new("s") };
        let plain = json!({"openId": "o", "watermark": {"appid": "wx4f4bc4dec97d474b", "timestamp": i64::MIN}});
        let f = OpenDataFields {
            encrypted_data: encrypt_open_data(key, &[7; 16], plain.to_string().as_bytes()),
            iv: "BwcHBwcHBwcHBwcHBwcHBw==".into(),
            raw_data: None,
            signature: None,
        };
        let e = open(&cfg, 60, &Secret::new(key), &f, 1_700_000_000).unwrap_err();
        assert!(matches!(e, ApiError::StaleData { max_age: 60 }), "{e:?}");
    }

    #[test]
    fn other_kinds_change_nothing() {
        assert_eq!(change(&opened(json!({"stepInfoList": [{"step": 1}]}))), Change::Nothing);
        assert_eq!(change(&opened(json!({"openGId": "g"}))), Change::Nothing);
    }

    mod props {
        use base64::Engine;
        use proptest::prelude::*;

        use super::*;
        use crate::wechat::crypto::{encrypt_open_data, raw_data_signature};

        const APPID: &str = "wx4f4bc4dec97d474b";

        fn b64(bytes: &[u8]) -> String {
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }

        fn cfg() -> AppConfig {
            AppConfig { name: "main".into(), appid: APPID.into(), secret: Secret::new("s".to_string()) }
        }

        fn scalar() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                "\\PC{0,16}".prop_map(Value::String),
                "[A-Za-z0-9+/= ]{0,40}".prop_map(Value::String),
                Just(json!([])),
                Just(json!({})),
            ]
        }

        fn open_data_body() -> impl Strategy<Value = Map<String, Value>> {
            let key = prop_oneof![
                Just("encrypted_data".to_string()),
                Just("encryptedData".to_string()),
                Just("iv".to_string()),
                Just("raw_data".to_string()),
                Just("rawData".to_string()),
                Just("signature".to_string()),
                Just("code".to_string()),
                "[a-zA-Z_]{0,12}",
            ];
            prop::collection::btree_map(key, scalar(), 0..8).prop_map(|m| m.into_iter().collect())
        }

        /// A watermark as WeChat might (mis)send it.
        fn watermark() -> impl Strategy<Value = Value> {
            let timestamp = prop_oneof![
                any::<i64>().prop_map(Value::from),
                Just(Value::from(i64::MIN)),
                Just(Value::from(i64::MAX)),
                any::<u64>().prop_map(Value::from),
                scalar(),
            ];
            let appid = prop_oneof![Just(Value::from(APPID)), scalar()];
            prop_oneof![(appid, timestamp).prop_map(|(a, t)| json!({"appid": a, "timestamp": t})), scalar(),]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn prop_from_body_never_panics(body in open_data_body()) {
                match OpenDataFields::from_body(&body) {
                    Ok(Some(f)) => {
                        let _ = f.check_shape();
                    }
                    Ok(None) => {}
                    Err(e) => prop_assert!(!e.message().trim().is_empty()),
                }
            }

            #[test]
            fn prop_open_with_arbitrary_strings_never_panics(
                key in prop_oneof!["\\PC{0,30}", "[A-Za-z0-9+/=]{22}=="],
                data in prop_oneof!["\\PC{0,80}", "[A-Za-z0-9+/= ]{0,90}"],
                iv in prop_oneof!["\\PC{0,30}", "[A-Za-z0-9+/]{22}=="],
                raw in proptest::option::of("\\PC{0,30}"),
                sig in proptest::option::of("\\PC{0,40}"),
                max_age in any::<i64>(),
                now in any::<i64>(),
            ) {
                let f = OpenDataFields { encrypted_data: data, iv, raw_data: raw, signature: sig };
                let _ = open(&cfg(), max_age, &Secret::new(key), &f, now);
            }

            #[test]
            fn prop_open_with_arbitrary_watermarks_never_panics(
                key in any::<[u8; 16]>(),
                iv in any::<[u8; 16]>(),
                watermark in watermark(),
                max_age in prop_oneof![Just(0i64), any::<i64>(), 1i64..1_000_000],
                now in prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), 0i64..2_000_000_000],
                signed in any::<bool>(),
            ) {
                let key = b64(&key);
                let plain = json!({"openId": "o", "nickName": "n", "watermark": watermark.clone()}).to_string();
                let raw = json!({"nickName": "n"}).to_string();
                let f = OpenDataFields {
                    encrypted_data: encrypt_open_data(&key, &iv, plain.as_bytes()),
                    iv: b64(&iv),
                    raw_data: signed.then(|| raw.clone()),
                    signature: signed.then(|| raw_data_signature(&raw, &key)),
                };
                let result = open(&cfg(), max_age, &Secret::new(key), &f, now);
                let appid_ok = watermark.get("appid").and_then(Value::as_str) == Some(APPID);
                match result {
                    Ok(o) => {
                        prop_assert!(appid_ok);
                        prop_assert_eq!(o.kind, Kind::UserInfo);
                        prop_assert!(!o.data.contains_key("watermark"));
                        if max_age > 0 {
                            let t = watermark["timestamp"].as_i64().expect("fresh data has a timestamp");
                            prop_assert!(i128::from(now) - i128::from(t) <= i128::from(max_age), "stale data accepted");
                        }
                    }
                    Err(ApiError::WatermarkMismatch) => prop_assert!(!appid_ok),
                    Err(ApiError::StaleData { .. }) => prop_assert!(appid_ok && max_age > 0),
                    Err(e) => prop_assert!(false, "unexpected error {:?}", e),
                }
            }
        }
    }
}
