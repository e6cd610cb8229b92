//! POST /v1/me/decrypt and login with open data, against the fake WeChat's
//! `/__fake/open_data`: every row of the contract's error table, key rotation, and the
//! field spellings.

use serde_json::{json, Value};
use wxlogin::wechat::crypto::encrypt_open_data;

use crate::support::*;

fn now() -> i64 {
    wxlogin::store::now()
}

/// What the mini-program would get from WeChat for `user` now (with their current key).
fn open_data(s: &TestServer, user: &str, kind: &str, extra: Value) -> Value {
    let mut req = json!({"user": user, "kind": kind});
    if let (Some(req), Some(extra)) = (req.as_object_mut(), extra.as_object()) {
        req.extend(extra.clone());
    }
    let r = send(&format!("{}/__fake/open_data", s.fake.base_url()), "POST", None, Some(req.to_string()), &[]);
    assert_eq!(r.status, 200, "fake open_data: {}", r.text);
    r.json()
}

fn decrypt(s: &TestServer, token: &str, body: &Value) -> Reply {
    s.post("/v1/me/decrypt", Some(token), body)
}

fn me(s: &TestServer, token: &str) -> Value {
    let r = s.get("/v1/me", Some(token));
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// Status, code and message of an error reply.
fn error(r: &Reply) -> (u16, String, String) {
    let code = r.error_code();
    (r.status, code, r.json()["error"]["message"].as_str().unwrap_or_default().to_string())
}

fn user_id(body: &Value) -> i64 {
    body["user"]["id"].as_i64().expect("user id")
}

#[test]
fn user_info_decrypts_without_its_watermark_and_fills_in_the_profile() {
    let s = TestServer::start();
    let (token, _) = s.login("alice");
    let data = open_data(&s, "alice", "user_info", json!({}));
    assert!(data["raw_data"].is_string() && data["signature"].is_string());
    let r = decrypt(&s, &token, &data);
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(body["kind"], "user_info");
    assert_eq!(body["data"]["nickName"], "alice");
    assert!(body["data"].get("watermark").is_none(), "the watermark is removed: {body}");
    assert!(!r.text.contains("session_key"), "{}", r.text);
    let user = me(&s, &token);
    assert_eq!(user["nickname"], "alice");
    assert_eq!(user["avatar_url"], body["data"]["avatarUrl"]);
    assert_eq!(user["gender"], 0);
}

#[test]
fn camel_case_fields_are_accepted_and_differing_spellings_are_refused() {
    let s = TestServer::start();
    let (token, _) = s.login("bob");
    let d = open_data(&s, "bob", "user_info", json!({"data": {"nickName": "Bobby"}}));
    let camel = json!({"encryptedData": d["encrypted_data"], "iv": d["iv"], "rawData": d["raw_data"],
                       "signature": d["signature"]});
    let r = decrypt(&s, &token, &camel);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["data"]["nickName"], "Bobby");
    assert_eq!(me(&s, &token)["nickname"], "Bobby");

    let both = json!({"encrypted_data": d["encrypted_data"], "encryptedData": "AAAA", "iv": d["iv"]});
    let (status, code, message) = error(&decrypt(&s, &token, &both));
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    assert!(message.contains("encrypted_data") && message.contains("encryptedData"), "{message}");
}

#[test]
fn phone_data_fills_in_the_phone_fields_whatever_the_type_of_country_code() {
    let s = TestServer::start();
    let (token, _) = s.login("carol");
    let r = decrypt(&s, &token, &open_data(&s, "carol", "phone", json!({})));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["kind"], "phone");
    let user = me(&s, &token);
    assert_eq!((user["phone_number"].as_str(), user["country_code"].as_str()), (Some("13800138000"), Some("86")));

    let d = open_data(&s, "carol", "phone", json!({"data": {"phoneNumber": "+15551234567", "countryCode": 1}}));
    let r = decrypt(&s, &token, &d);
    assert_eq!(r.status, 200, "{}", r.text);
    let user = me(&s, &token);
    assert_eq!((user["phone_number"].as_str(), user["country_code"].as_str()), (Some("+15551234567"), Some("1")));
}

#[test]
fn werun_and_share_data_are_other_and_change_nothing() {
    let s = TestServer::start();
    let (token, _) = s.login("dan");
    let before = me(&s, &token);
    for kind in ["werun", "share"] {
        let r = decrypt(&s, &token, &open_data(&s, "dan", kind, json!({})));
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
        let body = r.json();
        assert_eq!(body["kind"], "other", "{kind}");
        assert!(body["data"].get("watermark").is_none());
    }
    assert_eq!(me(&s, &token), before);
}

#[test]
fn malformed_input_is_invalid_request_naming_the_field() {
    let s = TestServer::start();
    let (token, _) = s.login("erin");
    let d = open_data(&s, "erin", "user_info", json!({}));
    let (ed, iv) = (d["encrypted_data"].as_str().unwrap(), d["iv"].as_str().unwrap());
    let cases = [
        (json!({"iv": iv}), "encrypted_data"),
        (json!({"encrypted_data": ed}), "iv"),
        (json!({"encrypted_data": "not base64!", "iv": iv}), "encrypted_data"),
        (json!({"encrypted_data": ed, "iv": "@@@@"}), "iv"),
        (json!({"encrypted_data": ed, "iv": "AAAAAAAAAAAAAAAAAAAA"}), "iv"), // 15 bytes
        (json!({"encrypted_data": "AAAAAAAAAAAA", "iv": iv}), "encrypted_data"), // 9 bytes
        (json!({"encrypted_data": "", "iv": iv}), "encrypted_data"),
        (json!({"encrypted_data": 42, "iv": iv}), "encrypted_data"),
        (json!({"encrypted_data": ed, "iv": iv, "raw_data": "a", "rawData": "b"}), "raw_data"),
    ];
    for (body, field) in cases {
        let (status, code, message) = error(&decrypt(&s, &token, &body));
        assert_eq!((status, code.as_str()), (400, "invalid_request"), "{body}");
        assert!(message.contains(field), "{body}: {message}");
    }
    let r = send(
        &s.url("/v1/me/decrypt"),
        "POST",
        Some(&token),
        Some("{not json".into()),
        &[("Content-Type", "application/json")],
    );
    assert_eq!((r.status, r.error_code()), (400, "invalid_request".into()));
    assert_eq!(s.get("/v1/me/decrypt", Some(&token)).status, 405);
}

#[test]
fn no_or_expired_session_is_401_as_for_get_session() {
    let s = TestServer::start();
    let (token, _) = s.login("finn");
    let d = open_data(&s, "finn", "user_info", json!({}));
    let r = s.post("/v1/me/decrypt", None, &d);
    assert_eq!((r.status, r.error_code()), (401, "unauthorized".into()));
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="wxlogin""#));
    assert_eq!(decrypt(&s, "not-a-token", &d).status, 401);
    s.sql(&format!("UPDATE sessions SET expires_at = {}", now() - 1));
    let r = decrypt(&s, &token, &d);
    assert_eq!((r.status, r.error_code()), (401, "session_expired".into()));
}

#[test]
fn data_made_before_a_new_login_is_stale_and_fresh_data_decrypts() {
    let s = TestServer::start();
    let (token, _) = s.login("gina");
    let old = open_data(&s, "gina", "user_info", json!({}));
    // A second wx.login rotates the session_key.
    let (token2, _) = s.login("gina");
    let (status, code, message) = error(&decrypt(&s, &token2, &old));
    assert_eq!((status, code.as_str()), (409, "session_key_stale"));
    assert!(message.contains("wx.login") && message.contains("POST /v1/login"), "{message}");
    // The demo's step 7: the data was made BEFORE a login this server has seen. The
    // message says only what is known (the stored key is current; the data was not made
    // with it), not when or after which login it was made.
    assert!(!message.contains("has not seen") && !message.contains("made after"), "{message}");
    assert!(message.contains("another session_key"), "{message}");
    // Any of the user's sessions decrypts with the newest key.
    let fresh = open_data(&s, "gina", "user_info", json!({}));
    assert_eq!(decrypt(&s, &token, &fresh).status, 200);
    assert_eq!(decrypt(&s, &token2, &fresh).status, 200);
}

#[test]
fn padding_and_json_failures_are_indistinguishable_from_a_wrong_key() {
    let s = TestServer::start();
    let (token, body) = s.login("hugo");
    let key = s.app().store.session_key(user_id(&body)).unwrap().expect("stored key");
    let iv = [7u8; 16];
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let not_json = json!({"encrypted_data": encrypt_open_data(key.expose(), &iv, b"not json"), "iv": b64(&iv)});
    let not_object = json!({"encrypted_data": encrypt_open_data(key.expose(), &iv, b"[1,2]"), "iv": b64(&iv)});
    let wrong_key =
        json!({"encrypted_data": encrypt_open_data("AAAAAAAAAAAAAAAAAAAAAA==", &iv, b"{}"), "iv": b64(&iv)});
    let random = json!({"encrypted_data": b64(&[0x5a; 48]), "iv": b64(&iv)});
    let replies: Vec<Reply> =
        [not_json, not_object, wrong_key, random].iter().map(|b| decrypt(&s, &token, b)).collect();
    for r in &replies {
        assert_eq!((r.status, r.error_code()), (409, "session_key_stale".into()), "{}", r.text);
        assert_eq!(r.json(), replies[0].json(), "every failure reads the same");
    }
}

#[test]
fn a_user_without_a_stored_session_key_is_stale() {
    let s = TestServer::start();
    let (token, _) = s.login("ivan");
    let d = open_data(&s, "ivan", "user_info", json!({}));
    s.sql("UPDATE users SET session_key = NULL");
    let r = decrypt(&s, &token, &d);
    assert_eq!((r.status, r.error_code()), (409, "session_key_stale".into()), "{}", r.text);
}

#[test]
fn an_altered_raw_data_is_a_signature_mismatch_but_stale_data_is_stale_first() {
    let s = TestServer::start();
    let (token, _) = s.login("jade");
    let mut d = open_data(&s, "jade", "user_info", json!({}));
    let raw = d["raw_data"].as_str().unwrap().replace("jade", "JADE");
    d["raw_data"] = raw.into();
    let r = decrypt(&s, &token, &d);
    assert_eq!((r.status, r.error_code()), (422, "signature_mismatch".into()), "{}", r.text);
    assert_eq!(me(&s, &token)["nickname"], Value::Null, "nothing changes on failure");
    // Upper-case hex is accepted; a signature without raw_data is not checked.
    let mut d = open_data(&s, "jade", "user_info", json!({}));
    d["signature"] = d["signature"].as_str().unwrap().to_ascii_uppercase().into();
    assert_eq!(decrypt(&s, &token, &d).status, 200);
    d.as_object_mut().unwrap().remove("raw_data");
    d["signature"] = "0000".into();
    assert_eq!(decrypt(&s, &token, &d).status, 200);
    // Decryption is tried before the signature: old data with a bad signature is stale.
    let mut old = open_data(&s, "jade", "user_info", json!({}));
    old["raw_data"] = "{}".into();
    s.login("jade");
    assert_eq!(decrypt(&s, &token, &old).status, 409);
}

#[test]
fn a_watermark_for_another_appid_is_a_watermark_mismatch() {
    let s = TestServer::start();
    let (token, _) = s.login("kim");
    let d = open_data(&s, "kim", "user_info", json!({"watermark_appid": "wxsomeoneelse0001"}));
    let r = decrypt(&s, &token, &d);
    assert_eq!((r.status, r.error_code()), (422, "watermark_mismatch".into()), "{}", r.text);
    assert_eq!(me(&s, &token)["nickname"], Value::Null);
}

#[test]
fn max_age_rejects_old_watermarks_when_set() {
    let s = TestServer::start_with(|c| c.decrypt.max_age_seconds = 300);
    let (token, _) = s.login("lee");
    let old = open_data(&s, "lee", "user_info", json!({"timestamp": now() - 3600}));
    let (status, code, message) = error(&decrypt(&s, &token, &old));
    assert_eq!((status, code.as_str()), (422, "stale_data"));
    assert!(message.contains("300"), "{message}");
    let recent = open_data(&s, "lee", "user_info", json!({"timestamp": now() - 10}));
    assert_eq!(decrypt(&s, &token, &recent).status, 200);

    // Off by default.
    let s = TestServer::start();
    let (token, _) = s.login("lee");
    let old = open_data(&s, "lee", "user_info", json!({"timestamp": now() - 86_400 * 30}));
    assert_eq!(decrypt(&s, &token, &old).status, 200);
}

#[test]
fn login_with_open_data_returns_the_decrypted_data_and_a_token() {
    let s = TestServer::start();
    let code = s.code("mia"); // wx.login first, then wx.getUserInfo: the pair matches
    let d = open_data(&s, "mia", "user_info", json!({}));
    let mut body = d.clone();
    body["code"] = code.into();
    let r = s.post("/v1/login", None, &body);
    assert_eq!(r.status, 200, "{}", r.text);
    let login = r.json();
    assert_eq!(login["decrypted"]["kind"], "user_info");
    assert_eq!(login["decrypted"]["data"]["nickName"], "mia");
    assert!(login["decrypted"]["data"].get("watermark").is_none());
    assert_eq!(login["user"]["nickname"], "mia", "the login answer shows the updated profile");
    let token = login["token"].as_str().expect("token");
    assert_eq!(me(&s, token)["nickname"], "mia");

    // camelCase, phone data, for a returning user.
    let code = s.code("mia");
    let d = open_data(&s, "mia", "phone", json!({}));
    let r = s.post("/v1/login", None, &json!({"code": code, "encryptedData": d["encrypted_data"], "iv": d["iv"]}));
    assert_eq!(r.status, 200, "{}", r.text);
    let login = r.json();
    assert_eq!(login["decrypted"]["kind"], "phone");
    assert_eq!(login["user"]["phone_number"], "13800138000");
    assert_eq!(login["new_user"], false);

    // Without open data there is no `decrypted`.
    let (_, plain) = s.login("mia");
    assert!(plain.get("decrypted").is_none());
}

#[test]
fn a_failed_decrypt_fails_the_login_without_a_token_but_keeps_the_new_key() {
    let s = TestServer::start();
    let (_, first) = s.login("nina");
    let old = open_data(&s, "nina", "user_info", json!({}));
    let code = s.code("nina"); // rotates the key: `old` no longer matches
    let mut body = old.clone();
    body["code"] = code.clone().into();
    let r = s.post("/v1/login", None, &body);
    let (status, code_name, message) = error(&r);
    assert_eq!((status, code_name.as_str()), (409, "session_key_stale"), "{}", r.text);
    assert!(message.contains("wx.login"));
    assert!(r.json().get("token").is_none() && !r.text.contains("token\""), "{}", r.text);
    let live = s.sql_i64("SELECT COUNT(*) FROM sessions");
    assert_eq!(live, 1, "only the first login's session exists");
    // The new key is stored: data made now decrypts, with the same code (a replay) too.
    let fresh = open_data(&s, "nina", "user_info", json!({}));
    let mut retry = fresh.clone();
    retry["code"] = code.into();
    let r = s.post("/v1/login", None, &retry);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["decrypted"]["kind"], "user_info");
    assert_eq!(r.json()["user"]["id"], first["user"]["id"]);
    assert_eq!(s.fake_calls("jscode2session"), 2, "the retry was a replay");
    // And a later plain login works.
    let (token, _) = s.login("nina");
    assert_eq!(decrypt(&s, &token, &open_data(&s, "nina", "werun", json!({}))).status, 200);
}

#[test]
fn a_foreign_watermark_or_bad_input_fails_the_login() {
    let s = TestServer::start();
    let code = s.code("omar");
    let d = open_data(&s, "omar", "user_info", json!({"watermark_appid": "wxsomeoneelse0001"}));
    let r = s.post("/v1/login", None, &json!({"code": code, "encrypted_data": d["encrypted_data"], "iv": d["iv"]}));
    assert_eq!((r.status, r.error_code()), (422, "watermark_mismatch".into()), "{}", r.text);
    assert!(r.json().get("token").is_none());
    let (_, body) = s.login("omar");
    assert_eq!(body["new_user"], false, "the user was stored by the failed login");

    // Malformed open data is refused before the code is spent.
    let code = s.code("omar");
    let calls = s.fake_calls("jscode2session");
    let r = s.post("/v1/login", None, &json!({"code": code, "encrypted_data": d["encrypted_data"], "iv": "AAAA"}));
    assert_eq!((r.status, r.error_code()), (400, "invalid_request".into()));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("iv"));
    let r = s.post("/v1/login", None, &json!({"code": code, "encrypted_data": d["encrypted_data"]}));
    assert_eq!((r.status, r.error_code()), (400, "invalid_request".into()));
    assert_eq!(s.fake_calls("jscode2session"), calls);
    assert_eq!(s.post("/v1/login", None, &json!({"code": code})).status, 200);
}

#[test]
fn a_form_login_repairs_base64_whose_plus_signs_arrived_as_spaces() {
    let s = TestServer::start();
    let code = s.code("pia");
    // Find data whose base64 has a '+' (almost always; the iv is random each time).
    let d = (0..50)
        .map(|_| open_data(&s, "pia", "user_info", json!({})))
        .find(|d| d["encrypted_data"].as_str().unwrap().contains('+'))
        .expect("base64 with a plus");
    // Posted without percent-encoding, as careless mini-program code does: every '+'
    // becomes a space when the form is decoded.
    let body = format!(
        "code={code}&encrypted_data={}&iv={}",
        d["encrypted_data"].as_str().unwrap(),
        d["iv"].as_str().unwrap()
    );
    let r =
        send(&s.url("/v1/login"), "POST", None, Some(body), &[("Content-Type", "application/x-www-form-urlencoded")]);
    assert_eq!(r.status, 200, "{}", r.text);
    let login = r.json();
    assert_eq!(login["decrypted"]["kind"], "user_info");
    assert_eq!(login["user"]["nickname"], "pia");

    // The same accident in a JSON body of /v1/me/decrypt.
    let token = login["token"].as_str().unwrap();
    let fresh = (0..50)
        .map(|_| open_data(&s, "pia", "phone", json!({})))
        .find(|d| d["encrypted_data"].as_str().unwrap().contains('+'))
        .expect("base64 with a plus");
    let spaced =
        json!({"encrypted_data": fresh["encrypted_data"].as_str().unwrap().replace('+', " "), "iv": fresh["iv"]});
    assert_eq!(decrypt(&s, token, &spaced).status, 200);
}

#[test]
fn a_failed_decrypt_asks_wechat_which_kind_of_stale_it_is() {
    let s = TestServer::start();
    let (token, _) = s.login("kim");
    // The mini-program called wx.login again but never told the server: WeChat rotated
    // the key, and data made now is encrypted with a key the server has never seen.
    let _unseen_code = s.code("kim");
    let fresh = open_data(&s, "kim", "user_info", json!({}));
    let (status, code, message) = error(&decrypt(&s, &token, &fresh));
    assert_eq!((status, code.as_str()), (409, "session_key_stale"));
    assert!(message.contains("expired or was replaced"), "{message}");
    assert_eq!(s.fake_calls("checksession"), 1);

    // After a proper re-login the stored key is current; damaged data is then told apart.
    let (token, _) = s.login("kim");
    let mut damaged = open_data(&s, "kim", "user_info", json!({}));
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut bytes = b64.decode(damaged["encrypted_data"].as_str().unwrap()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    damaged["encrypted_data"] = json!(b64.encode(&bytes));
    let (status, _, message) = error(&decrypt(&s, &token, &damaged));
    assert_eq!(status, 409);
    assert!(message.contains("stored session_key is current"), "{message}");
}

/// Each failed decrypt would otherwise cost a checksession call against the app's quota.
#[test]
fn repeated_failed_decrypts_ask_wechat_once() {
    let s = TestServer::start();
    let (token, _) = s.login("lou");
    let _unseen_code = s.code("lou");
    for _ in 0..5 {
        let fresh = open_data(&s, "lou", "user_info", json!({}));
        let (status, code, message) = error(&decrypt(&s, &token, &fresh));
        assert_eq!((status, code.as_str()), (409, "session_key_stale"));
        assert!(message.contains("expired or was replaced"), "the remembered answer: {message}");
    }
    assert_eq!(s.fake_calls("checksession"), 1);
    // A new login stores a new key, which is asked about afresh.
    let (token, _) = s.login("lou");
    let _unseen_code = s.code("lou");
    let fresh = open_data(&s, "lou", "user_info", json!({}));
    assert_eq!(decrypt(&s, &token, &fresh).status, 409);
    assert_eq!(s.fake_calls("checksession"), 2);
}
